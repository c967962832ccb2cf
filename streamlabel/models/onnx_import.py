"""Import a BN-folded OSNet ONNX export (e.g. ../shared/models/osnet_x0_25_msmt17.onnx) as a trainable OSNet.

The graph is walked node by node: each Conv / Gemm / BatchNormalization node's ONNX scope name
(``/conv2/conv2.0/conv2b/conv2b.1/conv2/Conv``) is resolved to the exporting module's path
(``conv2.0.conv2b.1.conv2``), which a rule table maps onto :class:`~streamlabel.models.osnet.OSNet`
(``conv2.0.streams.1.1.depthwise.conv``). Conv hyper-parameters (kernel, stride, pads, groups) are
checked against the target module, every target tensor must be filled exactly once, and every
weight initializer of the graph must be used.

Fine-tuning (the default we recommend): ``bn="folded"`` keeps the folded convs (conv + bias, no BN2d),
all parameters trainable; only the fc BatchNorm1d uses batch statistics in train mode. Pass
``calibration`` (a few batches of target images) so that BN's running statistics are re-centred on the
target data without changing the eval function (:func:`~.batchnorm.calibrate_batchnorm`). Measured on
64 CUHK03 train crops (cosine of train-mode vs source embeddings, mean / min): folded 0.910 / 0.868,
folded + calibration 0.987 / 0.982, ``bn="unfolded"`` + calibration 0.983 / 0.974. So folded +
calibration starts training closest to the source model, with the fewest noisy batch statistics.
``bn="unfolded"`` inserts a BatchNorm2d after every folded conv (identity at eval) for recipes that
want BN statistics everywhere (e.g. AdaBN-style adaptation); calibrate it, or train mode whitens
every channel.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from .batchnorm import calibrate_batchnorm, unfold_batchnorm
from .osnet import OSNet

_STREAMS = {"a": 0, "b": 1, "c": 2, "d": 3}

# (pattern on the exporter's module path, replacement giving the OSNet module path)
_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^conv1\.conv$"), "conv1.conv"),
    (re.compile(r"^(conv[234]\.\d+)\.conv1\.conv$"), r"\1.reduce.conv"),
    (re.compile(r"^(conv[234]\.\d+)\.conv3\.conv$"), r"\1.expand.conv"),
    (re.compile(r"^(conv[234]\.\d+)\.downsample\.conv$"), r"\1.shortcut.conv"),
    (re.compile(r"^(conv[234]\.\d+)\.gate\.(fc[12])(_\d+)?$"), r"\1.gate.\2"),
    (re.compile(r"^(conv[23])\.(\d+)\.0\.conv$"), r"\1.\2.conv.conv"),  # transition 1x1
    (re.compile(r"^conv5\.conv$"), "conv5.conv"),
    (re.compile(r"^fc\.(\d+)$"), r"fc.\1"),
]
_STREAM_RULE = re.compile(r"^(conv[234]\.\d+)\.conv2([abcd])(?:\.(\d+))?\.conv([12])$")


def _require_onnx():  # noqa: ANN202
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "importing ONNX models needs the 'onnx' package (a dependency of streamlabel): pip install onnx"
        ) from err
    return onnx, numpy_helper


def scope_to_module_path(node_name: str) -> str:
    """``/conv2/conv2.0/conv2a/conv1/Conv`` -> ``conv2.0.conv2a.conv1`` (collapse nested-name repeats)."""
    parts = [p for p in node_name.split("/") if p][:-1]
    path: list[str] = []
    for part in parts:
        if path and part.startswith(path[-1] + "."):
            path[-1] = part
        else:
            path.append(part)
    return ".".join(path)


def map_module_path(src: str) -> str:
    """Map an exporter module path onto the :class:`OSNet` module path (``KeyError`` if unknown)."""
    m = _STREAM_RULE.match(src)
    if m:
        block, letter, layer, which = m.groups()
        part = "pointwise" if which == "1" else "depthwise.conv"
        return f"{block}.streams.{_STREAMS[letter]}.{int(layer or 0)}.{part}"
    for pattern, repl in _RULES:
        if pattern.match(src):
            return pattern.sub(repl, src)
    raise KeyError(f"no OSNet module for ONNX scope '{src}'")


def _attrs(node) -> dict:  # noqa: ANN001
    onnx, _ = _require_onnx()
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _check_conv(node, conv: torch.nn.Conv2d, where: str) -> None:  # noqa: ANN001
    a = _attrs(node)
    k = tuple(a.get("kernel_shape", conv.kernel_size))
    pads = tuple(a.get("pads", [0, 0, 0, 0]))
    want = (conv.kernel_size, conv.stride, (conv.padding * 2), conv.groups, tuple(conv.dilation))
    got = (k, tuple(a.get("strides", [1, 1])), pads, a.get("group", 1), tuple(a.get("dilations", [1, 1])))
    if want != got:
        raise ValueError(f"{where}: ONNX conv (kernel, stride, pads, group, dilation) {got} != module {want}")


def onnx_state_dict(graph) -> tuple[dict[str, torch.Tensor], dict]:  # noqa: ANN001
    """Walk the graph; return (OSNet state dict, {OSNet param prefix: ONNX node}) from its initializers."""
    _, numpy_helper = _require_onnx()
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    state: dict[str, torch.Tensor] = {}
    nodes: dict[str, object] = {}
    source: dict[str, str] = {}
    used: set[str] = set()
    for node in graph.node:
        if node.op_type == "Conv":
            names = ("weight", "bias")
        elif node.op_type == "Gemm":
            a = _attrs(node)
            if a.get("transB", 0) != 1 or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
                raise ValueError(f"{node.name}: only Gemm(alpha=1, beta=1, transB=1) is supported")
            names = ("weight", "bias")
        elif node.op_type == "BatchNormalization":
            names = ("weight", "bias", "running_mean", "running_var")
        else:
            continue
        target = map_module_path(scope_to_module_path(node.name))
        tensors = [n for n in node.input[1:] if n]
        if target in source:  # the shared aggregation gate is called once per stream
            if source[target] != ",".join(tensors):
                raise ValueError(f"{node.name}: reuses module '{target}' with different weights")
            continue
        source[target] = ",".join(tensors)
        nodes[target] = node
        for key, init_name in zip(names, tensors, strict=False):
            state[f"{target}.{key}"] = torch.from_numpy(np.array(inits[init_name], dtype=np.float32))
            used.add(init_name)
    unused = [n for n, v in inits.items() if n not in used and v.ndim > 0 and v.size > 1]
    if unused:
        raise ValueError(f"ONNX initializers not mapped onto OSNet: {unused[:5]}")
    return state, nodes


def _infer_architecture(state: dict[str, torch.Tensor]) -> dict:
    """Channels, blocks per stage and embedding size from the mapped tensors."""
    channels = [state["conv1.conv.weight"].shape[0]]
    blocks = []
    for stage in ("conv2", "conv3", "conv4"):
        idx = {int(k.split(".")[1]) for k in state if k.startswith(f"{stage}.") and ".reduce." in k}
        if not idx:
            raise ValueError(f"no OS blocks found for stage {stage}")
        blocks.append(len(idx))
        channels.append(state[f"{stage}.0.expand.conv.weight"].shape[0])
    return {"channels": tuple(channels), "blocks": tuple(blocks), "feat_dim": state["fc.0.weight"].shape[0]}


def import_onnx(
    path: str | Path,
    bn: str = "folded",
    calibration: Iterable[torch.Tensor] | None = None,
) -> OSNet:
    """Build a trainable :class:`OSNet` (``fold_bn=True``) carrying the weights of an OSNet ONNX export.

    ``bn``: ``"folded"`` keeps folded convs; ``"unfolded"`` adds BN layers that are the identity at
    eval. ``calibration``: image batches [B, 3, 256, 128] on which every BN is re-centred (eval output
    unchanged); recommended before fine-tuning.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"ONNX model not found: '{path}' (expected e.g. ../shared/models/osnet_x0_25_msmt17.onnx)"
        )
    if bn not in ("folded", "unfolded"):
        raise ValueError(f"bn must be 'folded' or 'unfolded', got {bn!r}")
    onnx, _ = _require_onnx()
    graph = onnx.load(str(path)).graph
    state, nodes = onnx_state_dict(graph)
    model = OSNet(fold_bn=True, **_infer_architecture(state))
    modules = dict(model.named_modules())
    for target, node in nodes.items():
        if node.op_type == "Conv":
            _check_conv(node, modules[target], f"{node.name} -> {target}")
        elif node.op_type == "BatchNormalization":
            modules[target].eps = float(_attrs(node).get("epsilon", 1e-5))
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"OSNet tensors without an ONNX source: {missing[:5]}")
    for key, tensor in state.items():
        if own[key].shape != tensor.shape:
            raise ValueError(f"{key}: ONNX shape {tuple(tensor.shape)} != OSNet {tuple(own[key].shape)}")
    model.load_state_dict(state, strict=False)
    model.source_path = str(path)
    if bn == "unfolded":
        unfold_batchnorm(model)
    if calibration is not None:
        calibrate_batchnorm(model, calibration)
    return model.eval()


def onnxruntime_embed(path: str | Path, images: torch.Tensor, optimize: bool = False) -> np.ndarray:
    """Run the ONNX file with onnxruntime on CPU (the reference the import is checked against).

    Graph optimisations (conv/activation fusion, NCHWc layouts) are off by default: they add float32
    error of their own (up to ~1e-4 on outputs of magnitude ~20 against a float64 evaluation).
    """
    try:
        import onnxruntime as ort
    except ImportError as err:  # pragma: no cover
        raise ImportError("needs 'onnxruntime': pip install 'streamlabel[onnx]'") from err
    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return sess.run(None, {name: images.detach().cpu().numpy().astype(np.float32)})[0]

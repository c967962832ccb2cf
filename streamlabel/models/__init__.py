"""streamlabel.models: re-ID backbones (ResNet-50 / IBN-a, OSNet), weight loading, ONNX import.

``build_model(name, **kwargs)`` is the one entry point. Every model exposes ``feat_dim`` and returns
``Tensor[B, feat_dim]`` in eval mode; in train mode a :class:`ReIDOutput` dict with ``embedding``
(same as eval), ``global_feat`` (pre-neck pooled feature) and ``feature_map``. Embeddings are not
normalised; L2-normalise them for banks and retrieval.

| name | feat_dim | notes |
|---|---|---|
| resnet50, resnet50_ibn_a | 2048 (or ``embed_dim``) | last_stride=1, pool avg/gem, BN neck |
| osnet_x1_0, osnet_x0_75, osnet_x0_5, osnet_x0_25 | 512 (``feat_dim``) | ``fold_bn`` option |
| onnx | from the file (512) | ``path=``, ``bn="folded"`` or ``"unfolded"`` |
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable

import torch
from torch import nn

from streamlabel.config.limits import human_bytes, memory_problem
from streamlabel.config.value_types import expected_like
from streamlabel.registry import Registry

from .batchnorm import calibrate_batchnorm, unfold_batchnorm
from .layers import GeneralizedMeanPool, ReIDOutput, l2_normalize
from .osnet import WIDTHS, OSNet, osnet
from .resnet import ReIDResNet, resnet50, resnet50_ibn_a
from .weights import LoadReport, load_pretrained

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: make a model factory available to :func:`build_model` (and YAML) under ``name``."""
    return MODELS.register(name)


def list_models() -> list[str]:
    """Registered model names."""
    return MODELS.names()


def _signature(init: Callable, drop: tuple[str, ...]) -> inspect.Signature:
    """``init``'s signature without ``self`` and the parameters a factory sets itself."""
    sig = inspect.signature(init)
    return sig.replace(parameters=[p for n, p in sig.parameters.items() if n not in ("self", *drop)])


# the factories pass **kwargs on: their signature is that of the class, less what they fix
resnet50.__signature__ = _signature(ReIDResNet.__init__, ("ibn",))
resnet50_ibn_a.__signature__ = _signature(ReIDResNet.__init__, ("ibn",))
register_model("resnet50")(resnet50)
register_model("resnet50_ibn_a")(resnet50_ibn_a)


def _osnet_factory(width: float) -> Callable[..., nn.Module]:
    def factory(**kwargs) -> nn.Module:
        return osnet(width=width, **kwargs)

    factory.__doc__ = f"OSNet x{width} (feat_dim 512 unless ``feat_dim`` is given)."
    factory.__signature__ = _signature(OSNet.__init__, ("channels",))
    return factory


for _suffix, _width in WIDTHS.items():
    register_model(f"osnet_{_suffix}")(_osnet_factory(_width))

# built without side effects (no file read): model_error builds them on the meta device to check kwargs
_PURE_MODELS = ("resnet50", "resnet50_ibn_a", *(f"osnet_{s}" for s in WIDTHS))


def model_parameters(name: str) -> tuple[dict[str, object], bool]:
    """The keyword parameters of model ``name``'s builder with their defaults (``inspect.Parameter.empty``
    when required), and whether it takes any other keyword too (``**kwargs`` without a declared signature)."""
    sig = inspect.signature(MODELS.get(name))
    params = {n: p.default for n, p in sig.parameters.items()
              if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return params, any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())


def _type_problem(key: str, value: object, default: object) -> str | None:
    if default is inspect.Parameter.empty:
        return None
    if default is None:  # the built-in models' None defaults are paths (pretrained)
        expected = None if value is None or isinstance(value, str) else "a string (a path) or null"
    else:
        expected = expected_like(value, default)
    return None if expected is None else (f"must be {expected} (like its default {default!r}), got "
                                          f"{type(value).__name__} {value!r}")


def model_error(name: str, kwargs: dict[str, object]) -> tuple[str | None, str] | None:
    """What is wrong with building model ``name`` with ``kwargs``, found without building it for real:
    ``(None, message)`` for an unknown name, ``(key, message)`` for a keyword the builder does not take or
    whose type does not match its default, ``("", message)`` for what the builder itself refuses (built
    on the meta device: no memory, no file read) or for weights that do not fit in this machine's memory.
    None when the model builds."""
    try:
        params, open_ended = model_parameters(name)
    except KeyError as err:
        return None, str(err)
    what = f"model {name!r}"
    for key, value in kwargs.items():
        if key not in params:
            if open_ended:
                continue
            close = difflib.get_close_matches(key, sorted(params), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            return key, f"{what} takes no parameter {key!r}{hint} (its parameters: {', '.join(sorted(params))})"
        problem = _type_problem(key, value, params[key])
        if problem:
            return key, f"parameter {key!r} of {what} {problem}"
    for key, default in params.items():
        if default is inspect.Parameter.empty and key not in kwargs:
            return key, f"{what} needs parameter {key!r} in model.kwargs"
    if name not in _PURE_MODELS:
        return None  # a plugin or file-reading model: its builder checks its kwargs when it runs
    trial = {k: v for k, v in kwargs.items() if k != "pretrained"}  # no file is read here
    try:
        with torch.device("meta"):
            model = MODELS.get(name)(**trial)
    except (TypeError, ValueError, RuntimeError) as err:
        named = [k for k in trial if k in str(err)] or (list(trial) if len(trial) == 1 else [])
        return (named[0] if named else ""), f"{what} refuses model.kwargs {trial}: {type(err).__name__}: {err}"
    count = sum(p.numel() for p in model.parameters())
    # fp32 weights, their gradients and Adam's two moments
    sizes = (f"{what} with model.kwargs {trial} ({count:,} parameters: {human_bytes(4 * count)} of fp32 "
             "weights, x4 with their gradients and Adam's two moments)")
    problem = memory_problem(16 * count, sizes)
    if problem:
        named = [k for k in trial if k not in ("fold_bn", "head")]
        return (named[0] if len(named) == 1 else ""), problem
    return None


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model; every result has ``feat_dim`` and the output contract above."""
    return MODELS.get(name)(**kwargs)


@register_model("onnx")
def _onnx_model(path: str, **kwargs) -> nn.Module:
    """A BN-folded OSNet ONNX export imported as a trainable OSNet (see :mod:`.onnx_import`)."""
    from .onnx_import import import_onnx

    return import_onnx(path, **kwargs)


__all__ = [
    "GeneralizedMeanPool",
    "LoadReport",
    "OSNet",
    "ReIDOutput",
    "ReIDResNet",
    "build_model",
    "calibrate_batchnorm",
    "l2_normalize",
    "list_models",
    "load_pretrained",
    "model_error",
    "model_parameters",
    "osnet",
    "register_model",
    "resnet50",
    "resnet50_ibn_a",
    "unfold_batchnorm",
]

"""Load pretrained weights from a local file only (nothing is ever downloaded), with a key report."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

_CONTAINER_KEYS = ("state_dict", "model", "model_state", "net")
_PREFIXES = ("module.", "backbone.", "base.", "encoder.")


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did: keys loaded, missing in the file, unexpected, shape mismatches."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [
            f"loaded {len(self.loaded)} tensors; missing {len(self.missing)}; "
            f"unexpected {len(self.unexpected)}; shape mismatch {len(self.mismatched)}"
        ]
        if self.missing:
            lines.append("  missing (kept at init): " + ", ".join(self.missing))
        if self.unexpected:
            lines.append("  unexpected (ignored): " + ", ".join(self.unexpected))
        for key, want, got in self.mismatched:
            lines.append(f"  shape mismatch (kept at init): {key}: model {want} vs file {got}")
        return "\n".join(lines)


def _unwrap(obj: object) -> dict[str, torch.Tensor]:
    """Find the tensor dict inside common checkpoint containers."""
    while isinstance(obj, dict):
        for key in _CONTAINER_KEYS:
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
        else:
            break
    if not isinstance(obj, dict):
        raise TypeError(f"expected a state dict (mapping name -> tensor), got {type(obj).__name__}")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _strip_prefixes(state: dict[str, torch.Tensor], model_keys: set[str]) -> dict[str, torch.Tensor]:
    """Drop wrapper prefixes (``module.``, ``backbone.`` ...) when that makes more keys match."""
    for prefix in _PREFIXES:
        if any(k.startswith(prefix) for k in state):
            stripped = {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state.items()}
            if len(model_keys & stripped.keys()) > len(model_keys & state.keys()):
                state = stripped
    return state


def load_pretrained(model: nn.Module, path: str | Path, verbose: bool = True) -> LoadReport:
    """Load a local state dict (torchvision ImageNet files included) into ``model``, non-strictly.

    Keys present in both with equal shapes are copied; everything else is listed in the returned
    :class:`LoadReport` (and logged). Raises ``FileNotFoundError`` when ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights not found: '{path}'. Expected a local PyTorch state-dict file "
            "(e.g. torchvision's ImageNet 'resnet50-0676ba61.pth' or 'resnet50-11ad3fa6.pth', or an IBN-a "
            "'resnet50_ibn_a-d9d0bb7b.pth') saved with torch.save. streamlabel never downloads weights: "
            "copy the file to this path, or build the model without pretrained weights."
        )
    if path.suffix == ".onnx":
        raise ValueError(f"'{path}' is an ONNX file; use build_model('onnx', path=...) to import it")
    own = model.state_dict()
    state = _strip_prefixes(_unwrap(torch.load(path, map_location="cpu", weights_only=True)), set(own))

    report = LoadReport()
    to_load = {}
    for key, tensor in state.items():
        if key not in own:
            report.unexpected.append(key)
        elif own[key].shape != tensor.shape:
            report.mismatched.append((key, tuple(own[key].shape), tuple(tensor.shape)))
        else:
            to_load[key] = tensor
            report.loaded.append(key)
    # BN batch counters are absent from older files (torchvision's included) and carry no weights.
    report.missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    model.load_state_dict(to_load, strict=False)
    if verbose:
        log.info("load_pretrained(%s): %s", path, report)
    return report

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

from collections.abc import Callable

from torch import nn

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


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model; every result has ``feat_dim`` and the output contract above."""
    return MODELS.get(name)(**kwargs)


register_model("resnet50")(resnet50)
register_model("resnet50_ibn_a")(resnet50_ibn_a)


def _osnet_factory(width: float) -> Callable[..., nn.Module]:
    def factory(**kwargs) -> nn.Module:
        return osnet(width=width, **kwargs)

    factory.__doc__ = f"OSNet x{width} (feat_dim 512 unless ``feat_dim`` is given)."
    return factory


for _suffix, _width in WIDTHS.items():
    register_model(f"osnet_{_suffix}")(_osnet_factory(_width))


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
    "osnet",
    "register_model",
    "resnet50",
    "resnet50_ibn_a",
    "unfold_batchnorm",
]

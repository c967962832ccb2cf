"""ResNet-50 (and IBN-a) re-ID backbone: torchvision structure, last stride 1, avg/GeM pool, BN neck.

``head="pyramid"`` swaps the global pool for NPLP's pyramidal average pooling (``pyramid_levels``
granularities, models/pyramid.py) followed by one fully connected layer to ``embed_dim`` (2048 when 0),
the paper's hyper-network; the BN neck follows as usual.

Output contract (all streamlabel models):
- eval mode: ``Tensor[B, feat_dim]``, the BN-necked embedding (L2-normalise it for retrieval);
- train mode: a :class:`~streamlabel.models.layers.ReIDOutput` dict with ``embedding`` (post-BN neck,
  for memory / classification losses), ``global_feat`` (pre-BN pooled or projected feature, for
  triplet losses) and ``feature_map`` ([B, 2048, 16, 8] at 256x128 with last stride 1).

``parts=P`` (default 0) adds P horizontal part features (:mod:`streamlabel.models.parts`): ``parts``
[B, P, feat_dim] in the train-mode dict, and in eval mode with ``model(x, with_parts=True)``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from .ibn import convert_resnet_to_ibn_a
from .layers import BNNeck, ReIDOutput, build_pool, global_pool_flat
from .parts import PartHead, check_parts
from .pyramid import PyramidAveragePool, check_head

_STAGES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


class ReIDResNet(nn.Module):
    """ResNet-50 trunk from torchvision (``weights=None``) with a re-ID head.

    Module names of the trunk equal torchvision's (``conv1``, ``layer1`` ...), so a torchvision
    ImageNet state dict loads key-for-key (its ``fc.*`` keys are reported as unexpected).
    """

    def __init__(
        self,
        last_stride: int = 1,
        pool: str = "avg",
        gem_p: float = 3.0,
        embed_dim: int = 0,
        neck: bool = True,
        ibn: bool = False,
        pretrained: str | Path | None = None,
        parts: int = 0,
        head: str = "global",
        pyramid_levels: int = 2,
    ) -> None:
        super().__init__()
        check_head(head, pyramid_levels)
        if head == "pyramid" and parts:
            raise ValueError("head='pyramid' and parts > 0 do not combine: part stripes go through the global "
                             "projection, which the pyramid head sizes for all its granularities")
        if head == "pyramid" and pool != "avg":
            raise ValueError(f"head='pyramid' average-pools its stripes (PAP); pool must be 'avg', got {pool!r}")
        trunk = torchvision.models.resnet50(weights=None)
        if ibn:
            convert_resnet_to_ibn_a(trunk)
        if last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")
        first = trunk.layer4[0]
        first.conv2.stride = (last_stride, last_stride)
        first.downsample[0].stride = (last_stride, last_stride)
        for name in _STAGES:
            setattr(self, name, getattr(trunk, name))

        self.ibn = ibn
        self.last_stride = last_stride
        self.out_channels = 2048
        self.head = head
        self.pool = PyramidAveragePool(pyramid_levels) if head == "pyramid" else build_pool(pool, gem_p)
        pooled = self.out_channels * (self.pool.parts if head == "pyramid" else 1)
        if head == "pyramid" or embed_dim > 0:  # the pyramid head always has its hyper-network layer
            self.proj: nn.Module = nn.Linear(pooled, embed_dim if embed_dim > 0 else self.out_channels)
            nn.init.kaiming_normal_(self.proj.weight, mode="fan_out")
            nn.init.zeros_(self.proj.bias)
        else:
            self.proj = nn.Identity()
        self.feat_dim = embed_dim if embed_dim > 0 else self.out_channels
        self.neck: nn.Module = BNNeck(self.feat_dim) if neck else nn.Identity()
        self.parts = check_parts(parts)
        if self.parts:
            self.part_head = PartHead(self.parts, self.feat_dim, zero_bias=neck)

        if pretrained is not None:
            from .weights import load_pretrained

            load_pretrained(self, pretrained)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last convolutional feature map [B, 2048, H/16, W/16] (last stride 1)."""
        for name in _STAGES:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor, *, with_parts: bool = False) -> torch.Tensor | ReIDOutput:
        fmap = self.forward_features(x)
        global_feat = self.proj(global_pool_flat(self.pool, fmap))
        embedding = self.neck(global_feat)
        parts = self.part_head(fmap, self.proj) if self.parts and (self.training or with_parts) else None
        if not self.training:
            return embedding if parts is None else {"embedding": embedding, "parts": parts}
        out: ReIDOutput = {"embedding": embedding, "global_feat": global_feat, "feature_map": fmap}
        if parts is not None:
            out["parts"] = parts
        return out


def resnet50(**kwargs) -> ReIDResNet:
    """ResNet-50 re-ID backbone, feat_dim 2048 (or ``embed_dim``)."""
    return ReIDResNet(ibn=False, **kwargs)


def resnet50_ibn_a(**kwargs) -> ReIDResNet:
    """ResNet-50-IBN-a re-ID backbone, feat_dim 2048 (or ``embed_dim``)."""
    return ReIDResNet(ibn=True, **kwargs)

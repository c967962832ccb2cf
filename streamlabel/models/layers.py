"""Small building blocks shared by the backbones: pooling, BN neck, train-mode output dict."""

from __future__ import annotations

from typing import NotRequired, TypedDict

import torch
import torch.nn.functional as F
from torch import nn


class ReIDOutput(TypedDict):
    """What every streamlabel model returns in train mode (eval mode returns ``embedding`` only).

    embedding:   [B, feat_dim] the retrieval embedding (post BN neck / post fc), same as the eval output.
    global_feat: [B, C] the pooled feature before the neck (for triplet-style losses).
    feature_map: [B, C, H, W] the last convolutional map (for part pooling, e.g. INCLR).
    parts:       [B, P, feat_dim] horizontal part features, only from a model built with ``parts=P``.
    """

    embedding: torch.Tensor
    global_feat: torch.Tensor
    feature_map: torch.Tensor
    parts: NotRequired[torch.Tensor]


class GeneralizedMeanPool(nn.Module):
    """GeM pooling (Radenovic et al. 2018): (mean x^p)^(1/p) with learnable p; p=1 is avg, p->inf is max."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6, learnable: bool = True) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)), requires_grad=learnable)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p.clamp(min=1.0)
        pooled = x.clamp(min=self.eps).pow(p).mean(dim=(-2, -1), keepdim=True)
        return pooled.pow(1.0 / p)

    def extra_repr(self) -> str:
        return f"p={self.p.item():.3f}, eps={self.eps}"


def build_pool(kind: str, gem_p: float = 3.0) -> nn.Module:
    """Global pooling by name: ``avg``, ``max`` or ``gem`` (output [B, C, 1, 1])."""
    if kind == "avg":
        return nn.AdaptiveAvgPool2d(1)
    if kind == "max":
        return nn.AdaptiveMaxPool2d(1)
    if kind == "gem":
        return GeneralizedMeanPool(p=gem_p)
    raise ValueError(f"unknown pooling {kind!r}; expected 'avg', 'max' or 'gem'")


class BNNeck(nn.BatchNorm1d):
    """BatchNorm1d whose shift is fixed at zero (Luo et al. 2019 "bag of tricks" BN neck)."""

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features)
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)
        self.bias.requires_grad_(False)


def global_pool_flat(pool: nn.Module, fmap: torch.Tensor) -> torch.Tensor:
    """Apply a global pool and flatten to [B, C]."""
    return torch.flatten(pool(fmap), 1)


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Row-wise L2 normalisation (the form banks and retrieval use)."""
    return F.normalize(x, dim=1)

"""Horizontal part features (INCLR / PPLR): P stripes of the last feature map, each average-pooled.

A stripe is pooled, sent through the model's own global projection (so parts live in the embedding
space, with no duplicated weights) and normalised by its own BatchNorm (one BN per part, run as one
BatchNorm1d over the P * D flattened channels). Train mode returns them as ``parts`` [B, P, D] beside
the global ``embedding``; eval mode returns them only when asked (``model(x, with_parts=True)``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import BNNeck

__all__ = ["PartHead", "check_parts"]


def check_parts(parts: int) -> int:
    """Validate the ``parts`` model option (0 = no part features)."""
    if isinstance(parts, bool) or not isinstance(parts, int) or parts < 0:
        raise ValueError(f"parts must be an integer >= 0 (0 = global feature only), got {parts!r}")
    return parts


class PartHead(nn.Module):
    """[B, C, H, W] feature map -> [B, P, D] part features (stripe avg pool -> shared projection -> per-part BN)."""

    def __init__(self, parts: int, dim: int, *, relu: bool = False, zero_bias: bool = True) -> None:
        super().__init__()
        if parts < 1 or dim < 1:
            raise ValueError(f"parts and dim must be >= 1, got {parts}, {dim}")
        self.parts = parts
        self.dim = dim
        self.relu = relu
        # ResNet style: BN neck with its shift fixed at 0; OSNet style: plain BN then ReLU (as its fc)
        self.norm: nn.Module = BNNeck(parts * dim) if zero_bias else nn.BatchNorm1d(parts * dim)

    def forward(self, fmap: torch.Tensor, project: nn.Module) -> torch.Tensor:
        batch = fmap.shape[0]
        stripes = F.adaptive_avg_pool2d(fmap, (self.parts, 1)).flatten(2).transpose(1, 2)  # [B, P, C]
        z = project(stripes)  # Linear / Identity act on the last dim: [B, P, D]
        z = self.norm(z.reshape(batch, self.parts * self.dim)).view(batch, self.parts, self.dim)
        return F.relu(z) if self.relu else z

"""NPLP's pyramidal average pooling (PAP-I, NPLP paper Sec. III-D): a multi-granularity head option.

Granularity i (1..I) cuts the feature map [B, C, H, W] into i horizontal stripes and average-pools each,
so PAP-I yields C * I(I+1)/2 values per image (PAP-1 = global average pooling). The backbones follow it
with their one fully connected layer, which plays the paper's "hyper-network": it encodes the
concatenated granularities into the embedding used for training and testing. Stripes come from
adaptive average pooling, so H need not be a multiple of i.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["HEADS", "PyramidAveragePool", "check_head"]

HEADS = ("global", "pyramid")


def check_head(head: str, levels: int) -> None:
    """Clear errors for the ``head`` / ``pyramid_levels`` model options."""
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; expected one of {', '.join(HEADS)}")
    if levels < 1:
        raise ValueError(f"pyramid_levels must be >= 1, got {levels}")


class PyramidAveragePool(nn.Module):
    """[B, C, H, W] -> [B, C * levels (levels + 1) / 2]: average of 1, 2, ..., ``levels`` horizontal stripes."""

    def __init__(self, levels: int = 2) -> None:
        super().__init__()
        check_head("pyramid", levels)
        self.levels = int(levels)
        self.parts = self.levels * (self.levels + 1) // 2

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        pooled = [F.adaptive_avg_pool2d(fmap, (i, 1)).flatten(1) for i in range(1, self.levels + 1)]
        return torch.cat(pooled, dim=1)  # per granularity: channel-major, stripe-minor

    def extra_repr(self) -> str:
        return f"levels={self.levels}"

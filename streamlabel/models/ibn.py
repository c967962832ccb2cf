"""IBN-a normalisation (Pan et al., ECCV 2018 "IBN-Net").

Instance norm on the first half of the channels and batch norm on the rest, placed after the first
1x1 convolution of every bottleneck in the ResNet stages conv2_x..conv4_x (``layer1``-``layer3``).
IN removes appearance (style/colour) variation, BN keeps content discrimination.
"""

from __future__ import annotations

import torch
from torch import nn


class IBN(nn.Module):
    """Half InstanceNorm2d (affine) + half BatchNorm2d along channels.

    Submodule names ``IN`` / ``BN`` follow the published IBN-a checkpoints' state-dict keys,
    so those files load with :func:`streamlabel.models.load_pretrained`.
    """

    def __init__(self, channels: int, ratio: float = 0.5) -> None:
        super().__init__()
        self.half = int(channels * ratio)
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = nn.BatchNorm2d(channels - self.half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(x, [self.half, x.shape[1] - self.half], dim=1)
        return torch.cat([self.IN(a.contiguous()), self.BN(b.contiguous())], dim=1)


def convert_resnet_to_ibn_a(
    resnet: nn.Module, stages: tuple[str, ...] = ("layer1", "layer2", "layer3")
) -> int:
    """Replace ``bn1`` of every bottleneck in ``stages`` with :class:`IBN`; returns how many were replaced."""
    replaced = 0
    for stage_name in stages:
        for block in getattr(resnet, stage_name):
            block.bn1 = IBN(block.bn1.num_features)
            replaced += 1
    return replaced

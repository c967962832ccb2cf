"""OSNet, the omni-scale network of Zhou et al. (ICCV 2019), written from the paper's description.

Layout (paper Table 1, x1.0 channels; width multipliers scale every conv channel count, not the fc):
conv1 7x7/2 (64) + 3x3/2 max pool -> conv2: 2 OS blocks (256) + transition (1x1 conv + 2x2/2 avg pool)
-> conv3: 2 OS blocks (384) + transition -> conv4: 2 OS blocks (512) -> conv5 1x1 (512)
-> global avg pool -> fc 512 + BN + ReLU.

OS block: 1x1 reduce (C/4) -> T=4 streams of 1..4 "lite 3x3" layers (1x1 pointwise, then depthwise
3x3 + BN + ReLU) -> a unified aggregation gate (GAP -> MLP with ratio 16 -> sigmoid, shared weights
across streams) re-weights each stream and the streams are summed -> 1x1 expand + BN -> residual add
(1x1 conv + BN projection when channels change) -> ReLU.

``fold_bn=True`` builds every conv+BN pair as a single conv with bias and no BN (the layout of a
BN-folded export such as ../shared/models/osnet_x0_25_msmt17.onnx); the fc BatchNorm1d is kept.
Output contract as in :mod:`streamlabel.models.resnet`: eval -> Tensor[B, feat_dim], train -> dict;
``parts=P`` adds P horizontal part features (``parts`` [B, P, feat_dim], see :mod:`.parts`).
``head="pyramid"`` replaces the global average pool by NPLP's pyramidal average pooling (``pyramid_levels``
granularities, :mod:`.pyramid`); the fc layer then reads all stripes and is the paper's hyper-network.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ReIDOutput, global_pool_flat
from .parts import PartHead, check_parts
from .pyramid import PyramidAveragePool, check_head

BASE_CHANNELS = (64, 256, 384, 512)
WIDTHS = {"x1_0": 1.0, "x0_75": 0.75, "x0_5": 0.5, "x0_25": 0.25}


class ConvNorm(nn.Module):
    """k x k convolution + BatchNorm (+ ReLU); with ``fold_bn`` a biased conv and no BN."""

    def __init__(
        self,
        cin: int,
        cout: int,
        k: int,
        stride: int = 1,
        groups: int = 1,
        relu: bool = True,
        fold_bn: bool = False,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=fold_bn)
        self.bn: nn.Module = nn.Identity() if fold_bn else nn.BatchNorm2d(cout)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class LiteConv3x3(nn.Module):
    """Factorised 3x3: 1x1 pointwise conv (no norm), then depthwise 3x3 + BN + ReLU."""

    def __init__(self, cin: int, cout: int, fold_bn: bool = False) -> None:
        super().__init__()
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)
        self.depthwise = ConvNorm(cout, cout, 3, groups=cout, fold_bn=fold_bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.depthwise(self.pointwise(x))


class AggregationGate(nn.Module):
    """Unified aggregation gate: channel weights sigmoid(MLP(GAP(x))), one instance shared by all streams."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.adaptive_avg_pool2d(x, 1)
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(w))))
        return x * w


class OSBlock(nn.Module):
    """Omni-scale residual bottleneck with T streams of increasing receptive field."""

    def __init__(
        self,
        cin: int,
        cout: int,
        streams: int = 4,
        bottleneck: int = 4,
        gate_reduction: int = 16,
        fold_bn: bool = False,
    ) -> None:
        super().__init__()
        mid = cout // bottleneck
        self.reduce = ConvNorm(cin, mid, 1, fold_bn=fold_bn)
        self.streams = nn.ModuleList(
            nn.Sequential(*[LiteConv3x3(mid, mid, fold_bn) for _ in range(depth)])
            for depth in range(1, streams + 1)
        )
        self.gate = AggregationGate(mid, gate_reduction)
        self.expand = ConvNorm(mid, cout, 1, relu=False, fold_bn=fold_bn)
        self.shortcut: nn.Module = (
            ConvNorm(cin, cout, 1, relu=False, fold_bn=fold_bn) if cin != cout else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.reduce(x)
        fused = sum(self.gate(stream(h)) for stream in self.streams)
        return F.relu(self.expand(fused) + self.shortcut(x))


class Transition(nn.Module):
    """Between stages: 1x1 conv + BN + ReLU, then 2x2 stride-2 average pooling."""

    def __init__(self, channels: int, fold_bn: bool = False) -> None:
        super().__init__()
        self.conv = ConvNorm(channels, channels, 1, fold_bn=fold_bn)
        self.pool = nn.AvgPool2d(2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(x))


class OSNet(nn.Module):
    """OSNet re-ID network; ``feat_dim`` (default 512) is the fc embedding size."""

    def __init__(
        self,
        channels: tuple[int, int, int, int] = BASE_CHANNELS,
        blocks: tuple[int, int, int] = (2, 2, 2),
        feat_dim: int = 512,
        fold_bn: bool = False,
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
        c0, c1, c2, c3 = channels
        self.channels = tuple(channels)
        self.fold_bn = fold_bn
        self.conv1 = ConvNorm(3, c0, 7, stride=2, fold_bn=fold_bn)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv2 = self._stage(c0, c1, blocks[0], transition=True)
        self.conv3 = self._stage(c1, c2, blocks[1], transition=True)
        self.conv4 = self._stage(c2, c3, blocks[2], transition=False)
        self.conv5 = ConvNorm(c3, c3, 1, fold_bn=fold_bn)
        self.head = head
        self.pool = PyramidAveragePool(pyramid_levels) if head == "pyramid" else nn.AdaptiveAvgPool2d(1)
        pooled = c3 * (self.pool.parts if head == "pyramid" else 1)
        self.fc = nn.Sequential(nn.Linear(pooled, feat_dim), nn.BatchNorm1d(feat_dim), nn.ReLU(inplace=True))
        self.out_channels = c3
        self.feat_dim = feat_dim
        self.parts = check_parts(parts)
        if self.parts:  # stripes go through the fc's linear layer, then their own BN + ReLU (as the fc)
            self.part_head = PartHead(self.parts, feat_dim, relu=True, zero_bias=False)
        self._init_weights()
        if pretrained is not None:
            from .weights import load_pretrained

            load_pretrained(self, pretrained)

    def _stage(self, cin: int, cout: int, n: int, transition: bool) -> nn.Sequential:
        layers: list[nn.Module] = [
            OSBlock(cin if i == 0 else cout, cout, fold_bn=self.fold_bn) for i in range(n)
        ]
        if transition:
            layers.append(Transition(cout, fold_bn=self.fold_bn))
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """conv5 feature map, [B, C5, H/16, W/16]."""
        x = self.maxpool(self.conv1(x))
        return self.conv5(self.conv4(self.conv3(self.conv2(x))))

    def forward(self, x: torch.Tensor, *, with_parts: bool = False) -> torch.Tensor | ReIDOutput:
        fmap = self.forward_features(x)
        global_feat = global_pool_flat(self.pool, fmap)
        embedding = self.fc(global_feat)
        parts = self.part_head(fmap, self.fc[0]) if self.parts and (self.training or with_parts) else None
        if not self.training:
            return embedding if parts is None else {"embedding": embedding, "parts": parts}
        out: ReIDOutput = {"embedding": embedding, "global_feat": global_feat, "feature_map": fmap}
        if parts is not None:
            out["parts"] = parts
        return out


def osnet(width: float = 1.0, **kwargs) -> OSNet:
    """OSNet with every conv channel count scaled by ``width`` (1.0, 0.75, 0.5, 0.25)."""
    channels = tuple(int(round(c * width)) for c in BASE_CHANNELS)
    return OSNet(channels=channels, **kwargs)  # type: ignore[arg-type]

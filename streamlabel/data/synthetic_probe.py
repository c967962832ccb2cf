"""A tiny supervised probe that measures how hard the synthetic domains are.

Three strided conv blocks, a BN-neck and an identity classifier, trained with cross-entropy (Adam 3e-3,
batch 64, random flips) on one split; retrieval mAP on another domain's query/gallery then shows the
domain gap. Used by the domain-gap test and ``benchmarks/synthetic_domain_gap.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from streamlabel.data.synthetic import SyntheticReid, SyntheticSplit
from streamlabel.evaluation import evaluate_retrieval

FEAT_DIM = 64


def prep(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N,3,H,W] -> normalised float at half resolution (keeps the probe fast on a CPU)."""
    return (F.avg_pool2d(images.float() / 255.0, 2) - 0.45) / 0.25


class Probe(nn.Module):
    """Three strided conv blocks, global pooling, BN-neck and identity classifier (features: pooled)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out, stride in ((3, 24, 2), (24, 48, 2), (48, FEAT_DIM, 1)):
            layers += [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.neck = nn.BatchNorm1d(FEAT_DIM)
        self.classifier = nn.Linear(FEAT_DIM, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.body(x)
        return feats, self.classifier(self.neck(feats))


def train_probe(split: SyntheticSplit, epochs: int = 8, seed: int = 0) -> Probe:
    """Identity cross-entropy on ``split``; returns the probe in eval mode."""
    torch.manual_seed(seed)
    labels = torch.unique(split.pids, return_inverse=True)[1]
    x = prep(split.images)
    net = Probe(int(labels.max()) + 1)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), 64):
            idx = order[start : start + 64]
            flip = (torch.rand(len(idx), generator=gen) < 0.5)[:, None, None, None]
            loss = F.cross_entropy(net(torch.where(flip, x[idx].flip(3), x[idx]))[1], labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def probe_retrieval(data: SyntheticReid, net: Probe | None, seed: int = 1) -> dict[str, float]:
    """mAP and rank-1 on ``data``'s query/gallery; ``net=None``: random features (chance level)."""
    q, g = data.query, data.gallery
    if net is None:
        gen = torch.Generator().manual_seed(seed)
        qf, gf = torch.randn(len(q), FEAT_DIM, generator=gen), torch.randn(len(g), FEAT_DIM, generator=gen)
    else:
        with torch.no_grad():
            qf, gf = net(prep(q.images))[0], net(prep(g.images))[0]
    res = evaluate_retrieval(qf, q.pids, q.camids, gf, g.pids, g.camids)
    return {"mAP": float(res["mAP"]), "rank1": float(res["rank1"])}

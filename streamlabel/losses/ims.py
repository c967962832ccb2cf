"""Instance margin spreading loss of DCML (Chen et al. ECCV 2020, Eq. 7-8): push every pair of instances apart.

Each batch sample is an instance of its own (no labels): for anchor a,

    L_ims(a) = log(1 + sum_{i != a} exp(m - d(a, i)))  =  -log( e^{-d_aa} / sum_i e^{m_a,i - d(a, i)} ),

the smooth form of sum_{i != a} max(0, m - d(a, i)) (Eq. 7), d the Euclidean distance, m = 0.1; the
loss is averaged over the anchors. The paper draws its batches from the credible set only and sums
Eq. 9 over credible anchors, so by default (``instances: credible``) only target rows with a pseudo
label (>= 0) are anchors and instances; ``all`` uses every target row.
"""

from __future__ import annotations

import torch

from streamlabel.losses.base import LossBatch, LossTerm, register_loss
from streamlabel.losses.triplet import pair_distances

__all__ = ["InstanceMarginSpreadingLoss", "instance_margin_spreading"]

INSTANCES = ("credible", "all")


def instance_margin_spreading(feats: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    """Per-instance losses [B] of Eq. 8: logsumexp over 0 (the anchor itself, d_aa = 0) and m - d(a, i), i != a."""
    n = feats.shape[0]
    if n < 2:
        return feats.new_zeros(0)
    logits = margin - pair_distances(feats, "euclidean")
    eye = torch.eye(n, dtype=torch.bool, device=feats.device)
    logits = logits.masked_fill(eye, 0.0)  # the anchor's own term: m_a = 0, d_aa = 0
    return torch.logsumexp(logits, dim=1)


@register_loss("ims")
class InstanceMarginSpreadingLoss(LossTerm):
    """DCML's IMS loss on the target batch features (use weight lambda = 0.01 as in the paper)."""

    def __init__(self, *, margin: float = 0.1, instances: str = "credible") -> None:
        super().__init__()
        if margin < 0:
            raise ValueError(f"ims margin must be >= 0, got {margin}")
        if instances not in INSTANCES:
            raise ValueError(f"ims instances must be one of {INSTANCES}, got {instances!r}")
        self.margin, self.instances = float(margin), instances

    def forward(self, batch: LossBatch) -> torch.Tensor:
        feats = batch.target_feats
        if self.instances == "credible":
            feats = feats[batch.target_labels >= 0]
        zero = (batch.source_feats.sum() + batch.target_feats.sum()) * 0.0  # keeps the graph
        losses = instance_margin_spreading(feats, self.margin)
        return zero + losses.mean() if losses.numel() else zero

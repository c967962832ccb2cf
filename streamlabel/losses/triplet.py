"""Batch-hard triplet loss (Hermans et al. 2017; DCML Eq. 10) on the pseudo-labelled target batch.

For every anchor: the farthest sample with its label (hardest positive) and the closest sample with
another label (hardest negative), loss [d(a, p) - d(a, n) + margin]_+ averaged over the anchors.
Target outliers (-1) have no positive and are never anchors; they stay negatives of everyone (each is
its own instance, as in the hybrid memory). ``distance``: ``euclidean`` (Hermans et al.) or
``sqeuclidean`` (DCML Eq. 10). A batch without any valid anchor gives a zero that keeps the graph.
"""

from __future__ import annotations

import torch

from streamlabel.losses.base import LossBatch, LossTerm, register_loss

__all__ = ["TripletLoss", "batch_hard_triplet", "pair_distances"]

DOMAINS = ("target", "source", "both")
DISTANCES = ("euclidean", "sqeuclidean")


def pair_distances(feats: torch.Tensor, distance: str = "euclidean") -> torch.Tensor:
    """[B, B] Euclidean or squared Euclidean distances; the sqrt is clamped so equal rows give no NaN gradient."""
    norms = feats.pow(2).sum(1)
    sq = (norms.unsqueeze(1) + norms.unsqueeze(0) - 2.0 * feats @ feats.t()).clamp_min(0.0)
    return sq if distance == "sqeuclidean" else sq.clamp_min(1e-12).sqrt()


def batch_hard_triplet(
    feats: torch.Tensor, labels: torch.Tensor, margin: float = 0.3, distance: str = "euclidean"
) -> torch.Tensor:
    """Per-anchor batch-hard losses [A] for the rows that have a positive and a negative (-1 = no positive)."""
    n = feats.shape[0]
    if n < 2:
        return feats.new_zeros(0)
    dist = pair_distances(feats, distance)
    idx = torch.arange(n, device=feats.device)
    # outliers: a label of their own so they are negatives of every other row and positives of none
    own = torch.where(labels >= 0, labels, -1 - idx)
    same = own.unsqueeze(0) == own.unsqueeze(1)
    pos_mask = same & (idx.unsqueeze(0) != idx.unsqueeze(1))
    neg_mask = ~same
    valid = (labels >= 0) & pos_mask.any(1) & neg_mask.any(1)
    if not bool(valid.any()):
        return feats.new_zeros(0)
    hardest_pos = dist.masked_fill(~pos_mask, float("-inf")).amax(1)
    hardest_neg = dist.masked_fill(~neg_mask, float("inf")).amin(1)
    return torch.relu(hardest_pos[valid] - hardest_neg[valid] + margin)


@register_loss("triplet")
class TripletLoss(LossTerm):
    """Batch-hard triplet on the target batch (pseudo labels), the source batch (real labels) or both."""

    def __init__(self, *, margin: float = 0.3, domains: str = "target", distance: str = "euclidean") -> None:
        super().__init__()
        if margin < 0:
            raise ValueError(f"triplet margin must be >= 0, got {margin}")
        if domains not in DOMAINS:
            raise ValueError(f"triplet domains must be one of {DOMAINS}, got {domains!r}")
        if distance not in DISTANCES:
            raise ValueError(f"triplet distance must be one of {DISTANCES}, got {distance!r}")
        self.margin, self.domains, self.distance = float(margin), domains, distance

    def forward(self, batch: LossBatch) -> torch.Tensor:
        parts = []
        if self.domains in ("target", "both"):
            parts.append(batch_hard_triplet(batch.target_feats, batch.target_labels, self.margin, self.distance))
        if self.domains in ("source", "both"):
            parts.append(batch_hard_triplet(batch.source_feats, batch.source_labels, self.margin, self.distance))
        losses = torch.cat(parts)
        # keeps the graph (and the device) when no row is a valid anchor
        zero = (batch.source_feats.sum() + batch.target_feats.sum()) * 0.0
        return zero + losses.mean() if losses.numel() else zero

"""INCLR's part loss (the INCLR paper, Eq. 2): every part feature is classified with the sample's global pseudo label.

The paper trains one classifier per part region on the (refined) global labels, "local and global
features share the same pseudo label". As for the global feature (hybrid memory), the classifier here is
non-parametric: the centres c_k^p of part p are the normalised means of the policy's part bank rows of
cluster k, and

    L_pce = -(1 / (n P)) sum_i sum_p log softmax_k(beta * cos(f_i^p, c_k^p))[y_i]

over the n clustered target samples of the batch and the P parts (beta = 20, as IGMO's classifier).
Needs a policy with a part bank (``part_features()``, e.g. inclr) and a model built with ``parts=P``;
without them the term is 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from streamlabel.banks.feature_bank import segment_means
from streamlabel.losses.base import LossBatch, LossTerm, register_loss

__all__ = ["PartCELoss", "part_centres"]


def part_centres(parts: torch.Tensor, labels: torch.Tensor, num_clusters: int) -> torch.Tensor:
    """[C, P, D] normalised per-cluster means of the part bank ``parts`` [N, P, D] (labels < 0 ignored)."""
    return segment_means(parts, labels, num_clusters, normalize=True)


@register_loss("part_ce")
class PartCELoss(LossTerm):
    """Cross entropy of each part feature against the part centres of the global pseudo labels."""

    def __init__(self, *, beta: float = 20.0) -> None:
        super().__init__()
        if beta <= 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        self.beta = float(beta)

    def forward(self, batch: LossBatch) -> torch.Tensor:
        feats = batch.target_feats
        zero = feats.sum() * 0.0
        bank = getattr(batch.policy, "part_features", lambda: None)() if batch.policy is not None else None
        if bank is None or "parts" not in batch.outputs or feats.shape[0] == 0:
            return zero
        labels = batch.target_labels.to(feats.device)
        keep = labels >= 0
        all_labels = batch.policy.labels()
        if not bool(keep.any()):
            return zero
        centres = part_centres(bank, all_labels.to(bank.device), int(all_labels.max()) + 1).to(feats.device)
        parts = F.normalize(batch.outputs["parts"][batch.num_source:][keep].float(), dim=2)  # [n, P, D]
        if parts.shape[1:] != centres.shape[1:]:
            raise ValueError(f"model parts {tuple(parts.shape[1:])} and policy part bank {tuple(centres.shape[1:])} "
                             "differ: model.kwargs.parts must equal policy.num_parts")
        logits = self.beta * torch.einsum("npd,cpd->npc", parts, centres)  # [n, P, C]
        y = labels[keep].unsqueeze(1).expand(-1, parts.shape[1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[2]), y.reshape(-1))

"""Credible sample mining of DCML (Chen et al. ECCV 2020, Sec. 3.2): score, share, selection.

Two credibility metrics, larger = more credible: the k-NN density C_N(x) = -max_{x_i in N_k(x)} ||x - x_i||
(Eq. 5) and the prototype centrality C_P(x, y) = -||x - P_y|| with P_y the mean feature of cluster y
(Eq. 3-4). The threshold tau of Eq. 2 is the one that keeps the smallest set with at least
gamma = gamma0 + r * dgamma of the samples (Eq. 6), so selection is "keep the ceil(gamma * N) best".
Outliers (label -1) are never credible: they have no pseudo label to trust.
"""

from __future__ import annotations

import math

import torch

from streamlabel.banks.feature_bank import segment_means
from streamlabel.evaluation.reranking import knn_sqeuclidean

__all__ = ["CREDIBILITY_KINDS", "SCOPES", "credible_share", "keep_most_credible", "knn_credibility",
           "prototype_credibility"]

CREDIBILITY_KINDS = ("knn", "prototype")
SCOPES = ("global", "cluster")


def knn_credibility(features: torch.Tensor, k: int, *, block_size: int = 1024) -> torch.Tensor:
    """C_N [N] (Eq. 5): minus the Euclidean distance to the k-th nearest other sample (the farthest of N_k)."""
    n = features.shape[0]
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if n < 2:
        return features.new_zeros(n)
    k = min(int(k), n - 1)
    dist, _, _ = knn_sqeuclidean(features.float(), k + 1, block_size=block_size, with_row_max=False)  # self at 0
    return -dist[:, -1].clamp_min(0).sqrt()


def prototype_credibility(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """C_P [N] (Eq. 4): minus the Euclidean distance to the mean feature of the sample's cluster; -inf for -1."""
    x = features.float()
    out = torch.full((x.shape[0],), -math.inf, dtype=x.dtype, device=x.device)
    member = labels >= 0
    if not bool(member.any()):
        return out
    ids = labels[member]
    proto = segment_means(x, labels, int(ids.max()) + 1)
    out[member] = -(x[member] - proto[ids]).norm(dim=1)
    return out


def credible_share(round_index: int, gamma0: float = 0.75, dgamma: float = 0.05) -> float:
    """gamma = gamma0 + r * dgamma (Eq. 6), capped at 1: the share of samples kept in refresh round r (0-based)."""
    if round_index < 0:
        raise ValueError(f"round_index must be >= 0, got {round_index}")
    return min(1.0, gamma0 + round_index * dgamma)


def _keep_count(share: float, size: torch.Tensor | int) -> torch.Tensor | int:
    """ceil(share * size), robust to float noise (0.8 * 10 is 8, not 9)."""
    if isinstance(size, torch.Tensor):
        return torch.ceil(size.double() * share - 1e-9).long()
    return math.ceil(size * share - 1e-9)


def keep_most_credible(
    scores: torch.Tensor, labels: torch.Tensor, share: float, *, scope: str = "global"
) -> torch.Tensor:
    """Bool mask [N] of the credible samples (Eq. 2 with tau from Eq. 6); never an outlier.

    ``global``: the ceil(share * N) highest scores over all N samples (the paper: one threshold tau);
    ``cluster``: the ceil(share * |cluster|) highest scores inside every cluster (a sort on (label, score)).
    Ties go to the smaller sample index.
    """
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    n = scores.shape[0]
    member = labels >= 0
    keep = torch.zeros(n, dtype=torch.bool, device=scores.device)
    if n == 0 or not bool(member.any()):
        return keep
    masked = torch.where(member, scores.float(), torch.full_like(scores.float(), -math.inf))
    by_score = torch.argsort(masked, descending=True, stable=True)
    if scope == "global":
        keep[by_score[: _keep_count(share, n)]] = True
        return keep & member
    # per cluster: stable sort by label after the score sort -> grouped by cluster, best score first
    group = labels[by_score]
    order = by_score[torch.argsort(group, stable=True)]
    sorted_labels = labels[order]
    sizes = torch.bincount(labels[member])
    start = torch.cumsum(sizes, 0) - sizes
    first_member = int((~member).sum())  # outliers (-1) sort first
    rank = torch.arange(n, device=scores.device) - first_member - start[sorted_labels.clamp_min(0)]
    chosen = (sorted_labels >= 0) & (rank < _keep_count(share, sizes)[sorted_labels.clamp_min(0)])
    keep[order[chosen]] = True
    return keep

"""Per-cluster silhouette (NPLP's self-assessment score, Eq. 6-8), exact, in row blocks.

For every clustered sample i (label >= 0) with Euclidean distances d:
  a_i = mean distance to the other members of its cluster (Eq. 6);
  b_i = mean distance to every clustered sample outside its cluster (Eq. 7, ``b="all"``), or, as in
        Rousseeuw's silhouette, to the members of the nearest other cluster (``b="nearest"``);
  s_i = (b_i - a_i) / max(a_i, b_i), 0 for a cluster of one or when there is no other cluster;
  S_k = mean of s_i over cluster k (Eq. 8).
Mean Euclidean distances do not follow from cluster sums or centres, so the distance sums per (sample,
cluster) are computed exactly from blocks of rows against all clustered samples: O(block * N) memory,
O(N^2 D) time, never an N x N matrix. Outliers (-1) take no part.
"""

from __future__ import annotations

import torch

__all__ = ["cluster_silhouette"]


def cluster_silhouette(
    features: torch.Tensor, labels: torch.Tensor, *, b: str = "all", block_size: int = 1024
) -> torch.Tensor:
    """Silhouette S_k of every cluster 0..C-1 of ``labels`` (float [C]); Euclidean distances of ``features``."""
    if b not in ("all", "nearest"):
        raise ValueError(f"b must be 'all' (NPLP Eq. 7) or 'nearest' (Rousseeuw), got {b!r}")
    if labels.shape != (features.shape[0],):
        raise ValueError(f"labels must be [{features.shape[0]}], got {tuple(labels.shape)}")
    member = labels >= 0
    if not bool(member.any()):
        return torch.zeros(0, dtype=torch.float32, device=features.device)
    x = features[member].float()
    lab = labels[member]
    num_clusters = int(lab.max()) + 1
    size = torch.bincount(lab, minlength=num_clusters).float()
    sq = (x * x).sum(1)
    m = x.shape[0]
    s = torch.empty(m, dtype=torch.float32, device=x.device)
    for start in range(0, m, block_size):
        stop = min(start + block_size, m)
        d2 = (sq[start:stop, None] + sq[None, :] - 2.0 * (x[start:stop] @ x.t())).clamp_min(0.0)
        d = d2.sqrt()
        rows = torch.arange(stop - start, device=x.device)
        d[rows, rows + start] = 0.0  # exact zero self-distance
        sums = torch.zeros(stop - start, num_clusters, dtype=d.dtype, device=d.device).index_add_(1, lab, d)
        own = lab[start:stop]
        own_sum = sums[rows, own]
        own_size = size[own]
        a = own_sum / (own_size - 1).clamp_min(1.0)
        if b == "all":
            others = m - own_size
            bb = (sums.sum(1) - own_sum) / others.clamp_min(1.0)
            has_other = others > 0
        else:
            mean = sums / size.clamp_min(1.0)
            mean[rows, own] = float("inf")
            mean[:, size == 0] = float("inf")
            bb = mean.min(1).values
            has_other = torch.isfinite(bb)
        denom = torch.maximum(a, bb).clamp_min(torch.finfo(d.dtype).tiny)
        si = (bb - a) / denom
        s[start:stop] = torch.where(has_other & (own_size > 1), si, torch.zeros_like(si))
    total = torch.zeros(num_clusters, dtype=s.dtype, device=s.device).index_add_(0, lab, s)
    return total / size.clamp_min(1.0)

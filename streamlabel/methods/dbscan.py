"""DBSCAN on a sparse list of neighbour pairs: the clustering step of every offline method.

Works on COO pairs (i, j, distance) instead of a dense N x N matrix, so memory is O(pairs). A point is
*core* when at least ``min_samples`` points (itself included, as in the original definition) lie within
``eps``; clusters are the connected components of core-core pairs within ``eps``; a non-core point
within ``eps`` of a core point is a *border* point and joins the cluster of its nearest core point
(deterministic, unlike the visiting-order rule of the original algorithm); everything else is noise.

The result equals dense DBSCAN (up to the border rule) whenever the pairs hold every pair within
``eps``. Pairs from a k-NN table hold them as long as no point has more than k neighbours inside ``eps``.
"""

from __future__ import annotations

import torch

from streamlabel.methods.cluster_dynamics import connected_components

__all__ = ["dbscan_pairs", "dbscan_knn", "dense_relabel", "drop_small_clusters"]


def dense_relabel(labels: torch.Tensor) -> torch.Tensor:
    """Map cluster ids to 0..C-1 in order of each cluster's smallest member; -1 stays -1."""
    out = torch.full_like(labels, -1)
    keep = labels >= 0
    if not bool(keep.any()):
        return out
    ids = labels[keep]
    first = torch.full((int(ids.max()) + 1,), labels.numel(), dtype=torch.long, device=labels.device)
    first.scatter_reduce_(0, ids, torch.nonzero(keep).squeeze(1), reduce="amin")
    present = first < labels.numel()
    order = torch.argsort(first[present])
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=labels.device)
    new_id = torch.full_like(first, -1)
    new_id[present] = rank
    out[keep] = new_id[ids]
    return out


def drop_small_clusters(labels: torch.Tensor, min_size: int) -> torch.Tensor:
    """Labels with every cluster of fewer than ``min_size`` members turned into outliers (-1)."""
    member = labels >= 0
    if not bool(member.any()):
        return labels.clone()
    sizes = torch.bincount(labels[member])
    small = torch.zeros_like(member)
    small[member] = sizes[labels[member]] < min_size
    return torch.where(small, torch.full_like(labels, -1), labels)


def _symmetric(rows: torch.Tensor, cols: torch.Tensor, dists: torch.Tensor, n: int):
    """Both directions of every pair, self pairs dropped, duplicates reduced to their smallest distance."""
    a, b, d = torch.cat([rows, cols]), torch.cat([cols, rows]), torch.cat([dists, dists])
    off = a != b
    a, b, d = a[off], b[off], d[off]
    keys, inv = torch.unique(a * n + b, return_inverse=True)
    best = torch.full((keys.numel(),), float("inf"), dtype=d.dtype, device=d.device)
    best.scatter_reduce_(0, inv, d, reduce="amin")
    return keys // n, keys % n, best


def dbscan_pairs(
    rows: torch.Tensor,
    cols: torch.Tensor,
    dists: torch.Tensor,
    num_samples: int,
    *,
    eps: float,
    min_samples: int,
    candidates: torch.Tensor | None = None,
) -> torch.Tensor:
    """Labels [N] (0..C-1, -1 = noise) from neighbour pairs (treated as undirected).

    ``candidates`` (bool [N]) restricts the clustering to those samples (the rest become -1); NPLP's
    re-clustering of its worst clusters uses it.
    """
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if min_samples < 1:
        raise ValueError(f"min_samples must be >= 1, got {min_samples}")
    if not (rows.shape == cols.shape == dists.shape):
        raise ValueError("rows, cols and dists must have the same shape")
    device = rows.device
    n = int(num_samples)
    a, b, d = _symmetric(rows.long(), cols.long(), dists, n)
    near = d <= eps
    if candidates is not None:
        near &= candidates[a] & candidates[b]
    a, b, d = a[near], b[near], d[near]
    count = torch.bincount(a, minlength=n) + 1  # the point itself counts
    core = count >= min_samples
    if candidates is not None:
        core &= candidates
    cc = core[a] & core[b]
    root = connected_components(a[cc], b[cc], n)
    labels = torch.where(core, root, torch.full_like(root, -1))
    # border points: nearest core neighbour within eps
    to_core = (~core[a]) & core[b]
    if bool(to_core.any()):
        ba, bb, bd = a[to_core], b[to_core], d[to_core]
        nearest = torch.full((n,), float("inf"), dtype=bd.dtype, device=device)
        nearest.scatter_reduce_(0, ba, bd, reduce="amin")
        hit = bd == nearest[ba]
        owner = torch.full((n,), n, dtype=torch.long, device=device)  # ties: smallest core id
        owner.scatter_reduce_(0, ba[hit], bb[hit], reduce="amin")
        border = owner < n
        labels[border] = root[owner[border]]
    return dense_relabel(labels)


def dbscan_knn(
    knn_idx: torch.Tensor, knn_dist: torch.Tensor, *, eps: float, min_samples: int,
    candidates: torch.Tensor | None = None,
) -> torch.Tensor:
    """DBSCAN from a k-NN table [N, k] of neighbour ids (-1 = padding) and distances."""
    n, k = knn_idx.shape
    rows = torch.arange(n, device=knn_idx.device).repeat_interleave(k)
    cols, d = knn_idx.reshape(-1), knn_dist.reshape(-1)
    valid = cols >= 0
    return dbscan_pairs(rows[valid], cols[valid], d[valid], n, eps=eps, min_samples=min_samples,
                        candidates=candidates)

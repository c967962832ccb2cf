"""Sparse k-reciprocal Jaccard distance of a bank to itself, as a list of close pairs (SpCL's clustering input).

Built from the re-ranking pieces of ``streamlabel/evaluation/reranking.py``: exact k-NN, R*(p, k1),
the encoding V (weights exp(-d) on R*, rows summing to 1), local query expansion over k2 neighbours and
the inverted-index Jaccard d_J(p, g) = 1 - sum min(V_p, V_g) / sum max(V_p, V_g). Pairs whose supports
do not overlap are at distance exactly 1, so the pairs with d_J <= ``max_distance`` < 1 are every pair a
DBSCAN with eps <= ``max_distance`` can use: the result equals DBSCAN on the dense N x N matrix.

Memory is O(N * k1 * k2): rows are processed in blocks whose number of (row, shared column, target)
overlaps stays under ``work_budget``, and only the kept pairs are stored.

SpCL weighs R* by exp(-d) of the plain squared Euclidean distance (2 - 2 cos on L2-normalised
features); ``row_max_scaling=True`` divides d by each row's maximum first, as the re-ranking paper does.
"""

from __future__ import annotations

import torch

from streamlabel.evaluation.reranking import (
    CSRRows,
    SparseJaccard,
    expanded_k_reciprocal,
    knn_sqeuclidean,
    local_query_expansion,
    reciprocal_encoding,
)

__all__ = ["close_pairs", "jaccard_encoding", "jaccard_pairs"]


def jaccard_encoding(
    features: torch.Tensor,
    *,
    k1: int = 30,
    k2: int = 6,
    row_max_scaling: bool = False,
    block_size: int = 1024,
    knn_backend: str = "torch",
    lookup_k: int | None = None,
) -> CSRRows:
    """The sparse rows V (after local query expansion) whose Jaccard distances SpCL clusters.

    One exact self-k-NN of ``lookup_k`` (default 4 k1) neighbours serves R*, the expansion and the
    R* distances (read from the lists, see ``lookup_pair_sqdist``); ``knn_backend``: see
    ``knn_sqeuclidean`` (default torch; "auto" = faiss when installed and on the CPU).
    """
    n = features.shape[0]
    if features.ndim != 2:
        raise ValueError(f"features must be [N, D], got shape {tuple(features.shape)}")
    if not 1 <= k1 < n or not 1 <= k2 <= n:
        raise ValueError(f"need 1 <= k1 < N and 1 <= k2 <= N, got k1={k1}, k2={k2}, N={n}")
    x = features.float()
    k = max(k1 + 1, k2, 4 * k1 if lookup_k is None else int(lookup_k))
    knn_dist, knn_idx, row_max = knn_sqeuclidean(x, k, block_size=block_size, backend=knn_backend,
                                                 with_row_max=row_max_scaling)
    rows, cols = expanded_k_reciprocal(knn_idx[:, : k1 + 1], k1)
    scale = row_max if row_max_scaling else torch.ones(n, dtype=x.dtype, device=x.device)
    v = reciprocal_encoding(x, rows, cols, scale, knn=(knn_dist, knn_idx))
    return local_query_expansion(v, knn_idx[:, :k2]) if k2 > 1 else v


def jaccard_pairs(
    features: torch.Tensor,
    *,
    k1: int = 30,
    k2: int = 6,
    max_distance: float = 1.0,
    row_max_scaling: bool = False,
    block_size: int = 1024,
    work_budget: int = 1 << 22,
    knn_backend: str = "torch",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows, cols, d_J) for every overlapping pair i < j with d_J(i, j) <= ``max_distance``; every pair
    not listed is farther than ``max_distance`` or at distance 1 (no overlap)."""
    if not 0.0 < max_distance <= 1.0:
        raise ValueError(f"max_distance must be in (0, 1], got {max_distance}")
    v = jaccard_encoding(features, k1=k1, k2=k2, row_max_scaling=row_max_scaling, block_size=block_size,
                         knn_backend=knn_backend)
    return close_pairs(v, max_distance=max_distance, work_budget=work_budget)


def close_pairs(
    v: CSRRows, *, max_distance: float = 1.0, work_budget: int = 1 << 22
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Jaccard pairs i < j of the rows of V with d_J <= ``max_distance``, in row blocks of bounded work.

    A block's sums of min(V_p, V_g) over the targets g > p (each pair once) are accumulated into a
    dense [block, N] buffer (no sort), whose non-zero entries are the overlapping pairs; a row costs
    its overlaps plus N buffer slots.
    """
    jac = SparseJaccard(v)
    n, device = v.n, v.col.device
    # cost of a row = its (shared column, target) overlaps + one buffer row (overlaps with targets
    # above the row only, about half of them: counted in full, a safe bound)
    work = torch.full((n,), n, dtype=torch.int64, device=device).index_add_(0, v.rows, jac.col_count[v.col])
    block_of = torch.div(torch.cumsum(work, 0), max(1, int(work_budget)), rounding_mode="floor")
    sizes = torch.unique_consecutive(block_of, return_counts=True)[1].tolist()
    out_r, out_c, out_d = [], [], []
    start = 0
    for size in sizes:  # a handful of blocks, each vectorised
        rows = torch.arange(start, start + size, device=device)
        qpos, g, m = jac._overlaps(rows, above=True)
        smin = torch.zeros(size * n, dtype=m.dtype, device=device).index_add_(0, qpos * n + g, m)
        key = torch.nonzero(smin).squeeze(1)
        r, c = key // n + start, key % n
        d = jac._finish(smin[key], jac.row_sum[r], jac.row_sum[c])
        keep = d <= max_distance
        out_r.append(r[keep])
        out_c.append(c[keep])
        out_d.append(d[keep])
        start += size
    return torch.cat(out_r), torch.cat(out_c), torch.cat(out_d)

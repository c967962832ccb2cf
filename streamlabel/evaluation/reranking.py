"""Sparse k-reciprocal re-ranking (Zhong et al., CVPR 2017) in O(N * k) memory.

Pieces, reusable on their own (SpCL-style Jaccard clustering needs the same ones):

* :func:`knn_sqeuclidean` - blocked exact k-NN (squared Euclidean) of a set against itself, plus each
  row's maximum distance (the paper's distances are divided by it);
* :func:`k_reciprocal_neighbors` - R(p, k) = {g in N(p, k) : p in N(g, k)} from a k-NN table;
* :func:`expanded_k_reciprocal` - R*(p, k): add R(q, k/2) for q in R(p, k) when more than 2/3 of
  R(q, k/2) already lies in R(p, k);
* :func:`reciprocal_encoding` - the sparse rows V_p (weights exp(-d(p, g)) on R*(p, k), summing to 1);
* :func:`local_query_expansion` - V_p <- mean of V_g over the k2 nearest g (p itself included);
* :class:`SparseJaccard` / :func:`sparse_jaccard` - d_J(p, g) = 1 - sum min(V_p, V_g) / sum max(V_p, V_g)
  through an inverted (column) index, never a dense N x N matrix.

Convention: N(p, k) holds the k + 1 nearest samples *including p itself*, as in the authors' release.
Exact distance ties at a k-NN boundary are broken by torch.topk; inside the kept list by sample index.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from streamlabel.banks.knn import faiss_available

__all__ = [
    "CSRRows",
    "SparseJaccard",
    "expanded_k_reciprocal",
    "iter_rerank",
    "k_reciprocal_neighbors",
    "knn_sqeuclidean",
    "local_query_expansion",
    "lookup_pair_sqdist",
    "reciprocal_encoding",
    "rerank",
    "resolve_knn_backend",
    "sparse_jaccard",
]


def _sqdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distance matrix [len(a), len(b)], clamped at 0."""
    d = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return d.clamp_min_(0)


def knn_sqeuclidean(
    x: torch.Tensor, k: int, *, block_size: int = 1024, backend: str = "torch", with_row_max: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """k nearest rows of ``x`` for every row (self first, distance 0), by squared Euclidean distance.

    Returns (dist [N, k], idx [N, k], row_max [N]); row_max is the largest distance in each full row
    (None when ``with_row_max`` is False).
    ``backend``: "torch" (blocked, any device, memory O(block_size x N + N x k)), "faiss" (exact
    ``faiss.knn``, CPU only, no N x N block either) or "auto" (faiss when importable and ``x`` is on
    the CPU). Both give the same lists up to exact distance ties at the k-th place.
    """
    if resolve_knn_backend(backend, x.device) == "faiss":
        return _knn_sqeuclidean_faiss(x, k, with_row_max)
    n = x.shape[0]
    k = min(int(k), n)
    sq = (x * x).sum(1)
    dists, idxs, maxes = [], [], []
    for s in range(0, n, block_size):
        # |a|^2 + |b|^2 - 2 a.b with the product and |b|^2 in one addmm: one pass less over the block
        d = torch.addmm(sq[None, :], x[s : s + block_size], x.T, beta=1.0, alpha=-2.0)
        d.add_(sq[s : s + block_size, None]).clamp_min_(0)
        r = torch.arange(d.shape[0], device=x.device)
        d[r, r + s] = 0.0
        if with_row_max:
            maxes.append(d.amax(1))
        # unsorted selection (the sort is the next line's, over k entries only)
        val, idx = torch.topk(d, k, dim=1, largest=False, sorted=False)
        val, idx = _order_by_distance_then_index(val, idx)
        dists.append(val)
        idxs.append(idx)
    return torch.cat(dists), torch.cat(idxs), torch.cat(maxes) if with_row_max else None


def resolve_knn_backend(backend: str, device: torch.device) -> str:
    """The k-NN backend to run: "torch" or "faiss" ("auto" = faiss when importable and on the CPU)."""
    if backend not in ("auto", "torch", "faiss"):
        raise ValueError(f"unknown k-NN backend {backend!r}; choose 'auto', 'torch' or 'faiss'")
    if backend == "torch":
        return "torch"
    on_cpu = torch.device(device).type == "cpu"
    if backend == "faiss" and not on_cpu:
        raise ValueError("knn backend 'faiss' needs the features on the CPU")
    if backend == "faiss" and not faiss_available():
        raise ImportError("knn backend 'faiss' needs the faiss package (pip install faiss-cpu)")
    return "faiss" if on_cpu and faiss_available() else "torch"


def _order_by_distance_then_index(val: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of a k-NN list in a deterministic order: by distance, ties by sample index."""
    idx, perm = idx.sort(dim=1)
    val = val.gather(1, perm)
    val, perm = val.sort(dim=1, stable=True)
    return val, idx.gather(1, perm)


def _knn_sqeuclidean_faiss(
    x: torch.Tensor, k: int, with_row_max: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``knn_sqeuclidean`` through ``faiss.knn`` (exact, no index copy of the features)."""
    from streamlabel.banks.knn import faiss_following_torch_threads

    faiss = faiss_following_torch_threads()

    n = x.shape[0]
    k = min(int(k), n)
    xs = x.detach().float().contiguous().numpy()
    dist, idx = faiss.knn(xs, xs, k, metric=faiss.METRIC_L2)
    dist, idx = torch.from_numpy(dist).clamp_min_(0), torch.from_numpy(idx)
    # self at distance 0 as in the torch path: faiss's own distance may be a rounding error above 0,
    # and a duplicate row may push self out of the list (then self replaces the last entry)
    own = torch.arange(n)[:, None]
    is_self = idx == own
    missing = ~is_self.any(1)
    idx[missing, -1] = own[missing, 0]
    dist.masked_fill_(idx == own, 0.0)
    dist, idx = _order_by_distance_then_index(dist, idx)
    row_max = None
    if with_row_max:  # max_g |x_p - x_g|^2 = |x_p|^2 + max_g (|x_g|^2 - 2 x_p . x_g): one top-1 IP search
        sq = (x.float() * x.float()).sum(1, keepdim=True)
        base = torch.cat([x.float(), sq], 1).numpy()
        query = torch.cat([-2.0 * x.float(), torch.ones_like(sq)], 1).numpy()
        far = torch.from_numpy(faiss.knn(query, base, 1, metric=faiss.METRIC_INNER_PRODUCT)[0])[:, 0]
        row_max = (sq[:, 0] + far).clamp_min_(0)
    return dist.to(x.dtype), idx, None if row_max is None else row_max.to(x.dtype)


def _member(sorted_keys: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Boolean mask: which ``keys`` occur in the sorted 1-D tensor ``sorted_keys``."""
    if sorted_keys.numel() == 0:
        return torch.zeros_like(keys, dtype=torch.bool)
    pos = torch.searchsorted(sorted_keys, keys).clamp_max_(sorted_keys.numel() - 1)
    return sorted_keys[pos] == keys


def k_reciprocal_neighbors(knn_idx: torch.Tensor, k: int) -> torch.Tensor:
    """R(p, k) from a k-NN table [N, >= k+1] (self included): [N, k+1] sample ids, -1 where not reciprocal.

    g is kept in p's row when g is among p's k+1 nearest and p among g's k+1 nearest (rank order kept).
    """
    n = knn_idx.shape[0]
    fwd = knn_idx[:, : k + 1]
    rows = torch.arange(n, device=knn_idx.device)[:, None].expand_as(fwd)
    keys = (rows * n + fwd).flatten().sort().values
    recip = _member(keys, (fwd * n + rows).flatten()).view_as(fwd)
    return torch.where(recip, fwd, torch.full_like(fwd, -1))


def expanded_k_reciprocal(
    knn_idx: torch.Tensor, k1: int, *, block_size: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """R*(p, k1) as sorted, duplicate-free (row, col) pairs (Eq. 6 of the paper).

    R(q, k1/2) (k1/2 rounded half-to-even) is added for every q in R(p, k1) when
    |R(p, k1) & R(q, k1/2)| > 2/3 |R(q, k1/2)|.
    """
    n = knn_idx.shape[0]
    kh = int(round(k1 / 2))
    r1 = k_reciprocal_neighbors(knn_idx, k1)
    rh = k_reciprocal_neighbors(knn_idx, kh)
    all_rows = torch.arange(n, device=knn_idx.device)[:, None].expand_as(r1)
    r1_keys = (all_rows * n + r1)[r1 >= 0].sort().values
    out_keys = []
    for s in range(0, n, block_size):
        p = r1[s : s + block_size]  # [b, k1+1]
        rows = torch.arange(s, s + p.shape[0], device=knn_idx.device)[:, None, None]
        cand = rh[p.clamp_min(0)]  # [b, k1+1, kh+1]
        cand_ok = (cand >= 0) & (p >= 0)[..., None]
        inside = _member(r1_keys, rows * n + cand) & cand_ok
        take = inside.sum(-1) * 3 > cand_ok.sum(-1) * 2  # strictly more than 2/3, in integers
        extra = (rows * n + cand)[take[..., None] & cand_ok]
        own = (rows[..., 0] * n + p)[p >= 0]
        out_keys.append(torch.unique(torch.cat([own, extra])))
    keys = torch.cat(out_keys)
    return keys // n, keys % n


def _pair_sqdist(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distance of the listed (row, col) pairs, in blocks of bounded memory."""
    out = torch.empty(rows.shape[0], dtype=x.dtype, device=x.device)
    sq = (x * x).sum(1)
    step = max(1, (1 << 24) // max(1, x.shape[1]))
    for s in range(0, rows.shape[0], step):
        r, c = rows[s : s + step], cols[s : s + step]
        out[s : s + step] = (sq[r] + sq[c] - 2.0 * (x[r] * x[c]).sum(1)).clamp_min_(0)
    out[rows == cols] = 0.0
    return out


def lookup_pair_sqdist(
    x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, knn_dist: torch.Tensor, knn_idx: torch.Tensor
) -> torch.Tensor:
    """Squared distances of (row, col) pairs, read from the k-NN table where col is in row's list.

    R* pairs are drawn from neighbour lists, so a long enough table (k ~ 4 k1) holds nearly all of
    them: one sorted search replaces the two feature-row gathers per pair; the few misses are
    computed from the features (``_pair_sqdist``).
    """
    n = knn_idx.shape[0]
    sorted_idx, perm = knn_idx.sort(dim=1)  # row-major keys row * n + col are then globally sorted
    keys = (torch.arange(n, device=knn_idx.device)[:, None] * n + sorted_idx).flatten()
    table = knn_dist.gather(1, perm).flatten()
    query = rows * n + cols
    pos = torch.searchsorted(keys, query).clamp_max_(keys.numel() - 1)
    hit = keys[pos] == query
    out = torch.where(hit, table[pos], torch.zeros((), dtype=table.dtype, device=table.device)).to(x.dtype)
    miss = torch.nonzero(~hit).squeeze(1)
    if miss.numel():
        out[miss] = _pair_sqdist(x, rows[miss], cols[miss])
    return out


@dataclass(frozen=True)
class CSRRows:
    """A square sparse matrix in compressed-row form (plain tensors; works on any device)."""

    crow: torch.Tensor  # int64 [n + 1] row starts
    col: torch.Tensor  # int64 [nnz] column of each entry, ascending within a row
    val: torch.Tensor  # float [nnz]

    @property
    def n(self) -> int:
        return self.crow.shape[0] - 1

    @property
    def rows(self) -> torch.Tensor:
        """Row id of every stored entry."""
        return torch.repeat_interleave(torch.arange(self.n, device=self.col.device), self.crow.diff())

    @classmethod
    def from_sorted_coo(cls, rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, n: int) -> CSRRows:
        """From row-major sorted, duplicate-free (row, col, val) triplets."""
        crow = torch.zeros(n + 1, dtype=torch.int64, device=rows.device)
        crow[1:] = torch.cumsum(torch.bincount(rows, minlength=n), 0)
        return cls(crow, cols, vals)

    def to_dense(self) -> torch.Tensor:
        out = torch.zeros(self.n, self.n, dtype=self.val.dtype, device=self.val.device)
        out[self.rows, self.col] = self.val
        return out


def reciprocal_encoding(
    x: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    row_max: torch.Tensor,
    *,
    knn: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> CSRRows:
    """Sparse V [N, N]: V[p, g] = exp(-d(p, g) / row_max[p]) on R*(p), each row scaled to sum 1.

    ``knn`` = (dist, idx) of ``knn_sqeuclidean``: d is read from it where listed (no feature gathers).
    """
    n = x.shape[0]
    d = _pair_sqdist(x, rows, cols) if knn is None else lookup_pair_sqdist(x, rows, cols, *knn)
    d = d / row_max[rows].clamp_min(torch.finfo(x.dtype).tiny)
    w = torch.exp(-d)
    total = torch.zeros(n, dtype=w.dtype, device=w.device).index_add_(0, rows, w)
    return CSRRows.from_sorted_coo(rows, cols, w / total[rows], n)


def _segments(starts: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Expand segments [starts[i], starts[i] + lengths[i]) into (owner i, position) per element."""
    owner = torch.repeat_interleave(torch.arange(lengths.shape[0], device=lengths.device), lengths)
    offset = torch.cumsum(lengths, 0) - lengths
    pos = torch.arange(owner.shape[0], device=lengths.device) - offset[owner] + starts[owner]
    return owner, pos


def local_query_expansion(v: CSRRows, neighbors: torch.Tensor, *, block_size: int = 4096) -> CSRRows:
    """V_p <- mean of V_g over g in ``neighbors[p]`` ([N, k2], p itself included) (Eq. 10)."""
    n, k2 = neighbors.shape
    crow, col, val = v.crow, v.col, v.val
    length = crow.diff()
    keys_out, vals_out = [], []
    for s in range(0, n, block_size):
        nb = neighbors[s : s + block_size].reshape(-1)
        owner, pos = _segments(crow[nb], length[nb])
        out_row = owner // k2 + s
        keys, inv = torch.unique(out_row * n + col[pos], return_inverse=True)
        acc = torch.zeros(keys.shape[0], dtype=val.dtype, device=val.device).index_add_(0, inv, val[pos])
        keys_out.append(keys)
        vals_out.append(acc / k2)
    keys = torch.cat(keys_out)
    return CSRRows.from_sorted_coo(keys // n, keys % n, torch.cat(vals_out), n)


class SparseJaccard:
    """Jaccard distances d_J(p, g) = 1 - sum min / sum max between rows of a sparse V (Eq. 11).

    An inverted index (V by column, restricted to the ``targets`` rows) lists for every column the
    target rows that use it, so only pairs with overlapping support are ever touched.
    """

    def __init__(self, v: CSRRows, targets: torch.Tensor | None = None) -> None:
        self.v = v
        n = v.n
        col, val = v.col, v.val
        rows = v.rows
        self.row_sum = torch.zeros(n, dtype=val.dtype, device=val.device).index_add_(0, rows, val)
        self.targets = torch.arange(n, device=col.device) if targets is None else targets.to(col.device)
        # target position of each sample (-1 = not a target)
        self.target_pos = torch.full((n,), -1, dtype=torch.int64, device=col.device)
        self.target_pos[self.targets] = torch.arange(self.targets.shape[0], device=col.device)
        keep = self.target_pos[rows] >= 0
        t_rows, t_cols, t_vals = rows[keep], col[keep], val[keep]
        self.csc_keys, order = torch.sort(t_cols * n + t_rows)  # by column, then row
        self.csc_rows, self.csc_vals = t_rows[order], t_vals[order]
        counts = torch.bincount(t_cols, minlength=n)
        self.col_start = torch.cumsum(counts, 0) - counts
        self.col_count = counts

    def _overlaps(
        self, rows: torch.Tensor, *, above: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(position in rows, target sample, min(V_p, V_g)) for every shared column (not summed);
        ``above``: only targets g > p (half the work when the pairs are symmetric)."""
        crow, col, val = self.v.crow, self.v.col, self.v.val
        owner, pos = _segments(crow[rows], crow[rows + 1] - crow[rows])
        x, vx = col[pos], val[pos]
        start, count = self.col_start[x], self.col_count[x]
        if above:  # a column's targets are sorted by sample: skip those <= p
            first = torch.searchsorted(self.csc_keys, x * self.v.n + rows[owner], right=True)
            start, count = first, start + count - first
        owner2, pos2 = _segments(start, count)
        m = torch.minimum(vx[owner2], self.csc_vals[pos2])
        return owner[owner2], self.csc_rows[pos2], m

    def _finish(self, smin: torch.Tensor, p_sum: torch.Tensor, g_sum: torch.Tensor) -> torch.Tensor:
        smax = (p_sum + g_sum - smin).clamp_min(torch.finfo(smin.dtype).tiny)
        return 1.0 - smin / smax

    def dense(self, rows: torch.Tensor) -> torch.Tensor:
        """Distances [len(rows), len(targets)] (1 where supports do not overlap)."""
        qpos, g, m = self._overlaps(rows)
        nt = self.targets.shape[0]
        smin = torch.zeros(rows.shape[0] * nt, dtype=m.dtype, device=m.device)
        smin.index_add_(0, qpos * nt + self.target_pos[g], m)
        smin = smin.view(rows.shape[0], nt)
        return self._finish(smin, self.row_sum[rows][:, None], self.row_sum[self.targets][None, :])

    def pairs(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(position in rows, target sample, distance) for every pair with overlapping support;
        every other pair is at distance 1. Sorted by (position, sample)."""
        qpos, g, m = self._overlaps(rows)
        n = self.v.n
        keys, inv = torch.unique(qpos * n + g, return_inverse=True)
        smin = torch.zeros(keys.shape[0], dtype=m.dtype, device=m.device).index_add_(0, inv, m)
        p, g = keys // n, keys % n
        return p, g, self._finish(smin, self.row_sum[rows][p], self.row_sum[g])


def sparse_jaccard(
    v: CSRRows, rows: torch.Tensor | None = None, targets: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Jaccard distance triplets (position in rows, target sample, d_J) between rows of V with any
    overlap; all other pairs are at distance 1. ``rows`` / ``targets`` default to every sample."""
    jac = SparseJaccard(v, targets)
    rows = torch.arange(v.n, device=v.col.device) if rows is None else rows
    return jac.pairs(rows)


def _prepare(x: np.ndarray | torch.Tensor, device: torch.device | None) -> torch.Tensor:
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    t = t.to(device) if device is not None else t
    if t.ndim != 2:
        raise ValueError(f"features must be 2-D [N, D], got shape {tuple(t.shape)}")
    if not t.is_floating_point() or t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    if not bool(torch.isfinite(t).all()):
        raise ValueError("features contain NaN or infinite values")
    return t


def iter_rerank(
    query_feats: np.ndarray | torch.Tensor,
    gallery_feats: np.ndarray | torch.Tensor,
    *,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    chunk_size: int = 256,
    block_size: int = 1024,
    device: str | torch.device | None = None,
) -> Iterator[torch.Tensor]:
    """Re-ranked query x gallery distances, yielded as row blocks [<= chunk_size, G] in query order.

    d* = (1 - lambda) d_J + lambda d (Eq. 12), d = squared Euclidean over each row's maximum, on the
    features as given (L2-normalise them first for cosine-style embeddings).
    """
    dev = torch.device(device) if device is not None else None
    q = _prepare(query_feats, dev)
    g = _prepare(gallery_feats, q.device).to(q.dtype)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"query and gallery feature dims differ: {q.shape[1]} vs {g.shape[1]}")
    if k1 < 1 or k2 < 1:
        raise ValueError(f"k1 and k2 must be >= 1, got {k1}, {k2}")
    x = torch.cat([q, g])
    nq, n = q.shape[0], x.shape[0]
    _, knn_idx, row_max = knn_sqeuclidean(x, max(k1 + 1, k2), block_size=block_size)
    rows, cols = expanded_k_reciprocal(knn_idx, k1)
    v = reciprocal_encoding(x, rows, cols, row_max)
    if k2 > 1:
        v = local_query_expansion(v, knn_idx[:, :k2])
    jac = SparseJaccard(v, targets=torch.arange(nq, n, device=x.device))
    scale = row_max.clamp_min(torch.finfo(x.dtype).tiny)
    for s in range(0, nq, max(1, int(chunk_size))):
        e = min(nq, s + max(1, int(chunk_size)))
        d0 = _sqdist(x[s:e], g) / scale[s:e, None]
        dj = jac.dense(torch.arange(s, e, device=x.device))
        yield (1.0 - lambda_value) * dj + lambda_value * d0


def rerank(
    query_feats: np.ndarray | torch.Tensor, gallery_feats: np.ndarray | torch.Tensor, **kwargs
) -> torch.Tensor:
    """The whole re-ranked distance matrix [Q, G] (see :func:`iter_rerank` for the arguments)."""
    return torch.cat(list(iter_rerank(query_feats, gallery_feats, **kwargs)))

"""Re-ID retrieval metrics (mAP and CMC) under the Market-1501 / DukeMTMC protocol.

For every query the gallery is ranked by distance; gallery entries with the query's identity *and*
camera are removed (same-view shots are too easy), gallery entries with pid -1 are junk and removed,
and a query with no remaining true match is skipped. AP is the non-interpolated average precision
(mean of precision@hit over all true matches); CMC@k is the share of queries with a match in the top k.

Ties in distance are broken by gallery index (stable sort): the result is deterministic.
Work is chunked over queries, so memory is O(chunk_size x G), and vectorised within a chunk.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

__all__ = ["NothingToScoreError", "evaluate_from_distances", "evaluate_retrieval", "pairwise_distance",
           "unscorable_reason"]


class NothingToScoreError(ValueError):
    """No query has a valid match in the gallery: an mAP would be 0/0."""


def unscorable_reason(
    query_pids: ArrayLike, query_camids: ArrayLike, gallery_pids: ArrayLike, gallery_camids: ArrayLike
) -> str | None:
    """Why no query can be scored under the protocol, from the ids alone (no feature needed); None when at
    least one query has a gallery entry of its identity (pid >= 0) from another camera."""
    qp, qc = np.asarray(query_pids).reshape(-1), np.asarray(query_camids).reshape(-1)
    gp, gc = np.asarray(gallery_pids).reshape(-1), np.asarray(gallery_camids).reshape(-1)
    if qp.size == 0:
        return "no query: the query set is empty"
    if gp.size == 0:
        return "no query has a match: the gallery is empty"
    labelled = gp >= 0
    gallery_ids = set(gp[labelled].tolist())
    pairs = set(zip(gp[labelled].tolist(), gc[labelled].tolist(), strict=True))
    cams_of: dict[int, int] = {}
    for pid, _cam in pairs:
        cams_of[pid] = cams_of.get(pid, 0) + 1
    junk = absent = same_camera = 0
    for pid, cam in zip(qp.tolist(), qc.tolist(), strict=True):
        if pid < 0:
            junk += 1
        elif pid not in gallery_ids:
            absent += 1
        elif cams_of[pid] - ((pid, cam) in pairs) == 0:
            same_camera += 1
        else:
            return None
    total = qp.size
    if junk == total:
        return f"every one of the {total} query pids is -1 (junk / unlabelled), so no query has an identity to find"
    if not labelled.any():
        return f"every gallery pid is -1 (junk / unlabelled), so no query of the {total} can have a true match"
    parts = [f"{n} {'has' if n == 1 else 'have'} {what}"
             for n, what in ((junk, "pid -1 (junk)"), (absent, "an identity absent from the gallery"),
                             (same_camera, "only same-camera matches, which the protocol excludes")) if n]
    return f"no query has a valid match in the gallery (of the {total} queries, {'; '.join(parts)})"

ArrayLike = np.ndarray | torch.Tensor | Sequence
METRICS = ("cosine", "euclidean")


def _tensor(x: ArrayLike, device: torch.device) -> torch.Tensor:
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.to(device)


def _ids(x: ArrayLike, name: str, n: int, device: torch.device) -> torch.Tensor:
    t = _tensor(x, device)
    if t.ndim != 1 or t.shape[0] != n:
        raise ValueError(f"{name} must be 1-D with {n} entries, got shape {tuple(t.shape)}")
    if t.is_floating_point() and not bool(torch.all(t == torch.round(t))):
        raise ValueError(f"{name} must hold integers")
    return t.long()


def _feats(x: ArrayLike, name: str, device: torch.device) -> torch.Tensor:
    t = _tensor(x, device)
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D [N, D], got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.float()
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def pairwise_distance(q: torch.Tensor, g: torch.Tensor, metric: str = "cosine") -> torch.Tensor:
    """Distance matrix [len(q), len(g)]: cosine (1 - cos) or Euclidean (not squared)."""
    if metric == "cosine":
        q = torch.nn.functional.normalize(q, dim=1)
        g = torch.nn.functional.normalize(g, dim=1)
        return 1.0 - q @ g.T
    if metric == "euclidean":
        sq = (q * q).sum(1, keepdim=True) + (g * g).sum(1)[None, :] - 2.0 * (q @ g.T)
        return sq.clamp_min_(0).sqrt_()
    raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")


class _Accumulator:
    """Running sums of AP and CMC hits over valid queries, one distance block at a time."""

    def __init__(self, gp: torch.Tensor, gc: torch.Tensor, max_rank: int) -> None:
        self.gp, self.gc, self.max_rank = gp, gc, max_rank
        self.aps: list[torch.Tensor] = []  # per valid query, kept so the sum order is chunk-independent
        self.firsts: list[torch.Tensor] = []  # 1-based rank of the first true match, per valid query
        self.seen = 0

    def add(self, dist: torch.Tensor, qp: torch.Tensor, qc: torch.Tensor) -> None:
        if dist.ndim != 2 or dist.shape != (qp.shape[0], self.gp.shape[0]):
            raise ValueError(
                f"distance block has shape {tuple(dist.shape)}, expected ({qp.shape[0]}, {self.gp.shape[0]})"
            )
        if torch.isnan(dist).any():
            raise ValueError("distance matrix contains NaN")
        self.seen += qp.shape[0]
        order = torch.sort(dist, dim=1, stable=True).indices  # ties -> lower gallery index first
        sp, sc = self.gp[order], self.gc[order]
        same_id = sp == qp[:, None]
        keep = (sp >= 0) & ~(same_id & (sc == qc[:, None]))
        good = same_id & keep
        num_rel = good.sum(1)
        valid = num_rel > 0
        if not bool(valid.any()):
            return
        pos = torch.cumsum(keep, 1, dtype=torch.int32)  # 1-based rank among kept entries
        row, col = good.nonzero(as_tuple=True)  # row-major: each row's hits in rank order
        hit_pos = pos[row, col]
        row_start = torch.cumsum(num_rel, 0) - num_rel
        hits = torch.arange(1, row.shape[0] + 1, device=dist.device) - row_start[row]  # k-th hit of its row
        prec = hits.double() / hit_pos.double()
        ap = torch.zeros(good.shape[0], dtype=torch.float64, device=dist.device).index_add_(0, row, prec)
        ap = ap / num_rel.clamp_min(1)
        big = torch.iinfo(torch.int32).max
        first = torch.full((good.shape[0],), big, dtype=torch.int32, device=dist.device)
        first = first.scatter_reduce(0, row, hit_pos, reduce="amin")
        self.aps.append(ap[valid].cpu())
        self.firsts.append(first[valid].cpu())

    def result(self, ranks: Sequence[int]) -> dict:
        aps = torch.cat(self.aps) if self.aps else torch.zeros(0, dtype=torch.float64)
        if aps.numel() == 0:
            raise NothingToScoreError("nothing could be scored: no query has a valid match in the gallery (check "
                                      "pids / camids)")
        first = torch.cat(self.firsts)
        hist = torch.bincount(first.clamp_max(self.max_rank + 1).long(), minlength=self.max_rank + 2)
        cmc = (torch.cumsum(hist[1 : self.max_rank + 1], 0).double() / aps.numel()).tolist()
        out: dict = {"mAP": float(aps.sum()) / aps.numel()}
        for k in ranks:
            out[f"rank{k}"] = cmc[min(k, self.max_rank) - 1]
        out["cmc"] = cmc
        out["num_valid_queries"] = int(aps.numel())
        out["num_queries"] = self.seen
        return out


def _check_ranks(ranks: Sequence[int]) -> tuple[int, ...]:
    ranks = tuple(int(k) for k in ranks)
    if not ranks or min(ranks) < 1:
        raise ValueError(f"ranks must be positive integers, got {ranks}")
    return ranks


def _device(device: str | torch.device | None, like: ArrayLike) -> torch.device:
    if device is not None:
        return torch.device(device)
    return like.device if isinstance(like, torch.Tensor) else torch.device("cpu")


def evaluate_retrieval(
    query_feats: ArrayLike,
    query_pids: ArrayLike,
    query_camids: ArrayLike,
    gallery_feats: ArrayLike,
    gallery_pids: ArrayLike,
    gallery_camids: ArrayLike,
    *,
    ranks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 1024,
    metric: str = "cosine",
    device: str | torch.device | None = None,
    max_rank: int = 50,
) -> dict:
    """mAP and CMC of a query set against a gallery (keys ``mAP``, ``rank{k}``, ``cmc``,
    ``num_valid_queries``, ``num_queries``); ``cmc`` has ``max(max_rank, max(ranks))`` entries."""
    dev = _device(device, query_feats)
    qf = _feats(query_feats, "query_feats", dev)
    gf = _feats(gallery_feats, "gallery_feats", dev).to(qf.dtype)
    if qf.shape[1] != gf.shape[1]:
        raise ValueError(f"query and gallery feature dims differ: {qf.shape[1]} vs {gf.shape[1]}")
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    qp = _ids(query_pids, "query_pids", qf.shape[0], dev)
    qc = _ids(query_camids, "query_camids", qf.shape[0], dev)
    gp = _ids(gallery_pids, "gallery_pids", gf.shape[0], dev)
    gc = _ids(gallery_camids, "gallery_camids", gf.shape[0], dev)
    step = max(1, int(chunk_size))
    blocks = (pairwise_distance(qf[s : s + step], gf, metric) for s in range(0, qf.shape[0], step))
    return evaluate_from_distances(
        blocks,
        qp,
        qc,
        gp,
        gc,
        ranks=ranks,
        device=dev,
        max_rank=max_rank,
    )


def evaluate_from_distances(
    dist: ArrayLike | Iterable[torch.Tensor],
    query_pids: ArrayLike,
    query_camids: ArrayLike,
    gallery_pids: ArrayLike,
    gallery_camids: ArrayLike,
    *,
    ranks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 1024,
    device: str | torch.device | None = None,
    max_rank: int = 50,
) -> dict:
    """Same metrics from a precomputed distance matrix [Q, G] (e.g. after re-ranking).

    ``dist`` may also be an iterable of row blocks [c, G] in query order, so a Q x G matrix never
    has to exist at once.
    """
    ranks = _check_ranks(ranks)
    step = max(1, int(chunk_size))
    is_matrix = isinstance(dist, torch.Tensor | np.ndarray)
    dev = _device(device, dist if is_matrix else query_pids)
    qp = _ids(query_pids, "query_pids", len(query_pids), dev)
    qc = _ids(query_camids, "query_camids", qp.shape[0], dev)
    gp = _ids(gallery_pids, "gallery_pids", len(gallery_pids), dev)
    gc = _ids(gallery_camids, "gallery_camids", gp.shape[0], dev)
    nq = qp.shape[0]
    reason = unscorable_reason(qp.cpu().numpy(), qc.cpu().numpy(), gp.cpu().numpy(), gc.cpu().numpy())
    if reason:  # found before any distance is computed: an mAP of 0/0 is not reported as 0 or NaN
        raise NothingToScoreError(f"nothing could be scored: {reason}")
    if is_matrix:
        mat = _tensor(dist, dev)
        if mat.shape != (nq, gp.shape[0]):
            raise ValueError(f"dist has shape {tuple(mat.shape)}, expected [Q, G] = ({nq}, {gp.shape[0]})")
        blocks: Iterable = (mat[s : s + step] for s in range(0, nq, step))
    else:
        blocks = dist
    acc = _Accumulator(gp, gc, max(max_rank, max(ranks)))
    start = 0
    for block in blocks:
        b = _tensor(block, dev)
        if b.ndim != 2:
            raise ValueError(f"distance block must be 2-D, got shape {tuple(b.shape)}")
        acc.add(b, qp[start : start + b.shape[0]], qc[start : start + b.shape[0]])
        start += b.shape[0]
    if start != nq:
        raise ValueError(f"distance rows cover {start} queries, expected {nq}")
    return acc.result(ranks)

"""RowShards: an N x D matrix (feature bank, cluster sums) split by rows over the ranks of torch.distributed.

Rank r holds rows [r*s, min((r+1)*s, N)) with s = ceil(N / world); at world 1 (no process group, or
``distributed=False``) it holds every row and no collective runs. Reading rows (``m[ids]``) sums the
owners' rows over the ranks (the others contribute zeros, so the result is exact); writes
(``index_add_`` / ``index_copy_`` / ``m[ids] = 0``) touch only the owner's rows. ``search`` is the k-NN
of query rows against every shard: local top-k per block of rows, then a global merge of the
candidates. With a ``projection`` [D, d] each shard also keeps its rows projected to d dimensions;
candidates are then found in d dimensions (``oversample`` x k of them) and re-scored exactly.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from streamlabel.banks.distributed import all_gather_cat, all_reduce_, reduce_to, world_and_rank

_NEG_INF = float("-inf")


def projection_matrix(dim: int, proj_dim: int, seed: int = 0, device: torch.device | str | None = None) -> torch.Tensor:
    """A seeded [dim, proj_dim] matrix with orthonormal columns (same on every rank)."""
    if not 0 < proj_dim < dim:
        raise ValueError(f"projection dimension must be in (0, {dim}), got {proj_dim}")
    gaussian = torch.randn(dim, proj_dim, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64)
    return torch.linalg.qr(gaussian).Q.float().to(device)


def merge_topk(sims: torch.Tensor, idx: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best (sim, id) columns of every row, padded with (-inf, -1); empty slots carry id -1."""
    take = min(k, sims.shape[1])
    top, pos = torch.topk(sims, take, dim=1)
    out_idx = idx.gather(1, pos).masked_fill(torch.isinf(top), -1)
    if take < k:
        top = torch.cat([top, top.new_full((top.shape[0], k - take), _NEG_INF)], dim=1)
        out_idx = torch.cat([out_idx, out_idx.new_full((out_idx.shape[0], k - take), -1)], dim=1)
    return top, out_idx


class RowShards:
    """This rank's rows of an N x D matrix (``local``), the row range it owns, and the collectives to use it."""

    def __init__(
        self,
        num_rows: int,
        dim: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        distributed: bool = True,
        normalize_rows: bool = False,
        projection: torch.Tensor | None = None,
        oversample: int = 4,
        block_rows: int = 1 << 16,
    ) -> None:
        self.world, self.rank = world_and_rank() if distributed else (1, 0)
        self.num_rows, self.dim = int(num_rows), int(dim)
        self.shard_rows = -(-self.num_rows // self.world)
        self.start = min(self.rank * self.shard_rows, self.num_rows)
        self.stop = min(self.start + self.shard_rows, self.num_rows)
        self.local = torch.zeros(self.shard_rows, self.dim, dtype=dtype, device=device)
        self.normalize_rows = bool(normalize_rows)  # similarity reads rows L2-normalised (cluster sums)
        self.projection = None if projection is None else projection.to(self.local.device, torch.float32)
        self.local_proj = (None if projection is None else
                           torch.zeros(self.shard_rows, projection.shape[1], dtype=dtype, device=device))
        self.oversample, self.block_rows = int(oversample), int(block_rows)

    # ------------------------------------------------------------------ tensor-like access
    @property
    def device(self) -> torch.device:
        return self.local.device

    @property
    def dtype(self) -> torch.dtype:
        return self.local.dtype

    @property
    def shape(self) -> tuple[int, int]:
        return (self.num_rows, self.dim)

    @property
    def owned_rows(self) -> int:
        return self.stop - self.start

    def _owned(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mask over the flattened ids of the rows this rank owns, their local row numbers)."""
        flat = ids.reshape(-1).to(self.device)
        mask = (flat >= self.start) & (flat < self.stop)
        return mask, flat[mask] - self.start

    def __getitem__(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows ``ids`` (any shape, or a bool mask over the N rows) as float32 on every rank."""
        if ids.dtype == torch.bool:
            ids = ids.nonzero().flatten()
        if self.world == 1:
            return self.local[ids.to(self.device)].float()
        mask, local = self._owned(ids)
        out = torch.zeros(mask.numel(), self.dim, dtype=torch.float32, device=self.device)
        out[mask] = self.local[local].float()
        all_reduce_(out, world=self.world)
        return out.reshape(*ids.shape, self.dim)

    def __setitem__(self, ids: torch.Tensor, value: float) -> None:
        """Fill rows ``ids`` with a constant (used to empty cluster sums)."""
        mask, local = self._owned(ids)
        self.local[local] = value
        if self.local_proj is not None:
            self.local_proj[local] = value

    def index_add_(self, dim: int, ids: torch.Tensor, values: torch.Tensor) -> RowShards:
        """Add ``values`` [R, D] to rows ``ids`` on their owner (tensor.index_add_ semantics, dim 0)."""
        self._write(dim, ids, values, add=True)
        return self

    def index_copy_(self, dim: int, ids: torch.Tensor, values: torch.Tensor) -> RowShards:
        """Overwrite rows ``ids`` with ``values`` [R, D] on their owner (dim 0)."""
        self._write(dim, ids, values, add=False)
        return self

    def _write(self, dim: int, ids: torch.Tensor, values: torch.Tensor, *, add: bool) -> None:
        if dim != 0:
            raise ValueError("RowShards writes rows only (dim 0)")
        mask, local = self._owned(ids)
        mine = values.to(self.device)[mask]
        op = torch.Tensor.index_add_ if add else torch.Tensor.index_copy_
        op(self.local, 0, local, mine.to(self.dtype))
        if self.local_proj is not None:
            op(self.local_proj, 0, local, (mine.float() @ self.projection).to(self.dtype))

    def fill_(self, full: torch.Tensor) -> None:
        """Take this rank's rows of a full [N, D] matrix."""
        if tuple(full.shape) != self.shape:
            raise ValueError(f"matrix must be {self.shape}, got {tuple(full.shape)}")
        self.local[: self.owned_rows] = full[self.start : self.stop].to(self.device, self.dtype)
        self.reproject()

    def reproject(self) -> None:
        """Recompute the projected rows from the full rows (after writing ``local`` directly)."""
        if self.local_proj is None:
            return
        for b0 in range(0, self.shard_rows, self.block_rows):
            self.local_proj[b0 : b0 + self.block_rows] = (
                self.local[b0 : b0 + self.block_rows].float() @ self.projection).to(self.dtype)

    def assign_segment_sums_(self, labels: torch.Tensor, source: RowShards) -> None:
        """Row c := sum of the ``source`` rows labelled c (cluster sums), accumulated in float32 and reduced
        to the rank that owns c; ``labels`` [N] is the same on every rank. Memory: one block of rows."""
        src_labels = labels.to(self.device)[source.start : source.stop]
        src_rows = source.local[: source.owned_rows]
        for owner in range(self.world):
            first = min(owner * self.shard_rows, self.num_rows)
            last = min(first + self.shard_rows, self.num_rows)
            for c0 in range(first, last, self.block_rows):
                c1 = min(c0 + self.block_rows, last)
                part = torch.zeros(c1 - c0, self.dim, dtype=torch.float32, device=self.device)
                sel = (src_labels >= c0) & (src_labels < c1)
                part.index_add_(0, src_labels[sel] - c0, src_rows[sel].float())
                reduce_to(part, owner, self.world)
                if owner == self.rank:
                    self.local[c0 - self.start : c1 - self.start] = part.to(self.dtype)
        self.reproject()

    # ------------------------------------------------------------------ similarity
    def query_rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows ``ids`` as read for similarity (L2-normalised when ``normalize_rows``), float32."""
        rows = self[ids]
        return F.normalize(rows, dim=-1) if self.normalize_rows else rows

    def score_blocks(self, queries: torch.Tensor, *, projected: bool = False) -> Iterator[tuple[int, torch.Tensor]]:
        """(first global row, [Q, b] similarities) for every block of this rank's rows, never more than a block."""
        store = self.local_proj if projected else self.local
        normalize = projected or self.normalize_rows
        q = queries.float()
        for b0 in range(0, self.owned_rows, self.block_rows):
            block = store[b0 : min(b0 + self.block_rows, self.owned_rows)].float()
            if normalize:
                block = F.normalize(block, dim=1)
            yield self.start + b0, q @ block.t()

    def search(
        self, queries: torch.Tensor, k: int, *, query_ids: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k rows of the whole matrix for each query row: (exact similarities, global ids), [Q, k].

        ``query_ids`` [Q] excludes each query's own row (-1: none); ``valid`` [N] masks rows that may be
        returned. Slots with no candidate hold (-inf, -1). Identical on every rank.
        """
        if self.projection is None:
            return self._merged_topk(queries, k, query_ids, valid, projected=False)
        wide = min(k * self.oversample, self.num_rows)
        _, cand = self._merged_topk(F.normalize(queries.float() @ self.projection, dim=1), wide, query_ids, valid,
                                    projected=True)
        return merge_topk(self.exact_scores(queries, cand), cand, k)

    def _merged_topk(
        self, queries: torch.Tensor, k: int, query_ids: torch.Tensor | None, valid: torch.Tensor | None,
        *, projected: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        num_q = queries.shape[0]
        best = torch.full((num_q, 0), _NEG_INF, device=self.device)
        best_idx = torch.full((num_q, 0), -1, dtype=torch.long, device=self.device)
        arange_q = torch.arange(num_q, device=self.device)
        for first, sims in self.score_blocks(queries, projected=projected):
            cols = torch.arange(first, first + sims.shape[1], device=self.device)
            mask_blocked_rows(sims, first, cols, arange_q, query_ids, valid)
            best, best_idx = merge_topk(torch.cat([best, sims], dim=1),
                                        torch.cat([best_idx, cols.expand(num_q, -1)], dim=1), k)
        best, best_idx = merge_topk(best, best_idx, k)  # pads a rank that owns no rows
        if self.world > 1:
            best, best_idx = merge_topk(all_gather_cat(best, 1, self.world), all_gather_cat(best_idx, 1, self.world), k)
        return best, best_idx

    def exact_scores(self, queries: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        """Full-precision similarity of each query to its candidate rows ``cand`` [Q, c] (-inf where cand < 0)."""
        mask, local = self._owned(cand)  # -1 lies below every shard
        out = torch.full((cand.numel(),), _NEG_INF, device=self.device)
        rows = self.local[local].float()
        if self.normalize_rows:
            rows = F.normalize(rows, dim=1)
        query_of = torch.arange(cand.shape[0], device=self.device).repeat_interleave(cand.shape[1])[mask]
        out[mask] = (rows * queries.float()[query_of]).sum(dim=1)
        return all_reduce_(out, "max", self.world).reshape(cand.shape)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """This rank's rows (and projected rows), with the layout they belong to."""
        return {"local": self.local.clone(), "local_proj": None if self.local_proj is None else self.local_proj.clone(),
                "num_rows": self.num_rows, "world": self.world, "rank": self.rank}

    def load_state_dict(self, state: dict) -> None:
        layout = (state["num_rows"], state["world"], state["rank"])
        if layout != (self.num_rows, self.world, self.rank) or state["local"].shape[1] != self.dim:
            here = (self.num_rows, self.world, self.rank)
            raise ValueError(f"sharded rows mismatch: checkpoint (N, world, rank) = {layout}, dim "
                             f"{state['local'].shape[1]}; this run {here}, dim {self.dim}")
        self.local.copy_(state["local"])
        if self.local_proj is not None:
            if state["local_proj"] is None:
                self.reproject()
            else:
                self.local_proj.copy_(state["local_proj"])


def mask_blocked_rows(
    sims: torch.Tensor, first: int, cols: torch.Tensor, arange_q: torch.Tensor,
    query_ids: torch.Tensor | None, valid: torch.Tensor | None,
) -> None:
    """-inf (in place) where a block's column is not a valid row or is the query's own row."""
    if valid is not None:
        sims.masked_fill_(~valid[cols].unsqueeze(0), _NEG_INF)
    if query_ids is not None:
        inside = (query_ids >= first) & (query_ids < first + sims.shape[1])
        sims[arange_q[inside], query_ids[inside] - first] = _NEG_INF

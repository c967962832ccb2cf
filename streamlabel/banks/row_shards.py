"""RowShards: an N x D matrix (feature bank, cluster sums) split by rows over the ranks of torch.distributed.

Rank r holds rows [r*s, min((r+1)*s, N)) with s = ceil(N / world); at world 1 (no process group, or
``distributed=False``) it holds every row and no collective runs. Reading rows
(``gather_rows(ids)``, a collective: every rank calls it with the same ids) sums the owners' rows
over the ranks (the others contribute zeros, so the result is exact); writes (``index_add_`` /
``index_copy_`` / ``empty_rows_``) touch only the owner's rows. The interface is the one
``ReplicatedRows`` (banks/replicated_rows.py) offers for a matrix held whole, so callers never
branch on the storage. ``search`` is the k-NN of query rows against every shard: local top-k per
block of rows, then a global merge of the candidates. With a ``projection`` [D, d] each shard also
keeps its rows projected to d dimensions; candidates are then found in d dimensions (``oversample``
x k of them) and re-scored exactly.

``compact=True`` (cluster sums) stores only the rows in use: a slot map gives each written row a slot
(lowest free first, the store grows by doubling), emptying a row frees its slot, and
searches scan the slots in use. Memory and scan cost then follow the number of clusters, not N.
Emptying a row (``empty_rows_``) frees its slot.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from streamlabel.banks.distributed import all_gather_cat, all_reduce_, ordered_sum_to, reduce_to, world_and_rank

if TYPE_CHECKING:
    from streamlabel.banks.knn_graph import KnnGraph

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
        compact: bool = False,
    ) -> None:
        self.world, self.rank = world_and_rank() if distributed else (1, 0)
        self.num_rows, self.dim = int(num_rows), int(dim)
        self.shard_rows = -(-self.num_rows // self.world)
        self.start = min(self.rank * self.shard_rows, self.num_rows)
        self.stop = min(self.start + self.shard_rows, self.num_rows)
        self.compact = bool(compact)
        capacity = min(self.shard_rows, 1024) if self.compact else self.shard_rows
        self.local = torch.zeros(capacity, self.dim, dtype=dtype, device=device)
        self.normalize_rows = bool(normalize_rows)  # similarity reads rows L2-normalised (cluster sums)
        self.projection = None if projection is None else projection.to(self.local.device, torch.float32)
        self.local_proj = (None if projection is None else
                           torch.zeros(capacity, projection.shape[1], dtype=dtype, device=device))
        self.oversample, self.block_rows = int(oversample), int(block_rows)
        # compact only: slot of every owned row (-1: none), global row of every slot (-1: free), slots in use
        self.slot = torch.full((self.shard_rows if self.compact else 0,), -1, dtype=torch.long, device=device)
        self.slot_row = torch.full((capacity if self.compact else 0,), -1, dtype=torch.long, device=device)
        self.used = 0 if self.compact else self.owned_rows
        self.norms = None  # as ReplicatedRows: no row norms kept (rows are normalised on read)

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

    def _slots(self, local: torch.Tensor, *, allocate: bool = False) -> torch.Tensor:
        """Storage rows of the owned rows ``local`` (compact: their slots, -1 where none unless ``allocate``)."""
        if not self.compact:
            return local
        if allocate:
            missing = torch.unique(local[self.slot[local] < 0])
            if missing.numel():
                self._allocate(missing)
        return self.slot[local]

    def _allocate(self, local: torch.Tensor) -> None:
        """Give the owned rows ``local`` (distinct, slot-less) the lowest free slots, growing the store."""
        free = (self.slot_row[: self.used] < 0).nonzero().flatten()[: local.numel()]
        extra = local.numel() - free.numel()
        if self.used + extra > self.local.shape[0]:
            grow = min(max(self.local.shape[0], self.used + extra - self.local.shape[0]),
                       self.shard_rows - self.local.shape[0])
            self.local = torch.cat([self.local, self.local.new_zeros(grow, self.dim)])
            if self.local_proj is not None:
                extra_proj = self.local_proj.new_zeros(grow, self.local_proj.shape[1])
                self.local_proj = torch.cat([self.local_proj, extra_proj])
            self.slot_row = torch.cat([self.slot_row, self.slot_row.new_full((grow,), -1)])
        slots = torch.cat([free, torch.arange(self.used, self.used + extra, device=self.device)])
        self.used += extra
        self.slot[local] = slots
        self.slot_row[slots] = local + self.start

    def _storage_rows(self, first: int, last: int) -> torch.Tensor:
        """Global row held by storage rows first..last-1 (-1: a free slot)."""
        if self.compact:
            return self.slot_row[first:last].clone()
        return torch.arange(self.start + first, self.start + last, device=self.device)

    def gather_rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows ``ids`` (any shape, or a bool mask over the N rows) as float32 on every rank.

        Collective (an all_reduce when there are several ranks or the store is compact): every rank
        must call it, with the same ids.
        """
        if ids.dtype == torch.bool:
            ids = ids.nonzero().flatten()
        if self.world == 1 and not self.compact:
            return self.local[ids.to(self.device)].float()
        mask, local = self._owned(ids)
        slots = self._slots(local)
        where = mask.nonzero().flatten()[slots >= 0]
        out = torch.zeros(mask.numel(), self.dim, dtype=torch.float32, device=self.device)
        out[where] = self.local[slots[slots >= 0]].float()
        all_reduce_(out, world=self.world)
        return out.reshape(*ids.shape, self.dim)

    def all_rows(self) -> torch.Tensor:
        """Every row [N, D] as float32 on every rank. Collective, and N x D in memory on each
        rank."""
        return self.gather_rows(torch.arange(self.num_rows, device=self.device))

    def empty_rows_(self, ids: torch.Tensor) -> None:
        """Zero rows ``ids`` on their owner (compact: frees their slots). Local: no collective."""
        mask, local = self._owned(ids)
        slots = self._slots(local)
        slots = slots[slots >= 0]
        self.local[slots] = 0.0
        if self.local_proj is not None:
            self.local_proj[slots] = 0.0
        if self.compact:
            self.slot_row[slots] = -1
            self.slot[local] = -1

    def release_emptied_(self, ids: torch.Tensor, sizes: torch.Tensor) -> None:
        """Empty the rows among ``ids`` whose size in ``sizes`` [N] is 0 (a compact store frees
        their slots)."""
        self.empty_rows_(ids[sizes[ids] == 0])

    def update_norms(self, ids: torch.Tensor) -> None:
        """Nothing: sharded rows keep no norms (similarity normalises the rows it reads)."""

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
        slots = self._slots(local, allocate=True)
        mine = values.to(self.device)[mask]
        op = torch.Tensor.index_add_ if add else torch.Tensor.index_copy_
        op(self.local, 0, slots, mine.to(self.dtype))
        if self.local_proj is not None:
            op(self.local_proj, 0, slots, (mine.float() @ self.projection).to(self.dtype))

    def copy_(self, full: torch.Tensor) -> RowShards:
        """Take this rank's rows of a full [N, D] matrix (tensor.copy_ semantics)."""
        if tuple(full.shape) != self.shape:
            raise ValueError(f"matrix must be {self.shape}, got {tuple(full.shape)}")
        if self.compact:
            raise ValueError("copy_ writes every row; use index_copy_ on a compact RowShards")
        self.local[: self.owned_rows] = full[self.start : self.stop].to(self.device, self.dtype)
        self.reproject()
        return self

    def reproject(self) -> None:
        """Recompute the projected rows from the full rows (after writing ``local`` directly)."""
        if self.local_proj is None:
            return
        for b0 in range(0, self.used, self.block_rows):
            self.local_proj[b0 : b0 + self.block_rows] = (
                self.local[b0 : b0 + self.block_rows].float() @ self.projection).to(self.dtype)

    def assign_segment_sums_(self, labels: torch.Tensor, source: RowShards) -> None:
        """Row c := sum of the ``source`` rows labelled c (cluster sums), accumulated in float32 and reduced
        to the rank that owns c; ``labels`` [N] is the same on every rank. Memory: two blocks of rows."""
        src_labels = labels.to(self.device)[source.start : source.stop]
        src_rows = source.local[: source.owned_rows]
        if self.compact:  # every slot free; the present rows are written below
            self.local.zero_()
            self.slot.fill_(-1)
            self.slot_row.fill_(-1)
            self.used = 0
        for owner in range(self.world):
            first = min(owner * self.shard_rows, self.num_rows)
            last = min(first + self.shard_rows, self.num_rows)
            for c0 in range(first, last, self.block_rows):
                c1 = min(c0 + self.block_rows, last)
                part = torch.zeros(c1 - c0, self.dim, dtype=torch.float32, device=self.device)
                count = torch.zeros(c1 - c0, dtype=torch.long, device=self.device)
                # in rank order, like one process adding the rows 0..N-1: bit-identical to the replicated sums
                ordered_sum_to(part, owner, self.world,
                               partial(self._add_segment_rows, src_labels, src_rows, c0, count))
                if not self.compact:
                    if owner == self.rank:
                        self.local[c0 - self.start : c1 - self.start] = part.to(self.dtype)
                    continue
                reduce_to(count, owner, self.world)
                if owner == self.rank:
                    present = count.nonzero().flatten()
                    self._write(0, present + c0, part[present], add=False)
        self.reproject()

    def _add_segment_rows(
        self, labels: torch.Tensor, rows: torch.Tensor, first: int, count: torch.Tensor, part: torch.Tensor
    ) -> None:
        """Add the ``rows`` labelled first..first+len(part)-1 into ``part`` (in row order, a block at a time)
        and count them into ``count``."""
        last = first + part.shape[0]
        for s0 in range(0, labels.numel(), self.block_rows):
            lab = labels[s0 : s0 + self.block_rows]
            sel = (lab >= first) & (lab < last)
            part.index_add_(0, lab[sel] - first, rows[s0 : s0 + self.block_rows][sel].float())
            count += torch.bincount(lab[sel] - first, minlength=part.shape[0])

    # ------------------------------------------------------------------ similarity
    def query_rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows ``ids`` as read for similarity (L2-normalised when ``normalize_rows``), float32."""
        rows = self.gather_rows(ids)
        return F.normalize(rows, dim=-1) if self.normalize_rows else rows

    def centres(self) -> RowShards:
        """The rows as read for similarity: the store itself (``normalize_rows`` applies on
        read)."""
        return self

    def rebuild_graph(self, graph: KnnGraph, alive: torch.Tensor) -> None:
        """Exact (or projected + re-scored) lists of ``graph`` for every alive row. Collective."""
        # sharded_graph imports this module
        from streamlabel.banks.sharded_graph import rebuild_sharded

        rebuild_sharded(graph, self, alive)

    def refresh_graph(self, graph: KnnGraph, moved: torch.Tensor, alive: torch.Tensor) -> None:
        """Bring ``graph`` up to date after rows ``moved`` changed (banks/sharded_graph.py).
        Collective."""
        from streamlabel.banks.sharded_graph import refresh_sharded

        refresh_sharded(graph, moved, self, alive)

    def nearest_segments(self, labels: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
        """For every alive id of ``labels`` [N], the id whose normalised row sum is nearest,
        [C, 1]: the sums are sharded like these rows and searched a chunk of ids at a time.
        Collective."""
        ids = alive.nonzero().flatten()
        sums = RowShards(self.num_rows, self.dim, device=self.device, normalize_rows=True,
                         distributed=self.world > 1)
        sums.assign_segment_sums_(labels, self)
        return torch.cat([sums.search(sums.query_rows(part), 1, query_ids=part, valid=alive)[1]
                          for part in ids.split(1024)])

    def score_blocks(
        self, queries: torch.Tensor, *, projected: bool = False
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(global rows [b] (-1: free slot), [Q, b] similarities) for every block of this rank's stored rows."""
        store = self.local_proj if projected else self.local
        normalize = projected or self.normalize_rows
        q = queries.float()
        for b0 in range(0, self.used, self.block_rows):
            b1 = min(b0 + self.block_rows, self.used)
            block = store[b0:b1].float()
            if normalize:
                block = F.normalize(block, dim=1)
            yield self._storage_rows(b0, b1), q @ block.t()

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
        for cols, sims in self.score_blocks(queries, projected=projected):
            mask_blocked_rows(sims, cols, query_ids, valid)
            best, best_idx = merge_topk(torch.cat([best, sims], dim=1),
                                        torch.cat([best_idx, cols.expand(num_q, -1)], dim=1), k)
        best, best_idx = merge_topk(best, best_idx, k)  # pads a rank that owns no rows
        if self.world > 1:
            best, best_idx = merge_topk(all_gather_cat(best, 1, self.world), all_gather_cat(best_idx, 1, self.world), k)
        return best, best_idx

    def exact_scores(self, queries: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        """Full-precision similarity of each query to its candidate rows ``cand`` [Q, c] (-inf where cand < 0)."""
        mask, local = self._owned(cand)  # -1 lies below every shard
        slots = self._slots(local)
        mask[mask.clone()] = slots >= 0
        out = torch.full((cand.numel(),), _NEG_INF, device=self.device)
        where, slots = mask.nonzero().flatten(), slots[slots >= 0]
        query_of = torch.arange(cand.shape[0], device=self.device).repeat_interleave(cand.shape[1])[where]
        queries = queries.float()
        step = max(1, (1 << 24) // self.dim)  # pairs per chunk: a few 64 MiB temporaries, whatever Q x c is
        for p0 in range(0, where.numel(), step):
            rows = self.local[slots[p0 : p0 + step]].float()
            if self.normalize_rows:
                rows = F.normalize(rows, dim=1)
            out[where[p0 : p0 + step]] = (rows * queries[query_of[p0 : p0 + step]]).sum(dim=1)
        return all_reduce_(out, "max", self.world).reshape(cand.shape)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """This rank's rows (and projected rows), with the layout they belong to."""
        return {"local": self.local.clone(), "local_proj": None if self.local_proj is None else self.local_proj.clone(),
                "num_rows": self.num_rows, "world": self.world, "rank": self.rank,
                "slot": self.slot.clone(), "slot_row": self.slot_row.clone(), "used": self.used}

    def load_state_dict(self, state: dict) -> None:
        layout = (state["num_rows"], state["world"], state["rank"])
        if layout != (self.num_rows, self.world, self.rank) or state["local"].shape[1] != self.dim:
            here = (self.num_rows, self.world, self.rank)
            raise ValueError(f"sharded rows mismatch: checkpoint (N, world, rank) = {layout}, dim "
                             f"{state['local'].shape[1]}; this run {here}, dim {self.dim}")
        self.local = state["local"].to(self.device, self.dtype).clone()
        self.slot, self.slot_row = state["slot"].to(self.device).clone(), state["slot_row"].to(self.device).clone()
        self.used = int(state["used"])
        if self.local_proj is not None:
            if state["local_proj"] is None:
                self.reproject()
            else:
                self.local_proj = state["local_proj"].to(self.device, self.dtype).clone()


def mask_blocked_rows(
    sims: torch.Tensor, cols: torch.Tensor, query_ids: torch.Tensor | None, valid: torch.Tensor | None
) -> None:
    """-inf (in place) where a block's column is a free slot, not a valid row, or the query's own row."""
    bad = cols < 0
    if valid is not None:
        bad |= ~valid[cols.clamp_min(0)]
    sims.masked_fill_(bad.unsqueeze(0), _NEG_INF)
    if query_ids is not None:
        sims.masked_fill_(cols.unsqueeze(0) == query_ids.unsqueeze(1), _NEG_INF)

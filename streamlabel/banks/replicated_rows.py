"""ReplicatedRows: an N x D matrix held whole on this process, behind the same interface as
RowShards.

The bank rows (feature bank, cluster sums of every level) are stored either replicated (this class,
a plain [N, D] tensor; no collectives) or split by rows over the ranks (``RowShards``). The choice
is made once, where the storage is built (``HCDPolicy._build_banks``); the label bank, the hcd
rules, the k-NN graphs and the losses call the interface below and never branch on it:

- ``gather_rows(ids)``: rows ``ids`` (RowShards: float32; here: as stored, so the replicated hot
  path makes no float copy; callers that need float32 add ``.float()``, a no-op on float32 rows).
  On RowShards a collective: every rank calls it with the same ids (there is deliberately no
  ``__getitem__``, so a collective is never hidden behind ``m[ids]``).
- ``all_rows()``: every row [N, D] (here the stored tensor itself; RowShards gathers it: a
  collective).
- ``index_add_`` / ``index_copy_`` (dim 0): write rows, values cast to the storage dtype.
- ``empty_rows_(ids)``: zero rows; ``release_emptied_(ids, sizes)``: rows whose cluster emptied (a
  compact RowShards frees their slots; here they keep their values until the id is reused, as
  always).
- ``assign_segment_sums_(labels, source)``: row c := sum of the ``source`` rows labelled c.
- ``update_norms(ids)``: keep the row norms of un-normalised rows (cluster sums) current; RowShards
  normalises on read and keeps none.
- ``rebuild_graph`` / ``refresh_graph``: a KnnGraph over the rows (RowShards: the distributed
  search of banks/sharded_graph.py); ``nearest_segments``: the bootstrap's nearest cluster of every
  cluster.
- ``state_dict`` / ``load_state_dict``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from streamlabel.banks.knn import topk_inner_product

if TYPE_CHECKING:
    from streamlabel.banks.knn_graph import KnnGraph
    from streamlabel.banks.row_shards import RowShards


class ReplicatedRows:
    """Every row of an [N, D] matrix (``local``, a tensor or a view: writes go to it in place).

    ``normalize_rows``: the rows are sums read L2-normalised for similarity (cluster centres);
    ``norms`` [N] (optional, float32) are their row norms, kept by ``update_norms`` so the graphs
    score centres without normalising all N rows.
    """

    world, rank, start = 1, 0, 0

    def __init__(
        self,
        data: torch.Tensor,
        *,
        normalize_rows: bool = False,
        norms: torch.Tensor | None = None,
    ):
        self.local = data
        self.normalize_rows = bool(normalize_rows)
        self.norms = norms

    # ------------------------------------------------------------------ tensor-like access
    @property
    def device(self) -> torch.device:
        return self.local.device

    @property
    def dtype(self) -> torch.dtype:
        return self.local.dtype

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.local.shape)

    @property
    def num_rows(self) -> int:
        return self.local.shape[0]

    @property
    def stop(self) -> int:
        return self.local.shape[0]

    def gather_rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows ``ids`` (any shape, or a bool mask over the N rows), in the stored dtype (no
        collective)."""
        return self.local[ids]

    def all_rows(self) -> torch.Tensor:
        """Every row, as stored (the tensor itself: no copy)."""
        return self.local

    # ------------------------------------------------------------------ writes
    def index_add_(self, dim: int, ids: torch.Tensor, values: torch.Tensor) -> ReplicatedRows:
        """Add ``values`` [R, D] to rows ``ids`` (tensor.index_add_ semantics, cast to the storage
        dtype)."""
        self.local.index_add_(dim, ids, values.to(self.local.dtype))
        return self

    def index_copy_(self, dim: int, ids: torch.Tensor, values: torch.Tensor) -> ReplicatedRows:
        """Overwrite rows ``ids`` with ``values`` [R, D] (cast to the storage dtype)."""
        self.local.index_copy_(dim, ids, values.to(self.local.dtype))
        return self

    def copy_(self, full: torch.Tensor) -> ReplicatedRows:
        self.local.copy_(full)
        return self

    def empty_rows_(self, ids: torch.Tensor) -> None:
        """Zero rows ``ids``."""
        self.local[ids] = 0.0

    def release_emptied_(self, ids: torch.Tensor, sizes: torch.Tensor) -> None:
        """Nothing: a dense store keeps the (near-zero) rows of emptied clusters; a reused id is
        rebuilt."""

    def assign_segment_sums_(self, labels: torch.Tensor, source: ReplicatedRows) -> None:
        """Row c := sum of the ``source`` rows labelled c ([N] labels), accumulated in float32."""
        feats = source.local.float()
        if self.local.dtype == torch.float32:
            self.local.zero_().index_add_(0, labels, feats)
        else:  # accumulate in float32, store rounded
            self.local.copy_(torch.zeros_like(feats).index_add_(0, labels, feats))
        if self.norms is not None:
            self.norms.copy_(row_norms(self.local))

    def update_norms(self, ids: torch.Tensor) -> None:
        """Recompute the kept row norms of rows ``ids`` (when norms are kept)."""
        if self.norms is not None:
            self.norms[ids] = row_norms(self.local[ids])

    # ------------------------------------------------------------------ k-NN
    def centres(self) -> torch.Tensor:
        """The rows as read for similarity: L2-normalised when ``normalize_rows``, else as
        stored."""
        return F.normalize(self.local, dim=1) if self.normalize_rows else self.local

    def rebuild_graph(self, graph: KnnGraph, alive: torch.Tensor) -> None:
        """Exact lists of ``graph`` for every alive row."""
        graph.rebuild(self.centres(), alive)

    def refresh_graph(self, graph: KnnGraph, moved: torch.Tensor, alive: torch.Tensor) -> None:
        """Bring ``graph`` up to date after rows ``moved`` changed (scores divided by the kept
        norms)."""
        if self.normalize_rows and self.norms is None:
            graph.refresh(moved, self.centres(), alive)
            return
        graph.refresh(moved, self.local, alive, norms=self.norms)

    def nearest_segments(self, labels: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
        """For every alive id of ``labels`` [N], the id whose normalised row sum is nearest,
        [C, 1]."""
        ids = alive.nonzero().flatten()
        centres = torch.zeros(self.num_rows, self.local.shape[1], device=self.device)
        centres.index_add_(0, labels, self.local.float())
        centres = F.normalize(centres[ids], dim=1)  # the alive clusters only
        _, nearest = topk_inner_product(
            centres, centres, 1, query_ids=torch.arange(ids.numel(), device=self.device)
        )
        return torch.where(nearest >= 0, ids[nearest.clamp_min(0)], nearest)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> torch.Tensor:
        return self.local.clone()

    def load_state_dict(self, state: torch.Tensor) -> None:
        self.local.copy_(state.to(self.device, self.dtype))
        if self.norms is not None:
            self.norms.copy_(row_norms(self.local))


def as_row_storage(
    matrix: torch.Tensor | ReplicatedRows | RowShards,
) -> ReplicatedRows | RowShards:
    """A plain [N, D] tensor as ReplicatedRows (a wrapper, no copy); a row storage as it is."""
    return ReplicatedRows(matrix) if isinstance(matrix, torch.Tensor) else matrix


def row_norms(rows: torch.Tensor) -> torch.Tensor:
    """L2 norm of every row, in float32 (each row reduced on its own, so a subset gives the same
    values)."""
    return torch.linalg.vector_norm(rows.float(), dim=1)

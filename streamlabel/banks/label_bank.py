"""HierarchicalLabelBank: H levels of cluster ids with per-level sizes and feature sums.

Level 0 is the finest. The cluster preserve property (same cluster at level h => same cluster at
h+1) is an invariant: ``check_invariant`` verifies it. Cluster ids at a level lie in [0, N): an id is
freed when its cluster empties and reused for the next new cluster, so ids stay bounded without
moving any per-cluster storage; ``dense_labels`` gives compact 0..C-1 ids for output.

The sums are one [H, N, D] tensor (``sums_dtype``, float32 by default), or with ``make_rows`` one
RowShards per level (sharded over the ranks by cluster id; labels and sizes stay replicated).
Either way ``rows[level]`` is the level's row storage (a ReplicatedRows view of the tensor, or the
RowShards), and every read, write, graph update and recompute goes through its interface
(banks/replicated_rows.py), so the bank does not branch on the storage; only the checkpoint format
differs (one tensor, or each rank's shards). Next to replicated sums the bank keeps their row norms
[H, N], updated for the ids each change touches, so the k-NN graphs score cluster centres without
normalising all N rows every step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from streamlabel.banks.replicated_rows import ReplicatedRows, as_row_storage, row_norms
from streamlabel.banks.row_shards import RowShards

if TYPE_CHECKING:
    from streamlabel.banks.knn_graph import KnnGraph


class InvariantError(AssertionError):
    """The label bank broke one of its invariants (a bug, never a user error)."""


class HierarchicalLabelBank:
    """Labels [H, N], and for every level: cluster sizes [N], feature sums [N, D], alive mask [N]."""

    def __init__(
        self, num_samples: int, feat_dim: int, *, num_levels: int = 3, device: torch.device | str | None = None,
        sums_dtype: torch.dtype = torch.float32, make_rows: Callable[[], RowShards] | None = None,
    ) -> None:
        if num_levels < 1:
            raise ValueError(f"num_levels must be >= 1, got {num_levels}")
        n, h = int(num_samples), int(num_levels)
        self.labels = torch.zeros(h, n, dtype=torch.long, device=device)
        self.sizes = torch.zeros(h, n, dtype=torch.long, device=device)
        self.sharded = make_rows is not None
        self.sums: torch.Tensor | list[RowShards]
        self.rows: list[ReplicatedRows | RowShards]
        if make_rows is not None:
            self.sums = self.rows = [make_rows() for _ in range(h)]
            self.norms = None
        else:
            self.sums = torch.zeros(h, n, feat_dim, dtype=sums_dtype, device=device)
            self.norms = torch.zeros(h, n, dtype=torch.float32, device=device)
            self.rows = [
                ReplicatedRows(self.sums[level], normalize_rows=True, norms=self.norms[level])
                for level in range(h)
            ]
        self.sums_dtype = self.rows[0].dtype

    @property
    def num_levels(self) -> int:
        return self.labels.shape[0]

    @property
    def num_samples(self) -> int:
        return self.labels.shape[1]

    @property
    def alive(self) -> torch.Tensor:
        """[H, N] True where a cluster id is in use."""
        return self.sizes > 0

    def num_clusters(self, level: int) -> int:
        return int((self.sizes[level] > 0).sum())

    # ----------------------------------------------------------------- construction
    def reset_singletons(self, features: torch.Tensor) -> None:
        """Every sample its own cluster at every level."""
        ids = torch.arange(self.num_samples, device=self.labels.device)
        self.labels[:] = ids
        self.recompute(features)

    def assign(self, labels: torch.Tensor, features: torch.Tensor) -> None:
        """Take given labels [H, N] (must satisfy the invariant, ids in [0, N)) and recompute statistics."""
        if tuple(labels.shape) != tuple(self.labels.shape):
            raise ValueError(f"labels must be {tuple(self.labels.shape)}, got {tuple(labels.shape)}")
        self.labels.copy_(labels)
        self.recompute(features)
        self.check_invariant()

    def recompute(
        self,
        features: torch.Tensor | ReplicatedRows | RowShards,
        levels: range | list[int] | None = None,
    ) -> None:
        """Exact sizes and sums of ``levels`` (default all) from the labels and the feature rows (a
        tensor, or the feature bank's ``storage``, laid out like the sums); clears any drift of the
        incremental updates."""
        features = as_row_storage(features)
        for level in range(self.num_levels) if levels is None else levels:
            lab = self.labels[level]
            self.sizes[level] = torch.bincount(lab, minlength=self.num_samples)
            self.rows[level].assign_segment_sums_(lab, features)

    # ----------------------------------------------------------------- queries
    def centres(self, level: int) -> torch.Tensor | RowShards:
        """L2-normalised cluster centres at ``level`` ([N, D]; rows of free ids are zero). Sharded: the sums
        themselves, which read normalised for similarity (``RowShards.normalize_rows``)."""
        return self.rows[level].centres()

    def rebuild_graph(self, level: int, graph: KnnGraph) -> None:
        """Exact k-NN lists of the alive cluster centres of ``level`` (collective when sharded)."""
        self.rows[level].rebuild_graph(graph, self.alive[level])

    def refresh_graph(self, level: int, graph: KnnGraph, changed: torch.Tensor) -> None:
        """Update the k-NN lists of ``level``'s centres after the clusters ``changed`` moved
        (replicated: scored against the kept row norms, no pass normalising every row; collective
        when sharded)."""
        self.rows[level].refresh_graph(graph, changed, self.alive[level])

    def parent(self, level: int) -> torch.Tensor:
        """Cluster id at level+1 of every cluster id at ``level`` (-1 for free ids and for the top level)."""
        out = torch.full((self.num_samples,), -1, dtype=torch.long, device=self.labels.device)
        if level + 1 < self.num_levels:
            out[self.labels[level]] = self.labels[level + 1]
        return out

    def dense_labels(self, level: int = -1) -> torch.Tensor:
        """Labels of one level renumbered 0..C-1 in order of first id (deterministic)."""
        lab = self.labels[level]
        present = torch.zeros(self.num_samples, dtype=torch.long, device=lab.device)
        present[lab] = 1
        new_id = torch.cumsum(present, 0) - 1
        return new_id[lab]

    def check_invariant(self) -> None:
        """Raise InvariantError unless ids are in range, statistics match labels and clusters nest."""
        n = self.num_samples
        if int(self.labels.min()) < 0 or int(self.labels.max()) >= n:
            raise InvariantError("cluster ids out of [0, N)")
        for level in range(self.num_levels):
            counts = torch.bincount(self.labels[level], minlength=n)
            if not torch.equal(counts, self.sizes[level]):
                raise InvariantError(f"sizes at level {level} do not match the labels")
        for level in range(self.num_levels - 1):
            fine, coarse = self.labels[level], self.labels[level + 1]
            parent = torch.full((n,), -1, dtype=torch.long, device=fine.device)
            parent[fine] = coarse
            if not torch.equal(parent[fine], coarse):
                raise InvariantError(f"cluster preserve property broken between levels {level} and {level + 1}")

    # ----------------------------------------------------------------- updates
    def allocate(self, level: int, count: int) -> torch.Tensor:
        """``count`` free cluster ids at ``level`` (lowest first); the caller must fill them."""
        free = (self.sizes[level] == 0).nonzero().flatten()
        if free.numel() < count:
            raise InvariantError(f"level {level}: asked for {count} new ids, {free.numel()} free")
        return free[:count]

    def move_samples(
        self, rows: torch.Tensor, new_labels: torch.Tensor, old_feats: torch.Tensor, new_feats: torch.Tensor
    ) -> None:
        """Give samples ``rows`` the label chains ``new_labels`` [H, R] and features old -> new."""
        old_labels = self.labels[:, rows]
        ones = torch.ones(rows.numel(), dtype=torch.long, device=rows.device)
        for level in range(self.num_levels):
            self.sizes[level].index_add_(0, old_labels[level], -ones)
            self.sizes[level].index_add_(0, new_labels[level], ones)
            sums = self.rows[level]
            sums.index_add_(0, old_labels[level], -old_feats.to(self.sums_dtype))
            sums.index_add_(0, new_labels[level], new_feats.to(self.sums_dtype))
            # compact sums: free their slots
            sums.release_emptied_(old_labels[level], self.sizes[level])
            sums.update_norms(torch.cat([old_labels[level], new_labels[level]]))
        self.labels[:, rows] = new_labels

    def relabel_level(self, level: int, mapping: torch.Tensor, touched: torch.Tensor, unit_sums: torch.Tensor,
                      unit_sizes: torch.Tensor, unit_labels: torch.Tensor) -> None:
        """Move level-``level`` labels through ``mapping`` (per sample) and rebuild the touched clusters' stats.

        ``touched`` are all ids whose membership changed (old and new); their sums and sizes are rebuilt
        from the units (``unit_labels`` -> new id, with ``unit_sums`` / ``unit_sizes``).
        """
        self.labels[level] = mapping
        rows = self.rows[level]
        rows.empty_rows_(touched)
        self.sizes[level, touched] = 0
        rows.index_add_(0, unit_labels, unit_sums.to(self.sums_dtype))
        self.sizes[level].index_add_(0, unit_labels, unit_sizes)
        rows.update_norms(torch.cat([touched, unit_labels]))

    def merge_clusters(self, level: int, moved: torch.Tensor, root: torch.Tensor) -> None:
        """Clusters ``moved`` at ``level`` join ``root[moved]`` (an id map [N]): statistics move, labels follow."""
        rows = self.rows[level]
        rows.index_add_(0, root[moved], rows.gather_rows(moved))  # collective when sharded
        self.sizes[level].index_add_(0, root[moved], self.sizes[level][moved])
        rows.empty_rows_(moved)
        self.sizes[level][moved] = 0
        self.labels[level] = root[self.labels[level]]
        rows.update_norms(torch.cat([root[moved], moved]))

    def state_dict(self) -> dict:
        """Labels and the incrementally kept statistics (saved, not recomputed, so resume is
        exact). The format is the storage's: one [H, N, D] tensor, or a list of each level's shard
        states."""
        sums = [rows.state_dict() for rows in self.sums] if self.sharded else self.sums.clone()
        return {"labels": self.labels.clone(), "sizes": self.sizes.clone(), "sums": sums}

    def load_state_dict(self, state: dict) -> None:
        if self.sharded:
            self.labels.copy_(state["labels"])
            self.sizes.copy_(state["sizes"])
            for rows, rows_state in zip(self.sums, state["sums"], strict=True):
                rows.load_state_dict(rows_state)
            self.check_invariant()
            return
        if tuple(state["labels"].shape) != tuple(self.labels.shape) or state["sums"].shape[-1] != self.sums.shape[-1]:
            raise ValueError(
                f"label bank mismatch: checkpoint labels {tuple(state['labels'].shape)} / dim "
                f"{state['sums'].shape[-1]}, this run {tuple(self.labels.shape)} / dim {self.sums.shape[-1]}"
            )
        self.labels.copy_(state["labels"])
        self.sizes.copy_(state["sizes"])
        self.sums.copy_(state["sums"])
        for level in range(self.num_levels):  # row by row, so equal to the norms kept before the save
            self.norms[level] = row_norms(self.sums[level])
        self.check_invariant()

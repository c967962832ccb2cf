"""HCD: online pseudo labels by hierarchical cluster dynamics (seed 003, Zheng et al. ICCV 2021).

Every mini-batch: momentum-update the batch rows of the feature bank, give each batch sample the label
chain of its nearest bank neighbour, then for every level bottom-up split the touched clusters (units:
the clusters one level below, anchors by density peak, Eq. 2-4) and merge them with their mutual-kNN
neighbours inside the merge border (units: this level's clusters inside one cluster of the level
above, Eq. 2-3, p_uv > sigma). Only the batch rows are queried against the bank; the neighbour lists
of samples and of every level's cluster centres are kept incrementally (banks/knn_graph.py).

``initialize`` is the bootstrap: a first hierarchy by mutual nearest neighbours (level 0: samples that
are mutual ``init_k``-NN; each level above: clusters whose centres are mutual 1-NN), then the same
dynamics over all units (every cluster "touched") until the labels stop changing or ``init_rounds``.
Merge scores p_uv are rows of P* normalised to sum to one (a probability, as in the label propagation
of Iscen et al. that HCD cites); the LP runs on the unit's whole mutual-kNN ego-net and a merge is
applied only inside the border (the same cluster one level up), so the cluster preserve property holds.
With ``refresh_every = n > 0`` the steps only update features and the full dynamics run every n epochs.

Scale (docs/scaling.md): ``bank: sharded`` splits the feature bank and every level's cluster sums by rows
over the ranks of torch.distributed (RowShards; labels, sizes and k-NN lists stay replicated, so the
dynamics see the same inputs on every rank); ``sums_dtype`` stores the sums in 16 bits;
``knn_projection: d`` (sharded only) finds k-NN candidates in d dimensions and re-scores them exactly.
"""

from __future__ import annotations

import time

import torch

from streamlabel.banks.feature_bank import FeatureBank
from streamlabel.banks.hybrid_memory import memory_entries_from_sums
from streamlabel.banks.knn import topk_inner_product
from streamlabel.banks.knn_graph import KnnGraph
from streamlabel.banks.label_bank import HierarchicalLabelBank
from streamlabel.banks.row_shards import RowShards, projection_matrix
from streamlabel.banks.sharded_feature_bank import ShardedFeatureBank
from streamlabel.methods.anchors import ANCHOR_METHODS
from streamlabel.methods.base import BankUpdatePolicy, register_policy
from streamlabel.methods.cluster_dynamics import (
    MERGE_NORMS,
    connected_components,
    merge_scores,
    padded_groups,
    split_blocks,
)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@register_policy("hcd")
class HCDPolicy(BankUpdatePolicy):
    """Hierarchical cluster dynamics over a feature bank and an H-level label bank."""

    def __init__(
        self,
        num_samples: int,
        feat_dim: int,
        *,
        device: torch.device | str | None = None,
        refresh_every: int = 0,
        num_levels: int = 3,
        k: int = 30,
        alpha_split: float = 0.99,
        alpha_merge: float = 0.99,
        sigma: float = 0.25,
        max_anchors: int = 8,
        anchor_method: str = "density_peak",
        merge_norm: str = "row",
        momentum: float = 0.2,
        init_k: int = 2,
        init_rounds: int = 5,
        refresh_rounds: int = 5,
        knn_backend: str = "torch",
        knn_slack: int = 8,
        bank_dtype: str = "float32",
        bank: str = "replicated",
        sums_dtype: str = "float32",
        knn_projection: int = 0,
        singletons_as_outliers: bool = True,
        assign: str = "mutual",
        seed: int = 0,
    ) -> None:
        super().__init__(num_samples, feat_dim, device=device, refresh_every=refresh_every)
        _check_range("k", k, 1, None)
        _check_range("num_levels", num_levels, 1, None)
        _check_range("max_anchors", max_anchors, 1, None)
        _check_range("init_k", init_k, 1, k)
        _check_range("init_rounds", init_rounds, 0, None)
        _check_range("refresh_rounds", refresh_rounds, 1, None)
        for name, value in (("alpha_split", alpha_split), ("alpha_merge", alpha_merge)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if not 0.0 < sigma < 1.0:
            raise ValueError(f"sigma must be in (0, 1), got {sigma}")
        if anchor_method not in ANCHOR_METHODS:
            raise ValueError(f"anchor_method must be one of {ANCHOR_METHODS}, got {anchor_method!r}")
        if merge_norm not in MERGE_NORMS:
            raise ValueError(f"merge_norm must be one of {MERGE_NORMS}, got {merge_norm!r}")
        if assign not in ("nearest", "mutual"):
            raise ValueError(f"assign must be 'nearest' or 'mutual', got {assign!r}")
        if bank_dtype not in _DTYPES:
            raise ValueError(f"bank_dtype must be one of {sorted(_DTYPES)}, got {bank_dtype!r}")
        _check_scale_options(bank, sums_dtype, knn_projection, knn_backend, feat_dim)
        self.config = {
            "num_samples": num_samples, "feat_dim": feat_dim, "num_levels": num_levels, "k": k,
            "alpha_split": alpha_split, "alpha_merge": alpha_merge, "sigma": sigma,
            "max_anchors": max_anchors, "anchor_method": anchor_method, "merge_norm": merge_norm,
            "momentum": momentum, "refresh_every": refresh_every, "bank_dtype": bank_dtype,
            "knn_slack": knn_slack, "assign": assign, "bank": bank, "sums_dtype": sums_dtype,
            "knn_projection": knn_projection,
        }
        self.k = int(k)
        self.num_levels = int(num_levels)
        self.alpha_split, self.alpha_merge, self.sigma = float(alpha_split), float(alpha_merge), float(sigma)
        self.max_anchors, self.anchor_method, self.merge_norm = int(max_anchors), anchor_method, merge_norm
        self.init_k, self.init_rounds, self.refresh_rounds = int(init_k), int(init_rounds), int(refresh_rounds)
        self.singletons_as_outliers = bool(singletons_as_outliers)
        self.assign = assign
        self.sharded = bank == "sharded"
        if self.sharded:  # rows split over the ranks (docs/scaling.md); labels, sizes and graphs replicated
            proj = projection_matrix(feat_dim, knn_projection, seed) if knn_projection else None
            self.bank = ShardedFeatureBank(num_samples, feat_dim, momentum=momentum, device=self.device,
                                           dtype=_DTYPES[bank_dtype], projection=proj)
            self.label_bank = HierarchicalLabelBank(
                num_samples, feat_dim, num_levels=num_levels, device=self.device,
                make_rows=lambda: RowShards(num_samples, feat_dim, dtype=_DTYPES[sums_dtype], device=self.device,
                                            normalize_rows=True, projection=proj, compact=True))
        else:
            self.bank = FeatureBank(num_samples, feat_dim, momentum=momentum, device=self.device,
                                    dtype=_DTYPES[bank_dtype])
            self.label_bank = HierarchicalLabelBank(num_samples, feat_dim, num_levels=num_levels, device=self.device,
                                                    sums_dtype=_DTYPES[sums_dtype])
        # graphs[0]: samples; graphs[l + 1]: cluster centres of level l
        self.graphs = [
            KnnGraph(num_samples, k, slack=knn_slack, device=self.device, backend=knn_backend)
            for _ in range(num_levels + 1)
        ]
        self.generator = torch.Generator().manual_seed(int(seed))
        self.initialized = False
        self.stats: dict[str, float] = {}

    # ------------------------------------------------------------------ contract
    def initialize(self, features: torch.Tensor, cameras: torch.Tensor | None = None) -> None:
        """Bank from a full pass, the mutual-NN bootstrap hierarchy, then the dynamics over all units."""
        start = time.perf_counter()
        self.bank.initialize(features)
        self.graphs[0].rebuild(self.bank.features, self._all_alive())
        self.label_bank.assign(self._bootstrap_labels(), self.bank.features)
        for level in range(self.num_levels):
            self.graphs[level + 1].rebuild(self.label_bank.centres(level), self.label_bank.alive[level])
        rounds = self._run_full(self.init_rounds) if self.init_rounds > 0 else 0
        self.initialized = True
        self.stats = {"rounds": rounds, "seconds": time.perf_counter() - start}

    def refresh(self) -> None:
        """Offline refresh: exact statistics, exact graphs, then the full dynamics from the current labels."""
        self._require_init()
        self.label_bank.recompute(self.bank.features)
        self._rebuild_graphs()
        self._run_full(self.refresh_rounds)

    def epoch_end(self, epoch: int) -> bool:
        self._require_init()
        ran = super().epoch_end(epoch)
        if not ran:
            self.label_bank.recompute(self.bank.features)  # clear float drift of the incremental sums
        return ran

    def step(self, indices: torch.Tensor, features: torch.Tensor, cameras: torch.Tensor | None = None) -> None:
        """Momentum update of the batch rows, nearest-neighbour label, then split/merge level by level."""
        self._require_init()
        rows, new_feats = self.bank.momentum_rows(indices, features)
        old_feats = self.bank.features[rows].float()
        self.bank.write(rows, new_feats)
        new_feats = self.bank.features[rows].float()  # as stored (fp16/bf16 banks round), so sums match the bank
        lb = self.label_bank
        if self.refresh_every > 0:  # offline mode: labels wait for the refresh
            lb.move_samples(rows, lb.labels[:, rows].clone(), old_feats, new_feats)
            return
        self.graphs[0].refresh(rows, self.bank.features, self._all_alive())
        nearest = self.graphs[0].idx[rows, 0]
        if self.assign == "mutual":  # follow the nearest neighbour only when the pair is mutual k-NN
            back = self.graphs[0].neighbors(nearest.clamp_min(0))
            confident = (back == rows.unsqueeze(1)).any(dim=1)
            nearest = torch.where(confident, nearest, rows)
        nearest = torch.where(nearest >= 0, nearest, rows)
        old_labels = lb.labels[:, rows].clone()
        new_labels = lb.labels[:, nearest].clone()
        lb.move_samples(rows, new_labels, old_feats, new_feats)
        splits = merges = 0
        for level in range(self.num_levels):
            touched = torch.unique(lb.labels[level, rows])
            split_changed = self._split(level, touched)
            changed = torch.cat([old_labels[level], new_labels[level], split_changed])
            self._refresh_graph(level, changed)
            merged = self._merge(level, torch.unique(lb.labels[level, rows]))
            if merged.numel():
                self._refresh_graph(level, merged)
            splits += split_changed.numel()
            merges += merged.numel()
        self.stats = {"split_ids": splits, "merge_ids": merges}

    def labels(self, level: int = -1) -> torch.Tensor:
        """Dense labels of ``level`` (default top); singleton clusters are -1 unless configured otherwise."""
        self._require_init()
        dense = self.label_bank.dense_labels(level)
        if self.singletons_as_outliers:
            size = self.label_bank.sizes[level][self.label_bank.labels[level]]
            dense = torch.where(size > 1, dense, torch.full_like(dense, -1))
            keep = dense >= 0
            if bool(keep.any()):
                _, dense_kept = torch.unique(dense[keep], return_inverse=True)
                dense[keep] = dense_kept
        return dense

    def memory_entries(self) -> tuple[torch.Tensor, torch.Tensor]:
        """As the default (same entries, same order as ``labels()``), from the maintained top-level sums."""
        self._require_init()
        lb = self.label_bank
        keep = lb.sizes[-1] > (1 if self.singletons_as_outliers else 0)
        return memory_entries_from_sums(lb.sums[-1], keep, lb.labels[-1], self.bank.features)

    def state_dict(self) -> dict:
        return {
            "config": dict(self.config),
            "initialized": self.initialized,
            "bank": self.bank.state_dict(),
            "label_bank": self.label_bank.state_dict(),
            "graphs": [graph.state_dict() for graph in self.graphs],
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("config") != self.config:
            diff = {k: (state.get("config", {}).get(k), v) for k, v in self.config.items()
                    if state.get("config", {}).get(k) != v}
            raise ValueError(f"hcd state is from a different configuration (checkpoint, this run): {diff}")
        self.bank.load_state_dict(state["bank"])
        self.label_bank.load_state_dict(state["label_bank"])
        for graph, graph_state in zip(self.graphs, state["graphs"], strict=True):
            graph.load_state_dict(graph_state)
        self.generator.set_state(state["generator"])
        self.initialized = bool(state["initialized"])

    # ------------------------------------------------------------------ dynamics
    def _bootstrap_labels(self) -> torch.Tensor:
        """First hierarchy by mutual nearest neighbours: level 0 links samples that are mutual
        ``init_k``-NN, each level above links clusters whose centres are mutual 1-NN (connected components)."""
        n = self.num_samples
        arange = torch.arange(n, device=self.device)
        neighbors = self.graphs[0].neighbors(arange, self.init_k)
        labels = torch.empty(self.num_levels, n, dtype=torch.long, device=self.device)
        current = _mutual_components(neighbors, arange)
        labels[0] = current
        for level in range(1, self.num_levels):
            alive = torch.bincount(current, minlength=n) > 0
            nearest = self._nearest_centre(current, alive)
            neighbor_of = torch.full((n, 1), -1, dtype=torch.long, device=self.device)
            neighbor_of[alive] = nearest
            root = _mutual_components(neighbor_of, arange, alive)
            current = root[current]
            labels[level] = current
        return labels

    def _nearest_centre(self, labels: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
        """For every alive cluster of ``labels`` [N], the id of the cluster with the nearest centre, [C, 1]."""
        ids = alive.nonzero().flatten()
        if self.sharded:
            sums = RowShards(self.num_samples, self.feat_dim, device=self.device, normalize_rows=True)
            sums.assign_segment_sums_(labels, self.bank.features)
            return torch.cat([sums.search(sums.query_rows(part), 1, query_ids=part, valid=alive)[1]
                              for part in ids.split(1024)])
        centres = torch.zeros(self.num_samples, self.feat_dim, device=self.device)
        centres.index_add_(0, labels, self.bank.features.float())
        centres = torch.nn.functional.normalize(centres[ids], dim=1)  # the alive clusters only
        _, nearest = topk_inner_product(centres, centres, 1, query_ids=torch.arange(ids.numel(), device=self.device))
        return torch.where(nearest >= 0, ids[nearest.clamp_min(0)], nearest)

    def _run_full(self, max_rounds: int) -> int:
        """Split and merge every cluster of every level, bottom-up, until a round changes nothing."""
        lb = self.label_bank
        for round_index in range(1, max_rounds + 1):
            before = lb.labels.clone()
            for level in range(self.num_levels):
                if self._split(level, None).numel():
                    self.graphs[level + 1].rebuild(lb.centres(level), lb.alive[level])
                if self._merge(level, None).numel():
                    self.graphs[level + 1].rebuild(lb.centres(level), lb.alive[level])
            if torch.equal(before, lb.labels):
                return round_index
        return max_rounds

    def _units(self, unit_level: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(sizes, alive) of the units one level below ``unit_level + 1`` (-1 = samples)."""
        if unit_level < 0:
            ones = torch.ones(self.num_samples, dtype=torch.long, device=self.device)
            return ones, ones.bool()
        lb = self.label_bank
        return lb.sizes[unit_level], lb.alive[unit_level]

    def _unit_centres(self, unit_level: int, ids: torch.Tensor) -> torch.Tensor:
        """L2-normalised centres of the units ``ids`` (any shape): only these rows are normalised, not all N."""
        if unit_level < 0:
            return self.bank.features[ids]
        return torch.nn.functional.normalize(self.label_bank.sums[unit_level][ids], dim=-1)

    def _split(self, level: int, clusters: torch.Tensor | None) -> torch.Tensor:
        """Split the given clusters of ``level`` (None = all); returns the ids whose membership changed."""
        lb = self.label_bank
        unit_level = level - 1
        sizes, alive = self._units(unit_level)
        parent = lb.labels[0] if unit_level < 0 else lb.parent(unit_level)
        select = alive & (parent >= 0)
        if clusters is not None:
            chosen = torch.zeros(self.num_samples, dtype=torch.bool, device=self.device)
            chosen[clusters] = True
            select &= chosen[parent.clamp_min(0)]
        # a cluster with a single unit cannot split
        unit_count = torch.bincount(parent[select], minlength=self.num_samples)
        select &= unit_count[parent.clamp_min(0)] > 1
        units = select.nonzero().flatten()
        graph = self.graphs[unit_level + 1]
        changed: list[torch.Tensor] = []
        for ids, cluster_ids in padded_groups(parent[units], units):
            valid = ids >= 0
            safe = ids.clamp_min(0)
            neighbors = graph.neighbors(safe)
            neighbors = torch.where(valid.unsqueeze(-1), neighbors, torch.full_like(neighbors, -1))
            piece = split_blocks(
                ids, self._unit_centres(unit_level, safe).float(), neighbors, sizes[safe] * valid,
                alpha=self.alpha_split, max_anchors=self.max_anchors,
                anchor_method=self.anchor_method, generator=self.generator,
            )
            changed.append(self._apply_split(level, ids, cluster_ids, piece, sizes[safe] * valid))
        return torch.cat(changed) if changed else torch.empty(0, dtype=torch.long, device=self.device)

    def _apply_split(
        self, level: int, ids: torch.Tensor, cluster_ids: torch.Tensor, piece: torch.Tensor, weight: torch.Tensor
    ) -> torch.Tensor:
        """Give each piece of a split cluster an id (the heaviest keeps the old one) and update the bank."""
        num_blocks, n = ids.shape
        num_pieces = self.max_anchors + n
        mass = torch.zeros(num_blocks, num_pieces, dtype=torch.long, device=self.device)
        mass.scatter_add_(1, piece.clamp_min(0), weight)
        members = torch.zeros_like(mass).scatter_add_(1, piece.clamp_min(0), (ids >= 0).long())
        exists = members > 0
        score = torch.where(exists, mass * num_pieces + (num_pieces - torch.arange(num_pieces, device=self.device)),
                            torch.full_like(mass, -1))
        keep = score.argmax(dim=1)
        fresh_mask = exists.clone()
        fresh_mask[torch.arange(num_blocks, device=self.device), keep] = False
        did_split = fresh_mask.any(dim=1)
        if not bool(did_split.any()):
            return torch.empty(0, dtype=torch.long, device=self.device)
        ids, cluster_ids, piece = ids[did_split], cluster_ids[did_split], piece[did_split]
        keep, fresh_mask = keep[did_split], fresh_mask[did_split]
        fresh = self.label_bank.allocate(level, int(fresh_mask.sum()))
        piece_id = torch.full(fresh_mask.shape, -1, dtype=torch.long, device=self.device)
        piece_id[torch.arange(ids.shape[0], device=self.device), keep] = cluster_ids
        piece_id[fresh_mask] = fresh
        unit_new = piece_id.gather(1, piece.clamp_min(0))
        valid = ids >= 0
        self._relabel_units(level, ids[valid], unit_new[valid], torch.cat([cluster_ids, fresh]))
        return torch.cat([cluster_ids, fresh])

    def _relabel_units(self, level: int, units: torch.Tensor, new_ids: torch.Tensor, touched: torch.Tensor) -> None:
        """Samples of ``units`` (clusters of level-1, or samples at level 0) take ``new_ids`` at ``level``."""
        lb = self.label_bank
        unit_map = torch.full((self.num_samples,), -1, dtype=torch.long, device=self.device)
        unit_map[units] = new_ids
        per_sample = unit_map if level == 0 else unit_map[lb.labels[level - 1]]
        mapping = torch.where(per_sample >= 0, per_sample, lb.labels[level])
        if level == 0:
            unit_sums = self.bank.features[units].float()
            unit_sizes = torch.ones_like(units)
        else:
            unit_sums, unit_sizes = lb.sums[level - 1][units], lb.sizes[level - 1][units]
        lb.relabel_level(level, mapping, touched, unit_sums, unit_sizes, new_ids)

    def _merge(self, level: int, units: torch.Tensor | None) -> torch.Tensor:
        """Merge the given clusters of ``level`` (None = all) with their ego-net; returns changed ids."""
        lb = self.label_bank
        alive = lb.alive[level]
        units = alive.nonzero().flatten() if units is None else units[alive[units]]
        if units.numel() == 0:
            return units
        parent = lb.parent(level)
        graph = self.graphs[level + 1]
        sources, targets = [], []
        chunk = max(1, (1 << 22) // ((self.k + 1) ** 2 * 4))
        for start in range(0, units.numel(), chunk):
            u = units[start : start + chunk]
            ego = self._ego_net(u, graph)
            safe = ego.clamp_min(0)
            ego_neighbors = graph.neighbors(safe)
            ego_neighbors = torch.where((ego >= 0).unsqueeze(-1), ego_neighbors, torch.full_like(ego_neighbors, -1))
            score = merge_scores(ego, self._unit_centres(level, safe), ego_neighbors,
                                 alpha=self.alpha_merge, norm=self.merge_norm)
            hit = score > self.sigma
            if level + 1 < self.num_levels:  # merge border: only units of the same cluster one level up
                hit &= parent[safe] == parent[u].unsqueeze(1)
            row, col = hit.nonzero(as_tuple=True)
            sources.append(u[row])
            targets.append(ego[row, col])
        a, b = torch.cat(sources), torch.cat(targets)
        if a.numel() == 0:
            return a
        root = connected_components(a, b, self.num_samples)
        moved = (root != torch.arange(self.num_samples, device=self.device)).nonzero().flatten()
        lb.merge_clusters(level, moved, root)
        return torch.cat([torch.unique(root[moved]), moved])

    @staticmethod
    def _ego_net(units: torch.Tensor, graph: KnnGraph) -> torch.Tensor:
        """[U, 1 + k] ids: each unit, then its mutual k-NN (-1 elsewhere): the graph the merge LP runs on."""
        neighbors = graph.neighbors(units)
        valid = neighbors >= 0
        back = graph.neighbors(neighbors.clamp_min(0))
        mutual = valid & (back == units.view(-1, 1, 1)).any(dim=-1)
        members = torch.where(mutual, neighbors, torch.full_like(neighbors, -1))
        return torch.cat([units.unsqueeze(1), members], dim=1)

    # ------------------------------------------------------------------ helpers
    def _rebuild_graphs(self) -> None:
        lb = self.label_bank
        self.graphs[0].rebuild(self.bank.features, self._all_alive())
        for level in range(self.num_levels):
            self.graphs[level + 1].rebuild(lb.centres(level), lb.alive[level])

    def _refresh_graph(self, level: int, changed: torch.Tensor) -> None:
        """Update the k-NN lists of level ``level``'s cluster centres after the clusters ``changed`` moved."""
        sums, norms = self.label_bank.centre_rows(level)
        self.graphs[level + 1].refresh(changed, sums, self.label_bank.alive[level], norms=norms)

    def _all_alive(self) -> torch.Tensor:
        return torch.ones(self.num_samples, dtype=torch.bool, device=self.device)

    def _require_init(self) -> None:
        if not self.initialized:
            raise RuntimeError("call initialize(features) before using the hcd policy")


def _mutual_components(neighbors: torch.Tensor, nodes: torch.Tensor, alive: torch.Tensor | None = None) -> torch.Tensor:
    """Component root of every node in the graph whose edges join mutual neighbours."""
    safe = neighbors.clamp_min(0)
    back = neighbors[safe]  # [n, k, k]
    mutual = (neighbors >= 0) & (back == nodes.view(-1, 1, 1)).any(dim=-1)
    if alive is not None:
        mutual &= alive.unsqueeze(1)
    src, slot = mutual.nonzero(as_tuple=True)
    return connected_components(src, neighbors[src, slot], nodes.numel())


def _check_scale_options(bank: str, sums_dtype: str, knn_projection: int, knn_backend: str, feat_dim: int) -> None:
    """Refuse bad values of the scale-out keys (docs/scaling.md) with the allowed ones named."""
    if bank not in ("replicated", "sharded"):
        raise ValueError(f"bank must be 'replicated' or 'sharded', got {bank!r}")
    if sums_dtype not in _DTYPES:
        raise ValueError(f"sums_dtype must be one of {sorted(_DTYPES)}, got {sums_dtype!r}")
    if knn_projection and bank != "sharded":
        raise ValueError("knn_projection > 0 needs bank: sharded (any number of processes, 1 included)")
    if knn_projection and not 0 < knn_projection < feat_dim:
        raise ValueError(f"knn_projection must be 0 or in (0, feat_dim={feat_dim}), got {knn_projection}")
    if bank == "sharded" and knn_backend != "torch":
        raise ValueError("bank: sharded searches its shards with torch; knn_backend must be 'torch'")


def _check_range(name: str, value: int, low: int, high: int | None) -> None:
    if value < low or (high is not None and value > high):
        upper = f" and <= {high}" if high is not None else ""
        raise ValueError(f"{name} must be >= {low}{upper}, got {value}")

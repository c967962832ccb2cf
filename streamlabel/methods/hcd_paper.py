"""Paper dynamics of the hcd policy: HCD's split and merge rules as written (Zheng et al., ICCV 2021).

Every mini-batch each batch sample takes the label chain of its nearest bank neighbour (``assign:
nearest``, the paper's text; ``mutual`` only when the pair is mutual k-NN), then for every level bottom-up
the touched clusters are split (units: the clusters one level below, anchors by density peak, Eq. 2-4)
and merged with their mutual-kNN neighbours inside the merge border (units: this level's clusters inside
one cluster of the level above, Eq. 2-3, p_uv > sigma). Merge scores p_uv are rows of P* normalised to
sum to one (``merge_norm: row``). The first labels come from a bootstrap the paper does not describe:
level 0 links samples that are mutual ``link_k``-NN, each level above clusters whose centres are mutual
1-NN, then the dynamics run over every cluster for up to ``init_rounds`` rounds. ``refresh`` (offline
arm) does the same from scratch on the current bank.

Ablations (HCD Tables 3, 5, 6): ``merge_only`` skips the split; ``criterion: average_linkage`` merges
when the average pairwise cosine of two clusters reaches the calibrated floor and splits by the highest
average linkage to an anchor instead of label propagation; ``anchor_method``; ``alpha_split`` /
``alpha_merge``; ``num_levels``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from streamlabel.banks.knn_graph import KnnGraph
from streamlabel.methods.cluster_dynamics import connected_components, merge_scores, padded_groups, split_blocks
from streamlabel.methods.linking import kth_neighbour_floor

if TYPE_CHECKING:
    from streamlabel.methods.hcd import HCDPolicy


class PaperDynamics:
    """Bootstrap, then LP split/merge of the touched clusters every step (all clusters at init)."""

    def __init__(self, policy: HCDPolicy) -> None:
        self.policy = policy
        self.floor = 0.0  # calibrated merge floor of the average-linkage criterion

    def build_graphs(self, slack: int, backend: str) -> list[KnnGraph]:
        """k-NN lists of the samples and of every level's cluster centres, all k + slack wide."""
        p = self.policy
        return [KnnGraph(p.num_samples, p.k, slack=slack, device=p.device, backend=backend)
                for _ in range(p.num_levels + 1)]

    # ------------------------------------------------------------------ entry points
    def initialize(self, cameras: torch.Tensor | None) -> int:
        """Bootstrap hierarchy and full dynamics on the bank as it is; returns the rounds run."""
        p = self.policy
        p.bank.storage.rebuild_graph(p.graphs[0], _everyone(p))
        self._calibrate()
        p.label_bank.assign(self._bootstrap_labels(), p.bank.storage)
        for level in range(p.num_levels):
            p.label_bank.rebuild_graph(level, p.graphs[level + 1])
        return self._run_full(p.init_rounds) if p.init_rounds > 0 else 0

    def rederive(self) -> None:
        """Nothing to redo at an epoch end: the paper's labels change only in steps (and refreshes)."""
        return

    def step(self, rows: torch.Tensor, old_feats: torch.Tensor, new_feats: torch.Tensor) -> None:
        """Nearest-neighbour label for the batch rows, then split/merge level by level (bottom-up)."""
        p = self.policy
        lb = p.label_bank
        p.bank.storage.refresh_graph(p.graphs[0], rows, _everyone(p))
        nearest = p.graphs[0].idx[rows, 0]
        if p.assign == "mutual":  # follow the nearest neighbour only when the pair is mutual k-NN
            back = p.graphs[0].neighbors(nearest.clamp_min(0))
            confident = (back == rows.unsqueeze(1)).any(dim=1)
            nearest = torch.where(confident, nearest, rows)
        nearest = torch.where(nearest >= 0, nearest, rows)
        old_labels = lb.labels[:, rows].clone()
        new_labels = lb.labels[:, nearest].clone()
        lb.move_samples(rows, new_labels, old_feats, new_feats)
        for level in range(p.num_levels):
            touched = torch.unique(lb.labels[level, rows])
            split_changed = self._split(level, touched)
            changed = torch.cat([old_labels[level], new_labels[level], split_changed])
            self._refresh_graph(level, changed)
            merged = self._merge(level, torch.unique(lb.labels[level, rows]))
            if merged.numel():
                self._refresh_graph(level, merged)

    # ------------------------------------------------------------------ bootstrap
    def _bootstrap_labels(self) -> torch.Tensor:
        """First hierarchy by mutual nearest neighbours: level 0 links samples that are mutual
        ``link_k``-NN, each level above links clusters whose centres are mutual 1-NN (connected components)."""
        p = self.policy
        n = p.num_samples
        arange = torch.arange(n, device=p.device)
        neighbors = p.graphs[0].neighbors(arange, p.link_k)
        labels = torch.empty(p.num_levels, n, dtype=torch.long, device=p.device)
        current = _mutual_components(neighbors, arange)
        labels[0] = current
        for level in range(1, p.num_levels):
            alive = torch.bincount(current, minlength=n) > 0
            nearest = self._nearest_centre(current, alive)
            neighbor_of = torch.full((n, 1), -1, dtype=torch.long, device=p.device)
            neighbor_of[alive] = nearest
            root = _mutual_components(neighbor_of, arange, alive)
            current = root[current]
            labels[level] = current
        return labels

    def _nearest_centre(self, labels: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
        """For every alive cluster of ``labels`` [N], the id of the cluster with the nearest centre, [C, 1]."""
        return self.policy.bank.storage.nearest_segments(labels, alive)

    # ------------------------------------------------------------------ dynamics
    def _run_full(self, max_rounds: int) -> int:
        """Split and merge every cluster of every level, bottom-up, until a round changes nothing."""
        p = self.policy
        lb = p.label_bank
        for round_index in range(1, max_rounds + 1):
            before = lb.labels.clone()
            for level in range(p.num_levels):
                if self._split(level, None).numel():
                    lb.rebuild_graph(level, p.graphs[level + 1])
                if self._merge(level, None).numel():
                    lb.rebuild_graph(level, p.graphs[level + 1])
            if torch.equal(before, lb.labels):
                return round_index
        return max_rounds

    def _units(self, unit_level: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(sizes, alive) of the units one level below ``unit_level + 1`` (-1 = samples)."""
        p = self.policy
        if unit_level < 0:
            ones = torch.ones(p.num_samples, dtype=torch.long, device=p.device)
            return ones, ones.bool()
        return p.label_bank.sizes[unit_level], p.label_bank.alive[unit_level]

    def _unit_centres(self, unit_level: int, ids: torch.Tensor) -> torch.Tensor:
        """L2-normalised centres of the units ``ids`` (any shape): only these rows are normalised, not all N."""
        p = self.policy
        if unit_level < 0:
            return p.bank.storage.gather_rows(ids)
        return torch.nn.functional.normalize(
            p.label_bank.rows[unit_level].gather_rows(ids), dim=-1
        )

    def _unit_means(self, unit_level: int, ids: torch.Tensor) -> torch.Tensor:
        """Mean feature of the units ``ids``: their inner products are average pairwise cosines."""
        p = self.policy
        if unit_level < 0:
            return p.bank.storage.gather_rows(ids).float()
        sizes = p.label_bank.sizes[unit_level][ids].clamp_min(1).float().unsqueeze(-1)
        return p.label_bank.rows[unit_level].gather_rows(ids).float() / sizes

    def _split(self, level: int, clusters: torch.Tensor | None) -> torch.Tensor:
        """Split the given clusters of ``level`` (None = all); returns the ids whose membership changed."""
        p = self.policy
        lb = p.label_bank
        if p.merge_only:
            return torch.empty(0, dtype=torch.long, device=p.device)
        unit_level = level - 1
        sizes, alive = self._units(unit_level)
        parent = lb.labels[0] if unit_level < 0 else lb.parent(unit_level)
        select = alive & (parent >= 0)
        if clusters is not None:
            chosen = torch.zeros(p.num_samples, dtype=torch.bool, device=p.device)
            chosen[clusters] = True
            select &= chosen[parent.clamp_min(0)]
        # a cluster with a single unit cannot split
        unit_count = torch.bincount(parent[select], minlength=p.num_samples)
        select &= unit_count[parent.clamp_min(0)] > 1
        units = select.nonzero().flatten()
        graph = p.graphs[unit_level + 1]
        changed: list[torch.Tensor] = []
        for ids, cluster_ids in padded_groups(parent[units], units):
            valid = ids >= 0
            safe = ids.clamp_min(0)
            neighbors = graph.neighbors(safe)
            neighbors = torch.where(valid.unsqueeze(-1), neighbors, torch.full_like(neighbors, -1))
            linkage = None
            if p.criterion == "average_linkage":
                means = self._unit_means(unit_level, safe)
                linkage = torch.bmm(means, means.transpose(1, 2))
            piece = split_blocks(
                ids, self._unit_centres(unit_level, safe).float(), neighbors, sizes[safe] * valid,
                alpha=p.alpha_split, max_anchors=p.max_anchors,
                anchor_method=p.anchor_method, generator=p.generator, linkage=linkage,
            )
            changed.append(self._apply_split(level, ids, cluster_ids, piece, sizes[safe] * valid))
        return torch.cat(changed) if changed else torch.empty(0, dtype=torch.long, device=p.device)

    def _apply_split(
        self, level: int, ids: torch.Tensor, cluster_ids: torch.Tensor, piece: torch.Tensor, weight: torch.Tensor
    ) -> torch.Tensor:
        """Give each piece of a split cluster an id (the heaviest keeps the old one) and update the bank."""
        p = self.policy
        num_blocks, n = ids.shape
        num_pieces = p.max_anchors + n
        mass = torch.zeros(num_blocks, num_pieces, dtype=torch.long, device=p.device)
        mass.scatter_add_(1, piece.clamp_min(0), weight)
        members = torch.zeros_like(mass).scatter_add_(1, piece.clamp_min(0), (ids >= 0).long())
        exists = members > 0
        score = torch.where(exists, mass * num_pieces + (num_pieces - torch.arange(num_pieces, device=p.device)),
                            torch.full_like(mass, -1))
        keep = score.argmax(dim=1)
        fresh_mask = exists.clone()
        fresh_mask[torch.arange(num_blocks, device=p.device), keep] = False
        did_split = fresh_mask.any(dim=1)
        if not bool(did_split.any()):
            return torch.empty(0, dtype=torch.long, device=p.device)
        ids, cluster_ids, piece = ids[did_split], cluster_ids[did_split], piece[did_split]
        keep, fresh_mask = keep[did_split], fresh_mask[did_split]
        fresh = p.label_bank.allocate(level, int(fresh_mask.sum()))
        piece_id = torch.full(fresh_mask.shape, -1, dtype=torch.long, device=p.device)
        piece_id[torch.arange(ids.shape[0], device=p.device), keep] = cluster_ids
        piece_id[fresh_mask] = fresh
        unit_new = piece_id.gather(1, piece.clamp_min(0))
        valid = ids >= 0
        self._relabel_units(level, ids[valid], unit_new[valid], torch.cat([cluster_ids, fresh]))
        return torch.cat([cluster_ids, fresh])

    def _relabel_units(self, level: int, units: torch.Tensor, new_ids: torch.Tensor, touched: torch.Tensor) -> None:
        """Samples of ``units`` (clusters of level-1, or samples at level 0) take ``new_ids`` at ``level``."""
        p = self.policy
        lb = p.label_bank
        unit_map = torch.full((p.num_samples,), -1, dtype=torch.long, device=p.device)
        unit_map[units] = new_ids
        per_sample = unit_map if level == 0 else unit_map[lb.labels[level - 1]]
        mapping = torch.where(per_sample >= 0, per_sample, lb.labels[level])
        if level == 0:
            unit_sums = p.bank.storage.gather_rows(units).float()
            unit_sizes = torch.ones_like(units)
        else:
            unit_sums, unit_sizes = (
                lb.rows[level - 1].gather_rows(units),
                lb.sizes[level - 1][units],
            )
        lb.relabel_level(level, mapping, touched, unit_sums, unit_sizes, new_ids)

    def _merge(self, level: int, units: torch.Tensor | None) -> torch.Tensor:
        """Merge the given clusters of ``level`` (None = all) with their ego-net; returns changed ids."""
        p = self.policy
        lb = p.label_bank
        alive = lb.alive[level]
        units = alive.nonzero().flatten() if units is None else units[alive[units]]
        if units.numel() == 0:
            return units
        parent = lb.parent(level)
        graph = p.graphs[level + 1]
        sources, targets = [], []
        chunk = max(1, (1 << 22) // ((p.k + 1) ** 2 * 4))
        for start in range(0, units.numel(), chunk):
            u = units[start : start + chunk]
            ego = _ego_net(u, graph)
            safe = ego.clamp_min(0)
            if p.criterion == "average_linkage":
                means = self._unit_means(level, safe)
                score = torch.einsum("ud,ued->ue", means[:, 0], means)
                score = torch.where(ego >= 0, score, torch.zeros_like(score))
                score[:, 0] = 0.0
                hit = score >= self.floor
            else:
                ego_neighbors = graph.neighbors(safe)
                ego_neighbors = torch.where((ego >= 0).unsqueeze(-1), ego_neighbors,
                                            torch.full_like(ego_neighbors, -1))
                score = merge_scores(ego, self._unit_centres(level, safe), ego_neighbors,
                                     alpha=p.alpha_merge, norm=p.merge_norm)
                hit = score > p.sigma
            hit &= ego >= 0
            hit[:, 0] = False
            if level + 1 < p.num_levels:  # merge border: only units of the same cluster one level up
                hit &= parent[safe] == parent[u].unsqueeze(1)
            row, col = hit.nonzero(as_tuple=True)
            sources.append(u[row])
            targets.append(ego[row, col])
        a, b = torch.cat(sources), torch.cat(targets)
        if a.numel() == 0:
            return a
        root = connected_components(a, b, p.num_samples)
        moved = (root != torch.arange(p.num_samples, device=p.device)).nonzero().flatten()
        lb.merge_clusters(level, moved, root)
        return torch.cat([torch.unique(root[moved]), moved])

    # ------------------------------------------------------------------ helpers
    def _refresh_graph(self, level: int, changed: torch.Tensor) -> None:
        """Update the k-NN lists of level ``level``'s cluster centres after the clusters ``changed`` moved."""
        p = self.policy
        p.label_bank.refresh_graph(level, p.graphs[level + 1], changed)

    def _calibrate(self) -> None:
        """Floor of the average-linkage criterion: median similarity of a sample to its k-th neighbour."""
        self.floor = kth_neighbour_floor(self.policy.graphs[0], self.policy.k)

    def state_dict(self) -> dict:
        return {"floor": self.floor}

    def load_state_dict(self, state: dict) -> None:
        self.floor = float(state["floor"])


def _everyone(policy: HCDPolicy) -> torch.Tensor:
    return torch.ones(policy.num_samples, dtype=torch.bool, device=policy.device)


def _ego_net(units: torch.Tensor, graph: KnnGraph) -> torch.Tensor:
    """[U, 1 + k] ids: each unit, then its mutual k-NN (-1 elsewhere): the graph the merge LP runs on."""
    neighbors = graph.neighbors(units)
    valid = neighbors >= 0
    back = graph.neighbors(neighbors.clamp_min(0))
    mutual = valid & (back == units.view(-1, 1, 1)).any(dim=-1)
    members = torch.where(mutual, neighbors, torch.full_like(neighbors, -1))
    return torch.cat([units.unsqueeze(1), members], dim=1)


def _mutual_components(neighbors: torch.Tensor, nodes: torch.Tensor, alive: torch.Tensor | None = None) -> torch.Tensor:
    """Component root of every node in the graph whose edges join mutual neighbours."""
    safe = neighbors.clamp_min(0)
    back = neighbors[safe]  # [n, k, k]
    mutual = (neighbors >= 0) & (back == nodes.view(-1, 1, 1)).any(dim=-1)
    if alive is not None:
        mutual &= alive.unsqueeze(1)
    src, slot = mutual.nonzero(as_tuple=True)
    return connected_components(src, neighbors[src, slot], nodes.numel())

"""Tracking dynamics of the hcd policy: every level is re-decided from the current bank where it changed.

The labels are a function of the feature bank (and the cameras), level by level:

- level 0: samples linked when mutual ``link_k``-nearest neighbours; each connected component is split at
  its density peaks (delta >= ``split_gap`` x the median nearest-neighbour distance) by label propagation
  (HCD Eq. 2-4) with ``alpha_split``;
- level h >= 1: the units are the clusters of level h-1; each unit proposes its nearest unit whose centre
  cosine is above the merge floor (default: the median similarity of a sample to its k-th neighbour,
  read from the bank's own k-NN lists), and from level ``cross_camera_from`` on only units that share no
  camera; units that propose each other merge (mutual nearest neighbours).

``initialize`` and ``refresh`` compute this from scratch. ``step`` updates the k-NN lists of the moved
rows, re-derives the level-0 components that contain a sample whose links changed (a moved sample
leaves its old cluster and joins the one it now links to; a component that lost its links splits), and
re-decides the proposals of every unit above, so the labels after a step are the labels a fresh
``initialize`` would give on the same bank, up to the k-NN lists' slack. ``merge_only`` (ablation,
HCD Table 3) never undoes a link: clusters only grow, as in clustering without split dynamics.
Cluster ids are the smallest member sample index (methods/linking.py), so equal partitions are equal arrays.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from streamlabel.banks.indexing import rows_of
from streamlabel.banks.knn_graph import KnnGraph
from streamlabel.methods.cluster_dynamics import connected_components
from streamlabel.methods.edge_merge import camera_centred, camera_means, edge_share_parents
from streamlabel.methods.linking import (
    camera_bits,
    components_within,
    mutual_knn_pairs,
    mutual_parents,
    split_components,
)

if TYPE_CHECKING:
    from streamlabel.methods.hcd import HCDPolicy


class TrackingDynamics:
    """Re-decides the links of every level around the moved rows; owns the level-0 components and cameras."""

    def __init__(self, policy: HCDPolicy) -> None:
        self.policy = policy
        n = policy.num_samples
        self.components = torch.arange(n, device=policy.device)  # level-0 component of each sample
        self.cameras: torch.Tensor | None = None  # [N] camera id of each sample (None: no camera rule)
        self.camera_counts: list[torch.Tensor] = []  # per level below the top: [N, cameras] int32 per cluster id
        self.floor = 0.0  # merge floor in use (fixed or calibrated)
        self.min_gap = 0.0  # split gap in use (calibrated)
        self.means: torch.Tensor | None = None  # [C, D] camera means of the bank (camera_centring)
        self.view: torch.Tensor | None = None  # [N, D] camera-centred unit rows the graphs see (or None: the bank)

    def build_graphs(self, slack: int, backend: str) -> list[KnnGraph]:
        """Samples: ``link_k`` + slack wide, tracking each sample's k-th similarity for the merge floor. Then
        ``merge: edges``: one more sample graph, ``edge_k`` + slack wide, of the neighbours in other cameras;
        ``merge: centroid``: the centres of each level below the top, 1 + slack wide (only the nearest eligible
        unit is read; where the camera rule holds, units that share a camera never enter each other's lists)."""
        p = self.policy
        graphs = [KnnGraph(p.num_samples, p.link_k, slack=slack, device=p.device, backend=backend, kth=p.k)]
        if p.merge == "edges":
            return [*graphs, KnnGraph(p.num_samples, p.edge_k, slack=slack, device=p.device, backend=backend)]
        graphs += [KnnGraph(p.num_samples, 1, slack=slack, device=p.device, backend=backend)
                   for _ in range(1, p.num_levels)]
        return graphs

    # ------------------------------------------------------------------ entry points
    def initialize(self, cameras: torch.Tensor | None) -> None:
        """Labels from scratch for the bank as it is; every k-NN list is rebuilt exactly."""
        p = self.policy
        if p.merge == "centroid" and p.cross_camera_from >= p.num_levels:  # no level applies the camera rule
            cameras = None
        # dense camera ids 0..C-1, whatever numbers the dataset uses
        self.cameras = None if cameras is None else torch.unique(cameras.to(p.device).long(), return_inverse=True)[1]
        self.camera_counts = []
        num_cameras = 0 if self.cameras is None else int(self.cameras.max()) + 1
        if num_cameras > 62:  # camera sets are int64 bit masks
            way_out = " (or raise cross_camera_from above num_levels - 1)" if p.merge == "centroid" else ""
            raise ValueError(f"camera-aware merging supports at most 62 cameras, the data has {num_cameras}; "
                             f"pass no camera ids{way_out}")
        self._centre_cameras()
        if num_cameras:
            self.camera_counts = [torch.zeros(p.num_samples, num_cameras, dtype=torch.int32, device=p.device)
                                  for _ in range(p.num_levels - 1)]
        p.graphs[0].rebuild(self._features(), self._all())
        if p.merge == "edges":
            p.graphs[1].tags = self._camera_tags()
            p.graphs[1].rebuild(self._features(), self._all())
        self._calibrate()
        everything = torch.arange(p.num_samples, device=p.device)
        self._update(everything, everything, rebuild=True)

    def rederive(self) -> None:
        """Every level again, with thresholds calibrated on the current bank: the camera means (with camera
        centring) taken afresh and the sample lists rebuilt (one exact k-NN pass), which also renews every
        sample's k-th similarity (a row's is exact when it last moved: the merge floor's staleness is bounded
        by one epoch), so the labels are those of a fresh ``initialize``."""
        p = self.policy
        if self.view is not None:
            self._centre_cameras()
        for graph in p.graphs[: 2 if p.merge == "edges" else 1]:
            graph.rebuild(self._features(), self._all())
        self._calibrate()
        nothing = torch.empty(0, dtype=torch.long, device=p.device)
        self._update(torch.arange(p.num_samples, device=p.device), nothing, rebuild=False)

    def step(self, rows: torch.Tensor) -> None:
        """After the bank rows ``rows`` moved: refresh the sample lists and re-decide what they touch."""
        p = self.policy
        graph = p.graphs[0]
        before = graph.idx[:, : p.link_k].clone()
        if self.view is not None:
            self.view[rows] = camera_centred(p.bank.features[rows], self.cameras[rows], self.means)
        self._refresh_lists(graph, rows, p.link_k)
        if p.merge == "edges":
            self._refresh_lists(p.graphs[1], rows, p.edge_k)
        self._calibrate()
        after = graph.idx[:, : p.link_k]
        listed = (before != after).any(dim=1).nonzero().flatten()
        dirty = torch.cat([rows, _changed_link_ends(listed, before, after), _changed_link_ends(listed, after, before)])
        marked = torch.zeros(p.num_samples, dtype=torch.bool, device=p.device)
        marked[rows_of(self.components, dirty)] = True
        region = rows_of(marked, self.components).nonzero().flatten()  # whole components: links stay inside
        self._update(region, rows, rebuild=False)

    def _refresh_lists(self, graph: KnnGraph, rows: torch.Tensor, k: int) -> None:
        """Refresh ``graph`` after ``rows`` moved, then search afresh every list whose first ``k`` entries
        hold a moved row that fell below the list's old weakest entry: units the list never held may now
        rank above it (a list keeps ``slack`` spares, not the whole ranking), so only a new search is exact."""
        weakest = graph.sims[:, -1].clone()  # -inf where the list held every unit
        graph.refresh(rows, self._features(), self._all())
        moved = torch.zeros(graph.capacity, dtype=torch.bool, device=rows.device)
        moved[rows] = True
        head = graph.idx[:, :k]
        doubtful = ((head >= 0) & moved[head.clamp_min(0)] & (graph.sims[:, :k] < weakest.unsqueeze(1))).any(dim=1)
        doubtful[rows] = False  # their lists are fresh
        again = doubtful.nonzero().flatten()
        if again.numel():
            graph.refresh(again, self._features(), self._all())

    # ------------------------------------------------------------------ levels
    def _update(self, region: torch.Tensor, rows: torch.Tensor, *, rebuild: bool) -> None:
        """Re-derive level 0 on ``region`` (whole components, sorted) and every level above from its units;
        ``rows`` are the samples whose features moved (their clusters' statistics change)."""
        p = self.policy
        lb = p.label_bank
        fresh = rebuild  # a rebuild starts a new history: merge_only keeps no old co-membership
        old = rows_of(lb.labels[0], region)
        new = self._level0(region, fresh=fresh)
        differs = old != new
        moved = rows_of(new, torch.searchsorted(region, rows))
        touched = torch.unique(torch.cat([old[differs], new[differs], moved]))
        mark = torch.zeros(p.num_samples, dtype=torch.bool, device=p.device)
        mark[touched] = True
        members = rows_of(mark, new).nonzero().flatten()
        samples, ids = rows_of(region, members), rows_of(new, members)
        mapping = lb.labels[0].clone()
        mapping[region] = new
        lb.relabel_level(0, mapping, touched, rows_of(p.bank.features, samples).float(), torch.ones_like(samples), ids)
        self._count_cameras(0, touched, samples, ids)
        for level in range(1, p.num_levels):
            if p.merge == "edges":  # every level from the sample lists: no centre graphs to keep
                touched = self._relabel_from_units(level, rows, fresh=fresh)
                continue
            graph = p.graphs[level]
            graph.tags = self._tags(level)
            centres, divisor = self._centre_rows(level - 1)
            if rebuild:
                graph.rebuild(_scaled(centres, divisor), lb.alive[level - 1])
            else:
                graph.refresh(touched, centres, lb.alive[level - 1], norms=divisor)
            touched = self._relabel_from_units(level, rows, fresh=fresh)

    def _level0(self, region: torch.Tensor, *, fresh: bool) -> torch.Tensor:
        """Level-0 ids of the samples ``region`` (whole components, sorted) from their current links."""
        p = self.policy
        lists = p.graphs[0].idx
        a, b = mutual_knn_pairs(region, lists, p.graphs[0].sims, p.link_k)
        if p.merge_only and not fresh:  # keep every existing co-membership: clusters only grow
            a, b = torch.cat([a, region]), torch.cat([b, rows_of(p.label_bank.labels[0], region)])
        roots = components_within(region, a, b)
        self.components[region] = roots
        if p.merge_only:
            return roots
        return split_components(
            region, roots, self._features(), lists, p.link_k, alpha=p.alpha_split, max_anchors=p.max_anchors,
            anchor_method=p.anchor_method, min_gap=self.min_gap, generator=p.generator,
        )

    def _parents(self, level: int, *, fresh: bool) -> torch.Tensor:
        """Parent id at ``level`` of every unit (cluster of level-1; -1 for free ids): the smaller of the unit
        and its mutual nearest eligible unit. ``merge_only`` also keeps the units of an old cluster together."""
        p = self.policy
        lb = p.label_bank
        units = lb.alive[level - 1].nonzero().flatten()
        if p.merge == "edges":
            lists = p.graphs[1].idx[:, : p.edge_k]
            sets = camera_bits(self.camera_counts[level - 1]) if self.camera_counts else None
            parent = edge_share_parents(lb.labels[level - 1], lb.sizes[level - 1], lists, share=p.edge_share,
                                        camera_sets=sets)
        else:
            graph = p.graphs[level]
            nearest = rows_of(graph.idx[:, 0], units)  # lists hold eligible units only, nearest first
            partner = torch.where(rows_of(graph.sims[:, 0], units) > self.floor, nearest,
                                  torch.full_like(nearest, -1))
            parent = mutual_parents(units, partner, p.num_samples)
        if not p.merge_only or fresh:
            return parent
        below, above = lb.labels[level - 1], lb.labels[level]  # a sample's unit and its old cluster's id
        a = torch.cat([units, below])
        b = torch.cat([rows_of(parent, units), rows_of(below, above)])  # the old id is a member: join its unit
        root = connected_components(a, b, p.num_samples)
        return torch.where(parent >= 0, root, parent)

    def _relabel_from_units(self, level: int, rows: torch.Tensor, *, fresh: bool) -> torch.Tensor:
        """Re-decide level ``level`` from its units; rebuild the statistics of the clusters that changed
        (returned)."""
        p = self.policy
        lb = p.label_bank
        parent = self._parents(level, fresh=fresh)
        old = lb.labels[level]
        new = rows_of(parent, lb.labels[level - 1])
        differs = new != old
        differs[rows] = True  # their clusters' sums moved
        touched = torch.unique(torch.cat([old[differs], new[differs]]))
        mark = torch.zeros(p.num_samples, dtype=torch.bool, device=p.device)
        mark[touched] = True
        units = (lb.alive[level - 1] & rows_of(mark, parent.clamp_min(0))).nonzero().flatten()
        ids = rows_of(parent, units)
        lb.relabel_level(level, new, touched, rows_of(lb.sums[level - 1], units), rows_of(lb.sizes[level - 1], units),
                         ids)
        self._count_cameras(level, touched, units, ids)
        return touched

    def _centre_rows(self, level: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(cluster sums, divisor) of ``level``: divided, they are unit centres (centroid criterion) or mean
        vectors whose inner products are the average pairwise cosines (average linkage)."""
        lb = self.policy.label_bank
        if self.policy.criterion == "average_linkage":
            return lb.sums[level], lb.sizes[level].float()
        return lb.sums[level], lb.norms[level]

    # ------------------------------------------------------------------ thresholds and cameras
    def _calibrate(self) -> None:
        """Merge floor (unless given) and split gap from the bank's own k-NN lists: the median similarity of a
        sample to its k-th neighbour, and ``split_gap`` x the median distance to its nearest one."""
        p = self.policy
        graph = p.graphs[0]
        if p.merge_floor is not None:
            self.floor = float(p.merge_floor)
        else:
            kth = graph.kth_sims[torch.isfinite(graph.kth_sims)]
            self.floor = float(kth.median()) if kth.numel() else 1.0
        nearest = graph.sims[:, 0]
        nearest = (1.0 - nearest[torch.isfinite(nearest)]).clamp_min(0.0)
        self.min_gap = p.split_gap * float(nearest.median()) if nearest.numel() else 2.0

    def _centre_cameras(self) -> None:
        """With ``camera_centring`` and camera ids: the camera means of the bank as it is now, and the
        centred rows every graph and split reads (kept row by row in ``step``; the means change only at
        ``initialize`` / ``refresh`` / ``rederive``, which rebuild the lists, so the lists stay exact between)."""
        p = self.policy
        if not p.camera_centring or self.cameras is None:
            self.means = self.view = None
            return
        self.means = camera_means(p.bank.features, self.cameras)
        self.view = camera_centred(p.bank.features, self.cameras, self.means)

    def _camera_tags(self) -> torch.Tensor | None:
        """Bit 1 << camera of every sample: the cross-camera lists of ``merge: edges`` (None: no cameras)."""
        return None if self.cameras is None else torch.ones_like(self.cameras) << self.cameras

    def _features(self) -> torch.Tensor:
        """The rows the sample graphs and the level-0 split read: camera-centred, or the bank's."""
        return self.policy.bank.features if self.view is None else self.view

    def _tags(self, level: int) -> torch.Tensor | None:
        """Camera bit masks of the units of ``level`` (clusters of level-1) where the camera rule holds."""
        if self.cameras is None or self.policy.merge != "centroid" or level < self.policy.cross_camera_from:
            return None
        return camera_bits(self.camera_counts[level - 1])

    def _count_cameras(self, level: int, touched: torch.Tensor, members: torch.Tensor, ids: torch.Tensor) -> None:
        """Camera counts of the clusters ``touched`` of ``level`` (below the top), rebuilt from their members
        (samples at level 0, units of level-1 above) and the members' new cluster ``ids``."""
        if not self.camera_counts or level >= self.policy.num_levels - 1:
            return
        counts = self.camera_counts[level]
        counts[touched] = 0
        if level == 0:
            flat = ids * counts.shape[1] + rows_of(self.cameras, members)
            counts.view(-1).index_add_(0, flat, torch.ones_like(flat, dtype=torch.int32))
        else:
            counts.index_add_(0, ids, rows_of(self.camera_counts[level - 1], members))

    def _all(self) -> torch.Tensor:
        return torch.ones(self.policy.num_samples, dtype=torch.bool, device=self.policy.device)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        cameras = None if self.cameras is None else self.cameras.clone()
        means = None if self.means is None else self.means.clone()
        return {"components": self.components.clone(), "cameras": cameras, "camera_means": means,
                "camera_counts": [counts.clone() for counts in self.camera_counts]}

    def load_state_dict(self, state: dict) -> None:
        self.components.copy_(state["components"])
        self.cameras = None if state["cameras"] is None else state["cameras"].to(self.policy.device)
        self.camera_counts = [counts.to(self.policy.device).clone() for counts in state["camera_counts"]]
        means = state.get("camera_means")
        self.means = None if means is None else means.to(self.policy.device)
        self.view = None if self.means is None else camera_centred(self.policy.bank.features, self.cameras,
                                                                   self.means)
        if self.policy.merge == "edges":
            self.policy.graphs[1].tags = self._camera_tags()
        for level in range(1, self.policy.num_levels if self.policy.merge == "centroid" else 1):
            self.policy.graphs[level].tags = self._tags(level)
        self._calibrate()


def _scaled(sums: torch.Tensor, divisor: torch.Tensor) -> torch.Tensor:
    """Rows of ``sums`` divided by ``divisor`` (zero divisors give zero rows)."""
    return sums.float() / divisor.clamp_min(1e-12).unsqueeze(1)


def _changed_link_ends(nodes: torch.Tensor, lists: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """Both ends of the links of ``nodes`` (mutual first-k entries) under ``lists`` that ``other`` lacks (a link
    whose similarity changed sign has a moved end, which the caller re-derives anyway)."""
    near = rows_of(lists, nodes)
    safe = near.clamp_min(0)
    is_link = (near >= 0) & (rows_of(lists, safe) == nodes.view(-1, 1, 1)).any(dim=-1)
    still = (rows_of(other, nodes).unsqueeze(-1) == near.unsqueeze(1)).any(dim=1)
    still &= (rows_of(other, safe) == nodes.view(-1, 1, 1)).any(dim=-1)
    row, col = (is_link & ~still).nonzero(as_tuple=True)
    return torch.cat([nodes[row], near[row, col]])

"""Links between units and the clusters they form: the building blocks of the tracking dynamics.

A unit is a sample (level 0) or a cluster of the level below. Every cluster id is the smallest sample
index among its members, so a partition has exactly one labelling: the online step and a fresh
``initialize`` that reach the same partition write the same label arrays.

- level 0: samples are linked when they are mutual ``k0``-nearest neighbours; a cluster is a connected
  component of these links, split at its density peaks by label propagation (methods/cluster_dynamics.py).
- level h >= 1: each unit proposes its nearest eligible unit (similar enough, and with cameras: sharing
  no camera); two units that propose each other are linked (mutual nearest neighbours).

All functions are vectorised over units; none builds an N x N matrix.
"""

from __future__ import annotations

import torch

from streamlabel.banks.indexing import rows_of
from streamlabel.banks.knn_graph import KnnGraph
from streamlabel.methods.cluster_dynamics import connected_components, padded_groups, split_blocks


def mutual_knn_pairs(
    nodes: torch.Tensor, lists: torch.Tensor, sims: torch.Tensor, k0: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b): the pairs in which node a and its list entry b are in each other's first ``k0`` entries with a
    positive similarity (Eq. 3: the affinity of a mutual pair is its cosine; 0 or less is no edge).

    ``lists`` / ``sims`` [N, W] are the k-NN lists of every unit (-1 = empty); ``nodes`` the units wanted.
    """
    near = rows_of(lists, nodes)[:, :k0]
    back = rows_of(lists, near.clamp_min(0))[..., :k0]
    mutual = (near >= 0) & (back == nodes.view(-1, 1, 1)).any(dim=-1) & (rows_of(sims, nodes)[:, :k0] > 0)
    row, col = mutual.nonzero(as_tuple=True)
    return nodes[row], near[row, col]


def components_within(nodes: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Smallest member of each node's connected component, for the edges a-b among ``nodes`` (sorted ids).

    Edges with an end outside ``nodes`` are ignored.
    """
    count = nodes.numel()
    if count == 0:
        return nodes
    pa = torch.searchsorted(nodes, a).clamp_max(count - 1)
    pb = torch.searchsorted(nodes, b).clamp_max(count - 1)
    inside = (nodes[pa] == a) & (nodes[pb] == b)
    root = connected_components(pa[inside], pb[inside], count)
    return nodes[root]  # nodes are sorted, so the smallest local index is the smallest id


def piece_roots(ids: torch.Tensor, piece: torch.Tensor) -> torch.Tensor:
    """Smallest member id of each unit's piece in padded blocks: ids, piece [G, n] (-1 = padding)."""
    valid = ids >= 0
    width = int(piece.max()) + 1 if piece.numel() else 1
    big = torch.iinfo(torch.long).max
    smallest = torch.full((ids.shape[0], width), big, dtype=torch.long, device=ids.device)
    member = torch.where(valid, ids, torch.full_like(ids, big))
    smallest.scatter_reduce_(1, piece.clamp_min(0), member, reduce="amin")
    return torch.where(valid, smallest.gather(1, piece.clamp_min(0)), torch.full_like(ids, -1))


def split_components(
    nodes: torch.Tensor,
    roots: torch.Tensor,
    features: torch.Tensor,
    lists: torch.Tensor,
    k0: int,
    *,
    alpha: float,
    max_anchors: int,
    anchor_method: str,
    min_gap: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Level-0 cluster id (smallest member) of every node after splitting each component at its peaks.

    nodes [R] sample ids, roots [R] their component; affinity inside a component = cosine of mutual
    ``k0``-NN members (Eq. 3), anchors by density peak with delta >= ``min_gap``, assignment by label
    propagation (Eq. 2, 4). Components of one sample are left as they are.
    """
    out = roots.clone()
    _, which, count = torch.unique(roots, return_inverse=True, return_counts=True)
    several = count[which] > 1
    if not bool(several.any()):
        return out
    position = torch.full((int(nodes.max()) + 1,), -1, dtype=torch.long, device=nodes.device)
    position[nodes] = torch.arange(nodes.numel(), device=nodes.device)
    for ids, _ in padded_groups(roots[several], nodes[several], min_width=32):
        valid = ids >= 0
        safe = ids.clamp_min(0)
        neighbors = torch.where(valid.unsqueeze(-1), lists[safe, :k0], torch.full_like(lists[safe, :k0], -1))
        piece = split_blocks(
            ids, features[safe].float(), neighbors, valid.long(), alpha=alpha, max_anchors=max_anchors,
            anchor_method=anchor_method, generator=generator, min_gap=min_gap,
        )
        out[position[ids[valid]]] = piece_roots(ids, piece)[valid]
    return out


def mutual_parents(units: torch.Tensor, partner: torch.Tensor, capacity: int) -> torch.Tensor:
    """Parent id [capacity] of every unit (-1 for ids not in ``units``): the smaller of a unit and its partner
    when the two chose each other, else the unit itself."""
    chosen = torch.full((capacity,), -1, dtype=torch.long, device=units.device)
    chosen[units] = partner
    mutual = (partner >= 0) & (chosen[partner.clamp_min(0)] == units)
    parent = torch.full((capacity,), -1, dtype=torch.long, device=units.device)
    parent[units] = torch.where(mutual, torch.minimum(units, partner), units)
    return parent


def camera_bits(counts: torch.Tensor) -> torch.Tensor:
    """Bit mask (int64) of the cameras present in each row of a [N, C] camera count table (C <= 62)."""
    if counts.shape[1] > 62:
        raise ValueError(f"camera-aware merging supports at most 62 cameras, got {counts.shape[1]}")
    weights = torch.ones(counts.shape[1], dtype=torch.long, device=counts.device) << torch.arange(
        counts.shape[1], device=counts.device)
    return ((counts > 0).long() * weights).sum(dim=1)


def kth_neighbour_floor(graph: KnnGraph, k: int) -> float:
    """Median over the samples of the similarity to their k-th neighbour (the last one a short list holds)."""
    filled = (graph.idx >= 0).sum(dim=1)
    has = filled > 0
    if not bool(has.any()):
        return 1.0
    column = (filled.clamp(max=k) - 1).clamp_min(0)
    return float(graph.sims.gather(1, column.unsqueeze(1)).squeeze(1)[has].median())

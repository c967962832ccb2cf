"""Cluster split and merge by label propagation (HCD Sec. 4.2), as pure batched tensor functions.

Split: the units of one cluster (clusters of the level below) get Y0 one-hot on the anchors and each
unit takes argmax_j P*_ij (Eq. 4). Merge: the units around a touched cluster (its mutual-kNN ego-net
inside the merge border) get Y0 = I and the touched unit merges with v when p_uv > sigma.
The policy (methods/hcd.py) decides which units form a block and writes the results to the banks.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from streamlabel.methods.anchors import select_anchors
from streamlabel.methods.label_propagation import mutual_knn_affinity, normalize_affinity, propagate

MERGE_NORMS = ("self", "row", "sym")


def padded_groups(
    group: torch.Tensor, members: torch.Tensor, *, budget: int = 1 << 22, min_width: int = 1
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (ids [G, n] padded with -1, group id [G]) for the members of every group.

    Groups are bucketed by size (powers of two; all groups of at most ``min_width`` members share one
    bucket, fewer calls for many small groups) and chunked so G * n * n stays under ``budget``, so one
    huge group does not inflate the padding of all the others.
    """
    if members.numel() == 0:
        return
    order = torch.argsort(group * (members.max() + 1) + members)
    sorted_group, sorted_members = group[order], members[order]
    uniq, counts = torch.unique_consecutive(sorted_group, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    bucket = torch.ceil(torch.log2(counts.clamp_min(min_width).float())).long()
    for b in torch.unique(bucket).tolist():
        sel = (bucket == b).nonzero().flatten()
        n = int(counts[sel].max())
        chunk = max(1, budget // (n * n))
        for start in range(0, sel.numel(), chunk):
            blocks = sel[start : start + chunk]
            slot = torch.arange(n, device=members.device).unsqueeze(0)
            valid = slot < counts[blocks].unsqueeze(1)
            pos = (starts[blocks].unsqueeze(1) + slot).clamp_max(members.numel() - 1)
            ids = torch.where(valid, sorted_members[pos], torch.full_like(pos, -1))
            yield ids, uniq[blocks]


def split_blocks(
    ids: torch.Tensor,
    centres: torch.Tensor,
    neighbor_ids: torch.Tensor,
    weights: torch.Tensor,
    *,
    alpha: float = 0.99,
    max_anchors: int = 8,
    anchor_method: str = "density_peak",
    generator: torch.Generator | None = None,
    min_gap: float | None = None,
    linkage: torch.Tensor | None = None,
) -> torch.Tensor:
    """Piece index of every unit ([G, n], -1 on padding) after splitting each block (Eq. 2-4).

    ``min_gap`` selects the anchor-count rule (see methods/anchors.py): None = local density maxima of the
    graph (paper), a number = units at least that far (cosine distance) from every denser unit.
    ``linkage`` [G, n, n] (ablation "without LP"): each unit joins the anchor it is most similar to by this
    matrix (e.g. average pairwise cosine) instead of the label propagation argmax.

    Pieces 0..max_anchors-1 belong to the anchors; a unit no anchor's label reaches (P* row all zero:
    no mutual-kNN path to any anchor) becomes a piece of its own, max_anchors + its slot.
    """
    valid = ids >= 0
    affinity = mutual_knn_affinity(centres, ids, neighbor_ids)
    cosine = torch.bmm(centres.float(), centres.float().transpose(1, 2))
    anchors = select_anchors(
        affinity, cosine, weights.float() * valid, valid,
        max_anchors=max_anchors, method=anchor_method, generator=generator, min_gap=min_gap,
    )
    num_blocks, n = ids.shape
    has = anchors >= 0
    if linkage is not None:
        to_anchor = linkage.gather(2, anchors.clamp_min(0).unsqueeze(1).expand(-1, n, -1))
        piece = to_anchor.masked_fill(~has.unsqueeze(1), float("-inf")).argmax(dim=2)
        return torch.where(valid, piece, torch.full_like(piece, -1))
    initial = torch.zeros(num_blocks, n, max_anchors, dtype=torch.float64, device=ids.device)
    block, slot = has.nonzero(as_tuple=True)
    initial[block, anchors[block, slot], slot] = 1.0
    spread = propagate(normalize_affinity(affinity.double()), initial, alpha)
    best, piece = spread.max(dim=2)
    reached = best > 1e-12
    own = max_anchors + torch.arange(n, device=ids.device).unsqueeze(0).expand(num_blocks, -1)
    piece = torch.where(reached, piece, own)
    return torch.where(valid, piece, torch.full_like(piece, -1))


def merge_scores(
    ids: torch.Tensor, centres: torch.Tensor, neighbor_ids: torch.Tensor, *, alpha: float = 0.99, norm: str = "self"
) -> torch.Tensor:
    """p[u, v]: how strongly the label of ego member v reaches the ego centre (slot 0), [U, E].

    With Y0 = I, P* = (I - alpha S)^-1; row 0 holds the centre's label scores. ``norm`` turns them into
    a probability-like score: "self" divides by the centre's own score P_00 (1 for itself), "row" by
    the row sum, "sym" by sqrt(P_00 P_vv). Slot 0 and padding score 0.
    """
    if norm not in MERGE_NORMS:
        raise ValueError(f"unknown merge normalisation {norm!r}; choose from {MERGE_NORMS}")
    affinity = mutual_knn_affinity(centres, ids, neighbor_ids).double()
    num_blocks, n = ids.shape
    eye = torch.eye(n, dtype=torch.float64, device=ids.device).expand(num_blocks, n, n)
    spread = propagate(normalize_affinity(affinity), eye, alpha)
    row = spread[:, 0, :]
    if norm == "self":
        score = row / row[:, :1]
    elif norm == "row":
        score = row / row.sum(dim=1, keepdim=True)
    else:
        score = row / torch.sqrt(row[:, :1] * torch.diagonal(spread, dim1=1, dim2=2)).clamp_min(1e-300)
    score = torch.where(ids >= 0, score, torch.zeros_like(score))
    score[:, 0] = 0.0
    return score.float()


def connected_components(a: torch.Tensor, b: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Root (smallest id) of every node's component for the undirected edges a-b; isolated nodes root themselves."""
    root = torch.arange(num_nodes, device=a.device)
    if a.numel() == 0:
        return root
    while True:
        low = torch.minimum(root[a], root[b])
        nxt = root.clone()
        nxt.scatter_reduce_(0, a, low, reduce="amin")
        nxt.scatter_reduce_(0, b, low, reduce="amin")
        nxt = nxt[nxt]  # pointer jumping
        if torch.equal(nxt, root):
            return root
        root = nxt

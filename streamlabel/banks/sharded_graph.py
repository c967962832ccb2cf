"""KnnGraph rebuild / refresh when the units' rows are RowShards (sharded bank or sharded cluster sums).

The neighbour lists themselves stay replicated (O(N (k + slack)) per rank, identical everywhere); only
the N x D rows are sharded. Exact mode reproduces ``KnnGraph.refresh`` of the replicated bank: the moved
units get fresh lists from a sharded search, and every other unit merges the moved units into its list,
each rank for the rows it owns, after which the lists that changed are exchanged. With a projection the
moved units' lists come from the projected search (re-scored exactly) and a moved unit is offered only
to the units on its own candidate list, so no pass over the N rows in D dimensions is made at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from streamlabel.banks.distributed import all_gather_cat, all_gather_rows
from streamlabel.banks.row_shards import RowShards, mask_blocked_rows, merge_topk

if TYPE_CHECKING:
    from streamlabel.banks.knn_graph import KnnGraph

_NEG_INF = float("-inf")


def rebuild_sharded(graph: KnnGraph, rows: RowShards, alive: torch.Tensor, chunk: int = 256) -> None:
    """Exact (or projected + re-scored) lists for every alive unit, queried a chunk of units at a time."""
    graph.idx.fill_(-1)
    graph.sims.fill_(_NEG_INF)
    units = alive.nonzero().flatten()
    for part in units.split(chunk):
        sims, idx = rows.search(rows.query_rows(part), graph.width, query_ids=part, valid=alive)
        graph.idx[part] = idx
        graph.sims[part] = sims


def refresh_sharded(graph: KnnGraph, moved: torch.Tensor, rows: RowShards, alive: torch.Tensor) -> None:
    """``KnnGraph.refresh`` for sharded rows: bring the lists up to date after the units ``moved`` changed."""
    moved = torch.unique(moved)
    if moved.numel() == 0:
        return
    if moved.numel() * 4 > int(alive.sum()):
        rebuild_sharded(graph, rows, alive)
        return
    changed, live = graph.forget(moved, alive)
    if live.numel() == 0:
        return
    queries = rows.query_rows(live)
    others = alive & ~changed
    if rows.projection is None:
        fresh, offers = _scan_exact(graph, rows, live, queries, alive, others)
    else:
        fresh = rows.search(queries, graph.width, query_ids=live, valid=alive)
        offers = _offer_to_candidates(graph, live, *fresh, others)
    graph.idx[live] = fresh[1]
    graph.sims[live] = fresh[0]
    targets, idx, sims = offers
    graph.idx[targets] = idx
    graph.sims[targets] = sims


def _scan_exact(
    graph: KnnGraph, rows: RowShards, live: torch.Tensor, queries: torch.Tensor, alive: torch.Tensor,
    others: torch.Tensor,
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One pass over this rank's rows: the moved units' fresh top lists, and every other owned unit's list
    with the moved units merged in; returns (fresh sims, fresh ids), (changed units, their ids, their sims)."""
    num_live = live.numel()
    best = torch.full((num_live, 0), _NEG_INF, device=live.device)
    best_idx = torch.full((num_live, 0), -1, dtype=torch.long, device=live.device)
    upd_rows, upd_idx, upd_sims = [], [], []
    for cols, sims in rows.score_blocks(queries):
        mine = ((cols >= 0) & others[cols.clamp_min(0)]).nonzero().flatten()
        if mine.numel():
            targets = cols[mine]
            old_idx, old_sims = graph.idx[targets], graph.sims[targets]
            top, top_idx = merge_topk(torch.cat([old_sims, sims[:, mine].t()], dim=1),
                                      torch.cat([old_idx, live.expand(targets.numel(), -1)], dim=1), graph.width)
            diff = (top_idx != old_idx).any(dim=1)
            upd_rows.append(targets[diff])
            upd_idx.append(top_idx[diff])
            upd_sims.append(top[diff])
        mask_blocked_rows(sims, cols, live, alive)
        best, best_idx = merge_topk(torch.cat([best, sims], dim=1),
                                    torch.cat([best_idx, cols.expand(num_live, -1)], dim=1), graph.width)
    best, best_idx = merge_topk(best, best_idx, graph.width)
    world = rows.world
    if world > 1:
        best, best_idx = merge_topk(all_gather_cat(best, 1, world), all_gather_cat(best_idx, 1, world), graph.width)
    empty_idx = torch.empty(0, graph.width, dtype=torch.long, device=live.device)
    targets = torch.cat([*upd_rows, torch.empty(0, dtype=torch.long, device=live.device)])
    idx = torch.cat([*upd_idx, empty_idx])
    sims = torch.cat([*upd_sims, empty_idx.float()])
    return (best, best_idx), (all_gather_rows(targets, world), all_gather_rows(idx, world),
                              all_gather_rows(sims, world))


def _offer_to_candidates(
    graph: KnnGraph, live: torch.Tensor, sims: torch.Tensor, idx: torch.Tensor, others: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Merge each moved unit into the lists of the units on its own (exact-scored) list; same on every rank."""
    ok = idx >= 0
    ok[ok.clone()] = others[idx[ok]]
    src, slot = ok.nonzero(as_tuple=True)
    targets, which = torch.unique(idx[src, slot], return_inverse=True)
    offered = torch.full((targets.numel(), live.numel()), _NEG_INF, device=live.device)
    offered[which, src] = sims[src, slot]
    top, top_idx = merge_topk(torch.cat([graph.sims[targets], offered], dim=1),
                              torch.cat([graph.idx[targets], live.expand(targets.numel(), -1)], dim=1), graph.width)
    return targets, top_idx, top

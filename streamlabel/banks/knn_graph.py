"""KnnGraph: the k nearest neighbours of every unit (sample or cluster centre), kept up to date.

Memory is O(C * k). A step that moves R centres costs one R x C product against the alive units: the
moved units get exact fresh lists, entries pointing at them elsewhere take their new similarity, and
a moved unit enters another list only where it beats that list's weakest entry. Lists carry ``slack``
spare entries so that a neighbour moving away can be replaced without a full rebuild; ``rebuild``
recomputes every list exactly (blocked, never C x C in memory). The centres here are a tensor; a
row storage runs the graph through its own ``rebuild_graph`` / ``refresh_graph`` (RowShards: the
distributed version in ``banks/sharded_graph.py``).
"""

from __future__ import annotations

import torch

from streamlabel.banks.indexing import rows_of
from streamlabel.banks.knn import shares_tag, topk_inner_product

_NEG_INF = float("-inf")
_EPS = 1e-12  # as F.normalize: a zero row stays zero


class KnnGraph:
    """Neighbour lists ``idx``/``sims`` of shape [capacity, k + slack]; -1 / -inf mark empty slots."""

    def __init__(
        self,
        capacity: int,
        k: int,
        *,
        slack: int = 8,
        device: torch.device | str | None = None,
        backend: str = "torch",
        block_size: int = 2048,
        kth: int | None = None,
    ) -> None:
        self.k = int(k)
        self.width = int(k + slack)
        self.backend = backend
        self.block_size = block_size
        self.idx = torch.full((capacity, self.width), -1, dtype=torch.long, device=device)
        self.sims = torch.full((capacity, self.width), _NEG_INF, dtype=torch.float32, device=device)
        # optional: similarity of every unit to its kth neighbour (or its last one, when fewer exist), exact for
        # the lists computed afresh (rebuild, moved units) and kept as it was for the others
        self.kth = None if kth is None else int(kth)
        self.kth_sims = None if kth is None else torch.full((capacity,), _NEG_INF, device=device)
        # optional: int64 bit mask per unit (e.g. its cameras); units sharing a bit never list each other. Set
        # by the caller before a rebuild/refresh; a unit whose tags change must be among the refreshed rows.
        self.tags: torch.Tensor | None = None

    @property
    def depth(self) -> int:
        """How many neighbours a fresh list search ranks: the list width, or the tracked kth if deeper."""
        return max(self.width, self.kth or 0)

    def _keep_fresh(self, rows: torch.Tensor, sims: torch.Tensor, idx: torch.Tensor) -> None:
        """Store fresh search results [R, depth] of ``rows``: the first ``width`` as lists, and the kth."""
        width = min(self.width, sims.shape[1])
        self.idx[rows, :width] = idx[:, :width]
        self.sims[rows, :width] = sims[:, :width]
        if self.kth_sims is not None:
            head = sims[:, : self.kth]
            last = (torch.isfinite(head).sum(dim=1) - 1).clamp_min(0)
            self.kth_sims[rows] = head.gather(1, last.unsqueeze(1)).squeeze(1)

    @property
    def capacity(self) -> int:
        return self.idx.shape[0]

    def neighbors(self, rows: torch.Tensor, k: int | None = None) -> torch.Tensor:
        """The first k (default: the graph's k) neighbour ids of ``rows``; -1 where a list is short."""
        return self.idx[rows, : (self.k if k is None else k)]

    def rebuild(self, centres: torch.Tensor, alive: torch.Tensor) -> None:
        """Exact lists for every alive unit (a full k-NN pass over the alive centres)."""
        self.idx.fill_(-1)
        self.sims.fill_(_NEG_INF)
        rows = alive.nonzero().flatten()
        if rows.numel() == 0:
            return
        every = rows.numel() == self.capacity
        bank = centres if every else centres[rows]  # the alive units only: no pass over dead rows
        own = torch.arange(rows.numel(), device=rows.device)
        tags = None if self.tags is None else (self.tags if every else rows_of(self.tags, rows))
        sims, pos = topk_inner_product(bank, bank, self.depth, query_ids=own, block_size=self.block_size,
                                       backend=self.backend, query_tags=tags, bank_tags=tags)
        self._keep_fresh(rows, sims, pos if every else torch.where(pos >= 0, rows[pos.clamp_min(0)], pos))

    def forget(self, rows: torch.Tensor, alive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Empty the lists of ``rows`` and drop entries pointing at them or at dead units;
        returns (mask of ``rows`` over all units, the alive ones among ``rows``)."""
        live_rows = rows[alive[rows]]
        changed = torch.zeros(self.capacity, dtype=torch.bool, device=self.idx.device)
        changed[rows] = True
        # drop entries that point at changed or dead units; they are re-inserted by the caller if still close
        stale = (self.idx >= 0) & (changed | ~alive)[self.idx.clamp_min(0)]
        self.sims.masked_fill_(stale, _NEG_INF)
        self.idx.masked_fill_(stale, -1)
        self.idx[rows] = -1
        self.sims[rows] = _NEG_INF
        return changed, live_rows

    def refresh(
        self, rows: torch.Tensor, centres: torch.Tensor, alive: torch.Tensor,
        norms: torch.Tensor | None = None,
    ) -> None:
        """Bring the lists up to date after the centres of ``rows`` changed (or rows died / were born).

        ``norms`` [capacity] (optional) are the row norms of un-normalised ``centres`` (cluster sums): scores
        are divided by them, so the whole [N, D] matrix is never normalised. A list entry that points at a
        moved unit takes its new similarity in place, one that points at a dead unit is dropped, and a moved
        unit enters a list only where it beats the list's weakest entry: every list ends as the top
        ``k + slack`` of (its old entries, the moved units at their new similarity), with the candidates
        gathered sparsely instead of merging all R moved units into every list.
        """
        rows = torch.unique(rows)
        units = alive.nonzero().flatten()
        if rows.numel() == 0:
            return
        if rows.numel() * 4 > units.numel():
            self.rebuild(centres if norms is None else normalised_rows(centres, norms), alive)
            return
        device = self.idx.device
        changed = torch.zeros(self.capacity, dtype=torch.bool, device=device)
        changed[rows] = True
        self.idx[rows] = -1
        self.sims[rows] = _NEG_INF
        live_rows = rows[alive[rows]]
        compact = units.numel() * 2 <= self.capacity  # score against the alive units only
        cols = units if compact else torch.arange(self.capacity, device=device)
        scores = _moved_scores(live_rows, centres, norms, cols, None if compact else alive)  # [R, columns]
        if self.tags is not None:
            scores.masked_fill_(shares_tag(rows_of(self.tags, live_rows), rows_of(self.tags, cols)), _NEG_INF)
        position = torch.full((self.capacity,), -1, dtype=torch.long, device=device)
        position[live_rows] = torch.arange(live_rows.numel(), device=device)
        rescored, listed = self._rescore_entries(changed, position, scores, cols, compact)
        weakest = (rows_of(self.sims, cols) if compact else self.sims).min(dim=1).values
        if live_rows.numel():
            fresh_sims, fresh_pos = torch.topk(scores, min(self.depth, cols.numel()), dim=1)
            self._keep_fresh(live_rows, fresh_sims, cols[fresh_pos].masked_fill_(torch.isinf(fresh_sims), -1))
            touched = scores.amax(dim=0) >= weakest  # some moved unit can enter the list
        else:  # only deaths: nothing enters, the lists that lost entries are compacted below
            touched = torch.zeros(cols.numel(), dtype=torch.bool, device=device)
        touched[rescored] = True  # lists with new similarities or dropped entries are sorted again
        other = rows_of(alive & ~changed, cols)
        group = (touched & other).nonzero().flatten()
        if group.numel() == 0:
            return
        sub = scores.index_select(1, group)
        enters = sub >= weakest[group].unsqueeze(0)
        slot_of = torch.full((cols.numel(),), -1, dtype=torch.long, device=device)
        slot_of[group] = torch.arange(group.numel(), device=device)
        listed_slot = slot_of[listed[1]]
        keep = listed_slot >= 0  # (always, as lists of dead or moved units hold no entries)
        enters[listed[0][keep], listed_slot[keep]] = False  # already listed, at its new similarity
        full = torch.isfinite(weakest[group])
        for part, sparse in ((full, True), (~full, False)):
            if bool(part.any()):
                self._merge(cols[group[part]], sub[:, part], enters[:, part], live_rows, sparse)

    def _rescore_entries(
        self, changed: torch.Tensor, position: torch.Tensor, scores: torch.Tensor, cols: torch.Tensor, compact: bool,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Entries pointing at a moved unit take its new score, entries pointing at a dead unit are dropped;
        returns the columns whose lists changed and the (moved unit, column) pairs still listed."""
        idx = rows_of(self.idx, cols) if compact else self.idx
        hit = rows_of(changed, idx.clamp_min(0)) & (idx >= 0)
        local = hit.any(dim=1).nonzero().flatten()
        if local.numel() == 0:
            return local, (local, local)
        units = rows_of(cols, local)
        sub_idx, sub_sims, sub_hit = rows_of(self.idx, units), rows_of(self.sims, units), rows_of(hit, local)
        pos = rows_of(position, sub_idx.clamp_min(0))
        live, dead = sub_hit & (pos >= 0), sub_hit & (pos < 0)
        column = local.unsqueeze(1).expand_as(pos)
        rescored = scores[pos.clamp_min(0), column] if scores.numel() else sub_sims
        self.sims[units] = torch.where(live, rescored, sub_sims).masked_fill_(dead, _NEG_INF)
        self.idx[units] = sub_idx.masked_fill_(dead, -1)
        return local, (pos[live], column[live])

    def _merge(
        self, units: torch.Tensor, scores: torch.Tensor, enters: torch.Tensor, live_rows: torch.Tensor, sparse: bool,
    ) -> None:
        """Lists of ``units``: the top ``width`` of their entries and the moved units that enter them (``scores``
        and ``enters`` are [R, len(units)]). Sparse: only the entering pairs are gathered, padded to the most
        any list receives; else (lists with free slots) every moved unit not yet listed is a candidate."""
        if sparse:
            member, moved = enters.t().nonzero(as_tuple=True)
            counts = torch.bincount(member, minlength=units.numel())
            slot = torch.arange(member.numel(), device=member.device) - (torch.cumsum(counts, 0) - counts)[member]
            extra = int(counts.max()) if member.numel() else 0
            cand_sims = scores.new_full((units.numel(), extra), _NEG_INF)
            cand_idx = torch.full((units.numel(), extra), -1, dtype=torch.long, device=units.device)
            cand_sims[member, slot] = scores[moved, member]
            cand_idx[member, slot] = live_rows[moved]
        else:
            cand_sims = scores.t().masked_fill(~enters.t(), _NEG_INF)
            cand_idx = live_rows.unsqueeze(0).expand(units.numel(), -1)
        top_sims, pos = torch.topk(torch.cat([rows_of(self.sims, units), cand_sims], dim=1), self.width, dim=1)
        top_idx = torch.cat([rows_of(self.idx, units), cand_idx], dim=1).gather(1, pos)
        self.sims[units] = top_sims
        self.idx[units] = top_idx.masked_fill_(torch.isinf(top_sims), -1)

    def state_dict(self) -> dict:
        state = {"idx": self.idx.clone(), "sims": self.sims.clone(), "k": self.k}
        if self.kth_sims is not None:
            state["kth_sims"] = self.kth_sims.clone()
        return state

    def load_state_dict(self, state: dict) -> None:
        if tuple(state["idx"].shape) != tuple(self.idx.shape) or int(state["k"]) != self.k:
            raise ValueError(
                f"k-NN graph mismatch: checkpoint {tuple(state['idx'].shape)} k={state['k']}, "
                f"this run {tuple(self.idx.shape)} k={self.k}"
            )
        self.idx.copy_(state["idx"])
        self.sims.copy_(state["sims"])
        if self.kth_sims is not None:
            self.kth_sims.copy_(state["kth_sims"])


def normalised_rows(rows: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
    """``rows`` divided by their given ``norms`` (zero rows stay zero), in the rows' dtype."""
    return (rows.float() / norms.clamp_min(_EPS).unsqueeze(1)).to(rows.dtype)


def _moved_scores(
    live_rows: torch.Tensor, centres: torch.Tensor, norms: torch.Tensor | None, cols: torch.Tensor,
    alive: torch.Tensor | None,
) -> torch.Tensor:
    """[R, len(cols)] cosine scores of the moved units against the units ``cols``; -inf at a unit itself and,
    when ``alive`` is given (``cols`` = every unit), at dead units."""
    keys = centres if alive is not None else rows_of(centres, cols)
    queries = rows_of(centres, live_rows)
    if norms is not None:
        queries = normalised_rows(queries, rows_of(norms, live_rows))
    scores = (queries.to(keys.dtype) @ keys.t()).float()
    if norms is not None:
        scores.div_(rows_of(norms, cols).clamp_min(_EPS))
    if alive is not None and not bool(alive.all()):
        scores.masked_fill_(~alive.unsqueeze(0), _NEG_INF)
        own = live_rows
    else:
        own = torch.searchsorted(cols, live_rows)
    scores[torch.arange(live_rows.numel(), device=scores.device), own] = _NEG_INF
    return scores

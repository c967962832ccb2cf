"""KnnGraph: the k nearest neighbours of every unit (sample or cluster centre), kept up to date.

Memory is O(C * k). A step that moves R centres costs one R x C product: the moved units get exact
fresh lists, and every other unit merges the moved units' new similarities into its list. Lists carry
``slack`` spare entries so that a neighbour moving away can be replaced without a full rebuild;
``rebuild`` recomputes every list exactly (blocked, never C x C in memory). When the centres are
RowShards (sharded banks) both go through ``banks/sharded_graph.py``.
"""

from __future__ import annotations

import torch

from streamlabel.banks.knn import topk_inner_product
from streamlabel.banks.row_shards import RowShards
from streamlabel.banks.sharded_graph import rebuild_sharded, refresh_sharded

_NEG_INF = float("-inf")


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
    ) -> None:
        self.k = int(k)
        self.width = int(k + slack)
        self.backend = backend
        self.block_size = block_size
        self.idx = torch.full((capacity, self.width), -1, dtype=torch.long, device=device)
        self.sims = torch.full((capacity, self.width), _NEG_INF, dtype=torch.float32, device=device)

    @property
    def capacity(self) -> int:
        return self.idx.shape[0]

    def neighbors(self, rows: torch.Tensor, k: int | None = None) -> torch.Tensor:
        """The first k (default: the graph's k) neighbour ids of ``rows``; -1 where a list is short."""
        return self.idx[rows, : (self.k if k is None else k)]

    def rebuild(self, centres: torch.Tensor | RowShards, alive: torch.Tensor) -> None:
        """Exact lists for every alive unit (a full k-NN pass over the alive centres)."""
        if isinstance(centres, RowShards):
            rebuild_sharded(self, centres, alive)
            return
        self.idx.fill_(-1)
        self.sims.fill_(_NEG_INF)
        rows = alive.nonzero().flatten()
        if rows.numel() == 0:
            return
        sims, idx = topk_inner_product(
            centres[rows], centres, self.width, query_ids=rows, valid=alive,
            block_size=self.block_size, backend=self.backend if bool(alive.all()) else "torch",
        )
        self.idx[rows] = idx
        self.sims[rows] = sims

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

    def refresh(self, rows: torch.Tensor, centres: torch.Tensor | RowShards, alive: torch.Tensor) -> None:
        """Bring the lists up to date after the centres of ``rows`` changed (or rows died / were born)."""
        if isinstance(centres, RowShards):
            refresh_sharded(self, rows, centres, alive)
            return
        rows = torch.unique(rows)
        num_alive = int(alive.sum())
        if rows.numel() == 0:
            return
        if rows.numel() * 4 > num_alive:
            self.rebuild(centres, alive)
            return
        changed, live_rows = self.forget(rows, alive)
        if live_rows.numel() == 0:
            return
        # similarities of the moved units to every unit: [R, C]
        new_sims = (centres[live_rows] @ centres.t()).float()
        new_sims.masked_fill_(~alive.unsqueeze(0), _NEG_INF)
        new_sims[torch.arange(live_rows.numel(), device=rows.device), live_rows] = _NEG_INF
        fresh_sims, fresh_idx = torch.topk(new_sims, min(self.width, new_sims.shape[1]), dim=1)
        fresh_idx.masked_fill_(torch.isinf(fresh_sims), -1)
        self.idx[live_rows, : fresh_idx.shape[1]] = fresh_idx
        self.sims[live_rows, : fresh_sims.shape[1]] = fresh_sims
        # every other alive unit merges the moved units into its list; only units whose list a moved unit
        # can enter (a similarity >= the list's weakest entry, or a free slot) change, so only they are merged
        weakest = self.sims.min(dim=1).values
        enters = (new_sims >= weakest.unsqueeze(0)).any(dim=0)
        other_rows = (alive & ~changed & enters).nonzero().flatten()
        if other_rows.numel() == 0:
            return
        cand_sims = torch.cat([self.sims[other_rows], new_sims[:, other_rows].t()], dim=1)
        cand_idx = torch.cat([self.idx[other_rows], live_rows.unsqueeze(0).expand(other_rows.numel(), -1)], dim=1)
        top_sims, pos = torch.topk(cand_sims, self.width, dim=1)
        top_idx = cand_idx.gather(1, pos)
        top_idx.masked_fill_(torch.isinf(top_sims), -1)
        self.sims[other_rows] = top_sims
        self.idx[other_rows] = top_idx

    def state_dict(self) -> dict:
        return {"idx": self.idx.clone(), "sims": self.sims.clone(), "k": self.k}

    def load_state_dict(self, state: dict) -> None:
        if tuple(state["idx"].shape) != tuple(self.idx.shape) or int(state["k"]) != self.k:
            raise ValueError(
                f"k-NN graph mismatch: checkpoint {tuple(state['idx'].shape)} k={state['k']}, "
                f"this run {tuple(self.idx.shape)} k={self.k}"
            )
        self.idx.copy_(state["idx"])
        self.sims.copy_(state["sims"])

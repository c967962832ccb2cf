"""Rolling re-embedding of the target bank: a full fresh pass spread over the steps of an epoch.

Offline methods (and ``refresh_source: extract``) stop at every refresh to embed the whole target set
again, because momentum-blended training-mode features of successive models drift apart. With
``train.rolling_refresh: s`` the trainer instead re-embeds, at every step, the ceil(s * N / iters_per_epoch)
rows that were embedded longest ago (evaluation mode, no gradient) and writes them into the policy's bank
*in place of* their old value (momentum 0), through the policy's own ``step``, so online labels follow the
fresh rows at once. s = 1 renews every row once per epoch, at the cost of one extraction, without a pause.

The rows go round one seeded permutation of the target set, so the next rows are always the stalest; the
position in it is part of the checkpoint and a resumed run re-embeds exactly the rows it would have.
With several processes each embeds its own slice of the step's rows and the features are gathered, so every
process writes the same rows (the banks stay identical).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from streamlabel.data import ReidImageDataset

__all__ = ["RollingRefresh", "replacing_rows"]


@contextmanager
def replacing_rows(policy: object) -> Iterator[None]:
    """Inside the block every feature bank of ``policy`` (attributes with ``momentum`` and ``momentum_rows``:
    ``bank``, inclr's ``part_bank``) writes new rows in place of the old (momentum 0); restored after."""
    banks = [bank for bank in vars(policy).values() if hasattr(bank, "momentum_rows") and hasattr(bank, "momentum")]
    saved = [bank.momentum for bank in banks]
    try:
        for bank in banks:
            bank.momentum = 0.0
        yield
    finally:
        for bank, momentum in zip(banks, saved, strict=True):
            bank.momentum = momentum


class RollingRefresh:
    """Which target rows to re-embed at each step, and their images; the position survives a checkpoint."""

    def __init__(self, samples: list, transform: Callable, *, share: float, iters_per_epoch: int, world: int,
                 rank: int, seed: int) -> None:
        if not 0.0 < share <= 1.0:
            raise ValueError(f"train.rolling_refresh must be in (0, 1] (0 = off), got {share}")
        self.dataset = ReidImageDataset(samples, transform)
        self.num_rows = len(samples)
        wanted = math.ceil(share * self.num_rows / max(1, iters_per_epoch))
        self.per_process = max(1, math.ceil(wanted / world))
        self.world, self.rank = world, rank
        self.order = torch.randperm(self.num_rows, generator=torch.Generator().manual_seed(int(seed)))
        self.cursor = 0  # rows re-embedded so far (all processes together)

    @property
    def rows_per_step(self) -> int:
        """Rows re-embedded per step by all processes together."""
        return self.per_process * self.world

    def next_rows(self) -> torch.Tensor:
        """The step's rows (all processes, in gather order), the stalest first; advances the position."""
        picked = self.order[(self.cursor + torch.arange(self.rows_per_step)) % self.num_rows]
        self.cursor += self.rows_per_step
        return picked

    def own_batch(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """The evaluation-transformed images of this process's slice of ``rows`` (one batch dict)."""
        mine = rows[self.rank * self.per_process:(self.rank + 1) * self.per_process].tolist()
        items = [self.dataset[i] for i in mine]
        return {"img": torch.stack([item["img"] for item in items]),
                "pid": torch.tensor([item["pid"] for item in items]),
                "camid": torch.tensor([item["camid"] for item in items]),
                "index": torch.tensor(mine)}

    def state_dict(self) -> dict:
        return {"cursor": self.cursor, "num_rows": self.num_rows}

    def load_state_dict(self, state: dict) -> None:
        if int(state["num_rows"]) != self.num_rows:
            raise ValueError(f"the checkpoint's rolling refresh went over {state['num_rows']} target rows, this "
                             f"run has {self.num_rows}")
        self.cursor = int(state["cursor"])

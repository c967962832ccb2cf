"""``train.smoke: true``: any config end to end in seconds, to check a setup before the real run.

Every phase is cut, not skipped: ``SMOKE_PRETRAIN`` pretraining iterations, ``SMOKE_ITERATIONS`` adaptation
iterations in epochs of ``SMOKE_PER_EPOCH``, no evaluation before the final one; every dataset keeps the
images of its first ``SMOKE_IDS`` identities (train: dense ids 0..; query and gallery: the smallest raw ids,
and at most ``SMOKE_EXTRA`` junk / distractor images). The resolved config.yaml shows the cut schedule.
"""

from __future__ import annotations

from dataclasses import replace

from streamlabel.data.samples import ReidDataset

__all__ = ["SMOKE_IDS", "smoke_dataset", "smoke_schedule"]

SMOKE_ITERATIONS, SMOKE_PER_EPOCH, SMOKE_PRETRAIN = 4, 2, 2
SMOKE_IDS = 16  # a P x K batch of 64 with K = 4 needs 16 identities
SMOKE_EXTRA = 32


def smoke_schedule(cfg: dict) -> None:
    """Cut the schedule of ``cfg`` in place (only ever shortened)."""
    train = cfg["train"]
    train["iterations"] = min(train["iterations"], SMOKE_ITERATIONS)
    train["iters_per_epoch"] = min(train["iters_per_epoch"], SMOKE_PER_EPOCH)
    train["pretrain_iterations"] = min(train["pretrain_iterations"], SMOKE_PRETRAIN)
    train["eval_every_epochs"] = 0
    cfg["eval"]["before_training"] = False


def smoke_dataset(dataset: ReidDataset, num_ids: int = SMOKE_IDS) -> ReidDataset:
    """The images of the first ``num_ids`` identities of every split (see the module docstring)."""
    train = [s for s in dataset.train if 0 <= s.pid < num_ids]
    kept = sorted({s.pid for s in dataset.query if s.pid > 0})[:num_ids]
    chosen = set(kept)
    query = [s for s in dataset.query if s.pid in chosen]
    gallery = [s for s in dataset.gallery if s.pid in chosen]
    gallery += [s for s in dataset.gallery if s.pid not in chosen and s.pid <= 0][:SMOKE_EXTRA]
    return replace(dataset, train=train, query=query, gallery=gallery)

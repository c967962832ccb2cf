"""train.rolling_refresh (engine/rolling_refresh.py): each step re-embeds the stalest target rows in
evaluation mode and writes them in place of the bank rows; the position survives a crash exactly.
Mutants killed: the bank blends instead of replacing (momentum kept), the rolling step never runs, the
rows do not go round (always the same rows), the position is not checkpointed."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from streamlabel.engine.rolling_refresh import RollingRefresh, replacing_rows
from streamlabel.engine.setup import eval_loader
from streamlabel.engine.trainer import Trainer
from streamlabel.evaluation import extract_features
from streamlabel.launch import train as train_entry
from tests.training.tiny_runs import REPO, crash_then_resume, tiny_overrides, with_overrides

ROLLING = ("train.rolling_refresh=1.0", "policy.momentum=0.5")


def _args(out: Path, data: Path, resume: bool = False) -> argparse.Namespace:
    return argparse.Namespace(config=REPO / "configs" / "demo.yaml", resume=resume, cpu=True, quiet=True,
                              overrides=with_overrides(tiny_overrides(out, data), *ROLLING))


def test_rows_go_round_the_stalest_first() -> None:
    class Sample:  # the fields ReidImageDataset reads are not touched by next_rows
        path, pid, camid = "x", 0, 0

    rolling = RollingRefresh([Sample()] * 10, lambda img: img, share=1.0, iters_per_epoch=4, world=2, rank=1,
                             seed=0)
    assert rolling.per_process == 2 and rolling.rows_per_step == 4  # ceil(10 / 4) = 3 -> 2 per process
    seen = torch.cat([rolling.next_rows() for _ in range(5)])  # 20 rows: every row exactly twice
    assert torch.equal(torch.bincount(seen, minlength=10), torch.full((10,), 2))
    assert torch.equal(seen[:10].sort().values, torch.arange(10))  # a full round before any row repeats
    state = rolling.state_dict()
    other = RollingRefresh([Sample()] * 10, lambda img: img, share=1.0, iters_per_epoch=4, world=2, rank=1, seed=0)
    other.load_state_dict(state)
    assert torch.equal(other.next_rows(), rolling.next_rows())
    with pytest.raises(ValueError, match="target rows"):
        RollingRefresh([Sample()] * 9, lambda img: img, share=1.0, iters_per_epoch=4, world=2, rank=1,
                       seed=0).load_state_dict(state)
    with pytest.raises(ValueError, match="rolling_refresh"):
        RollingRefresh([Sample()] * 9, lambda img: img, share=1.5, iters_per_epoch=4, world=1, rank=0, seed=0)


def test_replacing_rows_sets_momentum_zero_and_restores_it() -> None:
    from streamlabel.methods import build_policy

    policy = build_policy("hcd", num_samples=8, feat_dim=4, momentum=0.5, k=3)
    with replacing_rows(policy):
        assert policy.bank.momentum == 0.0
    assert policy.bank.momentum == 0.5


def test_bank_rows_are_fresh_evaluation_features(tmp_path: Path, synthetic_root: Path) -> None:
    seen = {}
    original = Trainer._rolling_step

    def spy(self: Trainer) -> None:
        seen["rows"] = self.rolling.order[
            (self.rolling.cursor + torch.arange(self.rolling.rows_per_step)) % self.rolling.num_rows]
        original(self)
        seen["trainer"] = self

    Trainer._rolling_step = spy
    try:
        train_entry.run(_args(tmp_path / "run", synthetic_root))
    finally:
        Trainer._rolling_step = original
    trainer = seen["trainer"]
    rows = seen["rows"]  # the last step's rows: written after the last optimiser step, by the final model
    samples = [trainer.target.train[i] for i in rows.tolist()]
    fresh = extract_features(trainer.net, eval_loader(samples, trainer.cfg), progress=False)["feats"]
    bank = trainer.policy.bank.features[rows].float()
    torch.testing.assert_close(bank, fresh, atol=1e-5, rtol=0)
    iterations = trainer.cfg["train"]["iterations"]
    assert trainer.rolling.cursor == iterations * trainer.rolling.rows_per_step


def test_resume_with_rolling_refresh_is_exact(tmp_path: Path, synthetic_root: Path) -> None:
    full, resumed = crash_then_resume(lambda out, resume: _args(out, synthetic_root, resume), tmp_path,
                                      at=("adapt", 0, 0))
    for key in ("labels_sha", "bank_sha", "adapted_mAP"):
        assert resumed[key] == full[key], key

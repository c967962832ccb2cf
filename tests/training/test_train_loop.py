"""End-to-end training on a tiny synthetic config: weights and banks move, resume is exact."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from streamlabel.engine.checkpoint import load_checkpoint
from streamlabel.engine.trainer import Trainer
from streamlabel.launch import train as train_entry
from tests.training.tiny_runs import REPO, crash_then_resume, tiny_overrides


def _args(overrides: list[str], resume: bool = False) -> argparse.Namespace:
    return argparse.Namespace(config=REPO / "configs" / "demo.yaml", overrides=overrides, resume=resume, cpu=True,
                              quiet=True)


def test_training_changes_weights_and_banks(tmp_path: Path, synthetic_root: Path) -> None:
    seen = {}
    original_init = Trainer._init_policy

    def spy_init(self: Trainer) -> None:
        original_init(self)
        seen["bank"] = self.policy.bank.features.clone()
        seen["weights"] = {k: v.clone() for k, v in self.net.state_dict().items()}

    Trainer._init_policy = spy_init
    try:
        results = train_entry.run(_args(tiny_overrides(tmp_path / "run", synthetic_root)))
    finally:
        Trainer._init_policy = original_init
    for key in ("source_mAP", "adapted_mAP", "adapted_rank1", "bcubed_f", "seconds"):
        assert key in results
    state = load_checkpoint(tmp_path / "run" / "checkpoints", fingerprint=None)
    assert state["phase"] == "adapt" and state["epoch"] == 1
    bank = state["policy"]["bank"]["features"]
    assert not torch.equal(bank, seen["bank"]), "policy.step never moved the bank"
    assert torch.allclose(bank.norm(dim=1), torch.ones(bank.shape[0]), atol=1e-4)
    weights = state["model"].items()
    changed = [k for k, v in weights if v.dtype.is_floating_point and not torch.equal(v, seen["weights"][k])]
    assert changed, "the optimiser step changed no weight"


def test_resume_after_crash_is_exact(tmp_path: Path, synthetic_root: Path) -> None:
    full, resumed = crash_then_resume(lambda out, resume: _args(tiny_overrides(out, synthetic_root), resume), tmp_path)
    for key in ("labels_sha", "bank_sha", "adapted_mAP", "bcubed_f"):
        assert resumed[key] == full[key], key
    a = load_checkpoint(tmp_path / "full" / "checkpoints", fingerprint=None)["model"]
    b = load_checkpoint(tmp_path / "crashed" / "checkpoints", fingerprint=None)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_extends_a_finished_run_exactly(tmp_path: Path, synthetic_root: Path) -> None:
    """--resume with a larger train.iterations continues the finished run and ends where a run planned that
    long from the start ends; a smaller one than the checkpoint's iteration is refused."""
    def overrides(out: Path, iterations: int) -> list[str]:
        return [*tiny_overrides(out, synthetic_root), f"train.iterations={iterations}"]

    straight = train_entry.run(_args(overrides(tmp_path / "straight", 6)))
    train_entry.run(_args(overrides(tmp_path / "extended", 4)))
    extended = train_entry.run(_args(overrides(tmp_path / "extended", 6), resume=True))
    for key in ("labels_sha", "bank_sha", "adapted_mAP"):
        assert extended[key] == straight[key], key
    assert [h["epoch"] for h in extended["history"]] == [h["epoch"] for h in straight["history"]]
    code = train_entry.main(["--config", str(REPO / "configs" / "demo.yaml"), "--cpu", "--quiet", "--resume",
                             *overrides(tmp_path / "extended", 2)])
    assert code == 2


def test_resume_refuses_other_config(tmp_path: Path, synthetic_root: Path) -> None:
    overrides = tiny_overrides(tmp_path / "run", synthetic_root)
    train_entry.run(_args(overrides))
    code = train_entry.main(["--config", str(REPO / "configs" / "demo.yaml"), "--cpu", "--quiet", "--resume",
                             *overrides, "policy.sigma=0.3"])
    assert code == 2


def test_json_last_line(tmp_path: Path, synthetic_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = train_entry.main(["--config", str(REPO / "configs" / "demo.yaml"), "--cpu", "--quiet", "--json",
                             *tiny_overrides(tmp_path / "run", synthetic_root)])
    assert code == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    payload = json.loads(last)
    assert {"source_mAP", "adapted_mAP", "adapted_rank1", "bcubed_f", "seconds"} <= set(payload)


def test_evaluate_a_checkpoint(tmp_path: Path, synthetic_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from streamlabel.launch.cli import main

    results = train_entry.run(_args(tiny_overrides(tmp_path / "run", synthetic_root)))
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(tmp_path / "run" / "checkpoints"), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scored["mAP"] == pytest.approx(results["adapted_mAP"], abs=1e-6)  # same model, data and protocol
    assert main(["evaluate", "--checkpoint", str(tmp_path / "missing")]) == 2


def test_tensorboard_events_written(tmp_path: Path, synthetic_root: Path) -> None:
    pytest.importorskip("tensorboard")
    overrides = [o for o in tiny_overrides(tmp_path / "run", synthetic_root) if not o.startswith("log.")]
    train_entry.run(_args([*overrides, "log.tensorboard=true"]))
    events = list((tmp_path / "run" / "logs").rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"clusters", "outlier_frac", "bcubed_f", "adapt/loss", "lr"} <= tags, tags


def test_resume_from_a_mid_epoch_pretrain_checkpoint_is_exact(tmp_path: Path, synthetic_root: Path) -> None:
    """``train.checkpoint_every_iters=1``: a crash right after the checkpoint taken inside the source warm-up
    epoch resumes there (the source memory is restored, not rebuilt) and ends as the uninterrupted run."""
    def make_args(out: Path, resume: bool) -> argparse.Namespace:
        return _args([*tiny_overrides(out, synthetic_root), "train.checkpoint_every_iters=1"], resume)

    full, resumed = crash_then_resume(make_args, tmp_path, at=("pretrain", 0, 1))
    for key in ("loss_trace", "labels_sha", "bank_sha", "source_mAP", "adapted_mAP", "bcubed_f"):
        assert resumed[key] == full[key], key


def test_checkpoint_every_epochs_saves_every_nth_and_the_last_epoch(tmp_path: Path, synthetic_root: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import streamlabel.engine.trainer as trainer_module

    written: list[str] = []
    original = trainer_module.save_checkpoint

    def recording(path, state, **kwargs):
        written.append(Path(path).name)
        return original(path, state, **kwargs)

    monkeypatch.setattr(trainer_module, "save_checkpoint", recording)
    overrides = [*tiny_overrides(tmp_path / "run", synthetic_root), "train.iterations=10",
                 "train.pretrain_iterations=6", "train.checkpoint_every_epochs=2"]
    train_entry.run(_args(overrides))
    # 3 pretrain epochs (0-2) and 5 adaptation epochs (0-4) of 2 iterations: epochs 1, 3 and the last ones
    assert written == ["pretrain_epoch0001.pt", "pretrain_epoch0002.pt", "adapt_epoch0001.pt",
                       "adapt_epoch0003.pt", "adapt_epoch0004.pt"]


def test_no_evaluation_before_training(tmp_path: Path, synthetic_root: Path) -> None:
    """eval.before_training: false skips the source-only scoring (the only evaluation is the final one)."""
    calls = []
    original = Trainer.evaluate

    def counting(self: Trainer) -> dict:
        calls.append(1)
        return original(self)

    Trainer.evaluate = counting
    try:
        results = train_entry.run(_args([*tiny_overrides(tmp_path / "run", synthetic_root),
                                         "eval.before_training=false", "train.eval_every_epochs=0"]))
    finally:
        Trainer.evaluate = original
    assert "source_mAP" not in results and "adapted_mAP" in results and len(calls) == 1

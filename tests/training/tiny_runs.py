"""A tiny synthetic config that trains in seconds on the CPU, and the runs the training tests build
on it (the fixtures are in conftest.py)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from streamlabel.engine.phases import Phase
from streamlabel.engine.trainer import Trainer
from streamlabel.launch import train as train_entry

REPO = Path(__file__).resolve().parents[2]


def tiny_overrides(tmp: Path, data_dir: Path) -> list[str]:
    sizes = (
        "num_train_ids: 12, num_test_ids: 6, num_cams: 2, images_per_cam: 2, height: 32, width: 16"
    )
    return [
        f"output_dir={tmp}",
        f"data.source={{name: synthetic, root: {data_dir}/source, "
        f"kwargs: {{domain: source, {sizes}}}}}",
        f"data.target={{name: synthetic, root: {data_dir}/target, "
        f"kwargs: {{domain: target, {sizes}}}}}",
        "data.height=32",
        "data.width=16",
        "data.num_instances=2",
        "data.num_workers=0",
        "train.source_batch=8",
        "train.target_batch=8",
        "train.pretrain_iterations=2",
        "train.iterations=4",
        "train.iters_per_epoch=2",
        "train.eval_every_epochs=0",
        "log.tensorboard=false",
        "cpu_threads=1",
        "eval.batch_size=32",
        "model.name=osnet_x0_25",
    ]


def with_overrides(base: list[str], *extra: str) -> list[str]:
    """``base`` with the keys ``extra`` sets replaced by ``extra`` (the command line refuses a key
    twice)."""
    keys = {item.partition("=")[0] for item in extra}
    return [item for item in base if item.partition("=")[0] not in keys] + list(extra)


def train_tiny(
    out: Path, data_dir: Path, *extra: str, config: Path = REPO / "configs" / "demo.yaml"
) -> dict:
    """One tiny in-process run of ``config`` (``tiny_overrides``, with ``extra`` on top); returns
    its results."""
    overrides = with_overrides(tiny_overrides(out, data_dir), *extra)
    return train_entry.run(
        argparse.Namespace(config=config, overrides=overrides, resume=False, cpu=True, quiet=True)
    )


def crash_then_resume(
    make_args: Callable[[Path, bool], argparse.Namespace],
    tmp: Path,
    at: tuple[str, int, int] = ("adapt", 0, 0),
) -> tuple[dict, dict]:
    """Results of an uninterrupted run (``tmp/full``) and of a run that crashes right after the
    checkpoint ``at`` = (phase, epoch, iteration; 0 = the epoch-end one) and is resumed
    (``tmp/crashed``); ``make_args(out_dir, resume)`` builds the args."""
    full = train_entry.run(make_args(tmp / "full", False))

    class Crash(RuntimeError):
        pass

    original_save = Trainer._save

    def crashing_save(self: Trainer, phase: Phase, epoch: int, iteration: int = 0) -> None:
        original_save(self, phase, epoch, iteration)
        if (phase.name, epoch, iteration) == at:
            raise Crash(f"simulated crash after the checkpoint {at}")

    Trainer._save = crashing_save
    try:
        with pytest.raises(Crash):
            train_entry.run(make_args(tmp / "crashed", False))
    finally:
        Trainer._save = original_save
    return full, train_entry.run(make_args(tmp / "crashed", True))


def record_refreshes(monkeypatch: pytest.MonkeyPatch, policy_cls: type) -> dict:
    """Count the trainer's target passes and record, on ``policy_cls``, each ``reload_bank`` (the
    fresh features) and each ``refresh`` (the bank it clusters); returns the live record."""
    seen: dict = {"passes": 0, "reloads": [], "refreshed": []}
    target_pass, reload_bank, refresh = Trainer._target_pass, policy_cls.reload_bank, policy_cls.refresh

    def counting_pass(self: Trainer):
        seen["passes"] += 1
        return target_pass(self)

    def recording_reload(self, features: torch.Tensor, **extra: torch.Tensor) -> None:
        seen["reloads"].append(features.clone())
        reload_bank(self, features, **extra)

    def recording_refresh(self) -> None:
        seen["refreshed"].append(self.bank.features.clone())
        refresh(self)

    monkeypatch.setattr(Trainer, "_target_pass", counting_pass)
    monkeypatch.setattr(policy_cls, "reload_bank", recording_reload)
    monkeypatch.setattr(policy_cls, "refresh", recording_refresh)
    return seen

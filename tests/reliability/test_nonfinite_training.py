"""A NaN appearing mid-training: skipped (banks untouched) or a clean stop, as ``train.on_nonfinite`` says."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

import streamlabel.engine.trainer as trainer_module
from streamlabel.engine.checkpoint import load_checkpoint
from streamlabel.engine.trainer import NonFiniteError, Trainer
from streamlabel.launch import cli
from streamlabel.launch import train as train_entry
from tests.reliability.reliability_inputs import DEMO, tiny_train_overrides

POISONED_CALL = 4  # train-mode forward passes: 2 pre-training iterations, then the 2nd adaptation iteration


@pytest.fixture
def poisoned(monkeypatch: pytest.MonkeyPatch) -> dict:
    """The model's 4th training forward pass returns NaN; every policy.step input is recorded."""
    seen: dict = {"steps": [], "forward": 0}
    build = trainer_module.build_network

    def build_poisoned(cfg: dict) -> torch.nn.Module:
        model = build(cfg)

        def hook(module: torch.nn.Module, args: tuple, output):
            if not module.training:
                return output
            seen["forward"] += 1
            if seen["forward"] != POISONED_CALL:
                return output
            if isinstance(output, dict):
                return {k: v * float("nan") if torch.is_tensor(v) else v for k, v in output.items()}
            if isinstance(output, tuple | list):
                return type(output)(v * float("nan") for v in output)
            return output * float("nan")

        model.register_forward_hook(hook)
        return model

    step = Trainer._init_policy

    def init_and_spy(self: Trainer) -> None:
        step(self)
        original = self.policy.step

        def spy(indices, features, cameras=None):
            seen["steps"].append(bool(torch.isfinite(features).all()))
            return original(indices, features, cameras)

        self.policy.step = spy

    monkeypatch.setattr(trainer_module, "build_network", build_poisoned)
    monkeypatch.setattr(Trainer, "_init_policy", init_and_spy)
    return seen


def _args(overrides: list[str]) -> argparse.Namespace:
    return argparse.Namespace(config=DEMO, overrides=overrides, resume=False, cpu=True, quiet=True)


def test_nan_step_is_skipped_and_never_reaches_the_banks(tmp_path: Path, poisoned: dict,
                                                         capsys: pytest.CaptureFixture) -> None:
    overrides = [*tiny_train_overrides(tmp_path / "run", tmp_path / "data"), "train.on_nonfinite=skip"]
    results = train_entry.run(_args(overrides))
    assert results["skipped_steps"] == 1
    assert poisoned["steps"] == [True, True, True], "3 of 4 adaptation steps reach the policy, all finite"
    assert "non-finite loss or features: step skipped, banks untouched (1 so far)" in capsys.readouterr().out
    state = load_checkpoint(tmp_path / "run" / "checkpoints", fingerprint=None)
    assert bool(torch.isfinite(state["policy"]["bank"]["features"]).all())
    assert all(bool(torch.isfinite(v).all()) for v in state["model"].values() if v.is_floating_point())


def test_nan_step_stops_the_run_with_a_message(tmp_path: Path, poisoned: dict) -> None:
    overrides = [*tiny_train_overrides(tmp_path / "run", tmp_path / "data"), "train.on_nonfinite=stop"]
    with pytest.raises(NonFiniteError, match=r"non-finite loss or features; stopping \(train.on_nonfinite: stop\). "
                                             r"The banks were not updated with this batch."):
        train_entry.run(_args(overrides))
    assert poisoned["steps"] == [True]  # the first adaptation step only
    state = load_checkpoint(tmp_path / "run" / "checkpoints", fingerprint=None)  # the pre-training one survives
    assert state["phase"] == "pretrain"
    assert all(bool(torch.isfinite(v).all()) for v in state["model"].values() if v.is_floating_point())


def test_stop_through_the_command_line_is_one_line(tmp_path: Path, poisoned: dict,
                                                   capsys: pytest.CaptureFixture) -> None:
    overrides = [*tiny_train_overrides(tmp_path / "run", tmp_path / "data"), "train.on_nonfinite=stop"]
    assert cli.main(["train", "--config", str(DEMO), "--cpu", "--quiet", *overrides]) == 2
    err = capsys.readouterr().err
    assert "streamlabel train: error: non-finite loss or features; stopping" in err and "Traceback" not in err

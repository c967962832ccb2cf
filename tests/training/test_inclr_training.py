"""INCLR end to end on the tiny synthetic config: parts reach the policy and are trained, the mean teacher
is checkpointed."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from streamlabel.engine.checkpoint import load_checkpoint
from streamlabel.engine.trainer import Trainer
from streamlabel.launch import train as train_entry
from tests.training.tiny_runs import REPO, crash_then_resume, tiny_overrides


def _args(out: Path, data: Path, resume: bool = False) -> argparse.Namespace:
    # tiny_overrides swaps the model name, which drops the model's kwargs: ask for the parts again
    overrides = [*tiny_overrides(out, data), "model.kwargs={parts: 3}", "policy.k1=10", "policy.k2=3",
                 "policy.min_samples=2"]
    return argparse.Namespace(config=REPO / "configs" / "inclr_demo.yaml", overrides=overrides, resume=resume,
                              cpu=True, quiet=True)


def test_inclr_demo_trains_with_parts_and_teacher(tmp_path: Path, synthetic_root: Path) -> None:
    seen = {}
    original_init = Trainer._init_policy

    def spy_init(self: Trainer) -> None:
        original_init(self)
        seen["parts"] = self.policy.part_features().clone()
        seen["student"] = {k: v.clone() for k, v in self.net.state_dict().items()}

    args = _args(tmp_path / "run", synthetic_root)
    Trainer._init_policy = spy_init
    try:
        results = train_entry.run(args)
    finally:
        Trainer._init_policy = original_init
    assert "adapted_mAP" in results and results["clusters"] is not None
    state = load_checkpoint(tmp_path / "run" / "checkpoints", fingerprint=None)
    assert state["phase"] == "adapt" and state["config"]["policy"]["name"] == "inclr"
    part_bank = state["policy"]["extra"]["part_bank"]["features"]
    n = seen["parts"].shape[0]
    assert seen["parts"].shape == (n, 3, 512) and part_bank.shape == (n * 3, 512)
    assert not torch.equal(part_bank.view(n, 3, 512), seen["parts"]), "policy.step never moved the part bank"
    teacher = state["loss_terms"]["terms.inaccuracy_kl._extra_state"]["teacher"]
    assert teacher is not None, "no mean teacher in the checkpoint"
    key = "conv1.conv.weight"
    start, student = seen["student"][key], state["model"][key]
    # the EMA teacher (m = 0.999) moved from the starting student, far less than the student did
    moved, lag = (teacher[key] - start).norm(), (student - start).norm()
    assert 0 < moved < 0.1 * lag
    # the part loss (part_ce) trained the part BN: its affine weight is touched by nothing else
    assert not torch.equal(state["model"]["part_head.norm.weight"], seen["student"]["part_head.norm.weight"])


@pytest.mark.slow  # three tiny runs
def test_inclr_resume_after_crash_is_exact(tmp_path: Path, synthetic_root: Path) -> None:
    full, resumed = crash_then_resume(lambda out, resume: _args(out, synthetic_root, resume), tmp_path)
    for key in ("labels_sha", "bank_sha", "adapted_mAP", "bcubed_f"):
        assert resumed[key] == full[key], key
    a, b = (load_checkpoint(tmp_path / run / "checkpoints", fingerprint=None) for run in ("full", "crashed"))
    teacher_a, teacher_b = (s["loss_terms"]["terms.inaccuracy_kl._extra_state"]["teacher"] for s in (a, b))
    assert all(torch.equal(teacher_a[k], teacher_b[k]) for k in teacher_a)  # the mean teacher came back exactly
    assert torch.equal(a["policy"]["extra"]["part_bank"]["features"], b["policy"]["extra"]["part_bank"]["features"])

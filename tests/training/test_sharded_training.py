"""``policy.bank: sharded`` in ``streamlabel train``: the same run as the replicated bank, per-process policy
shards in the checkpoints, exact resume, and a clear refusal of a resume with missing shards or another world."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from streamlabel.engine.checkpoint import CheckpointError, load_checkpoint
from streamlabel.engine.shard_checkpoint import load_policy_shard, save_policy_shard, shard_path
from streamlabel.launch import train as train_entry
from tests.training.test_distributed import _launch
from tests.training.tiny_runs import REPO, crash_then_resume, tiny_overrides

COMPARED = ("loss_trace", "labels_sha", "bank_sha", "bank_sum", "adapted_mAP", "bcubed_f")


def _args(overrides: list[str], resume: bool = False) -> argparse.Namespace:
    """Both sides of every comparison use the paper rules, the ones the sharded bank implements."""
    return argparse.Namespace(config=REPO / "configs" / "demo.yaml", overrides=[*overrides, "policy.dynamics=paper"],
                              resume=resume, cpu=True, quiet=True)


def test_sharded_bank_trains_exactly_like_the_replicated_one(tmp_path: Path, synthetic_root: Path) -> None:
    replicated = train_entry.run(_args(tiny_overrides(tmp_path / "replicated", synthetic_root)))
    sharded = train_entry.run(_args([*tiny_overrides(tmp_path / "sharded", synthetic_root), "policy.bank=sharded"]))
    for key in COMPARED:
        assert sharded[key] == replicated[key], key
    main = load_checkpoint(tmp_path / "sharded" / "checkpoints", fingerprint=None)
    assert main["policy"] is None and main["policy_shards"] == 1  # the rows are in the per-process file
    shard = load_checkpoint(shard_path(tmp_path / "sharded" / "checkpoints" / "adapt_epoch0001.pt", 0),
                            fingerprint=None)
    assert (shard["rank"], shard["world"]) == (0, 1) and "local" in shard["policy"]["bank"]["features"]


def test_sharded_resume_after_crash_is_exact(tmp_path: Path, synthetic_root: Path) -> None:
    def make_args(out: Path, resume: bool) -> argparse.Namespace:
        return _args([*tiny_overrides(out, synthetic_root), "policy.bank=sharded"], resume)

    full, resumed = crash_then_resume(make_args, tmp_path)
    for key in ("labels_sha", "bank_sha", "adapted_mAP", "bcubed_f"):
        assert resumed[key] == full[key], key


def test_sharded_resume_from_a_mid_epoch_checkpoint_is_exact(tmp_path: Path, synthetic_root: Path) -> None:
    """A crash right after the mid-epoch checkpoint of adaptation epoch 1, iteration 1 (policy shard and main
    file written): the resumed run goes on inside that epoch and ends as the uninterrupted one."""
    def make_args(out: Path, resume: bool) -> argparse.Namespace:
        return _args([*tiny_overrides(out, synthetic_root), "policy.bank=sharded", "train.checkpoint_every_iters=1"],
                     resume)

    full, resumed = crash_then_resume(make_args, tmp_path, at=("adapt", 1, 1))
    main = tmp_path / "crashed" / "checkpoints" / "adapt_epoch0001_iter000001.pt"
    assert shard_path(main, 0).is_file()
    for key in COMPARED:
        assert resumed[key] == full[key], key


def test_missing_shard_or_other_world_is_refused(tmp_path: Path) -> None:
    main = tmp_path / "checkpoints" / "adapt_epoch0003.pt"
    save_policy_shard(main, {"bank": torch.ones(2)}, rank=0, world=1, fingerprint="fp")
    assert torch.equal(load_policy_shard(main, rank=0, world=1, saved_world=1, fingerprint="fp")["bank"],
                       torch.ones(2))
    with pytest.raises(CheckpointError, match="written by 2 process.*this run has 1.*--num_processes 2"):
        load_policy_shard(main, rank=0, world=1, saved_world=2, fingerprint="fp")
    with pytest.raises(CheckpointError, match="policy shard of process 1.*missing"):
        load_policy_shard(main, rank=1, world=2, saved_world=2, fingerprint="fp")
    with pytest.raises(CheckpointError, match="different configuration"):
        load_policy_shard(main, rank=0, world=1, saved_world=1, fingerprint="other")


@pytest.mark.slow
def test_two_processes_sharded_equal_two_processes_replicated(tmp_path: Path, synthetic_root: Path) -> None:
    """2 gloo processes, each holding half the bank rows: the same losses, labels and bank bit for bit as the
    2-process replicated run (the trainer also checks after every epoch that both ranks hold the same labels)."""
    extra = ("train.pretrain_iterations=0", "policy.dynamics=paper")
    replicated = _launch(2, tmp_path / "replicated", synthetic_root, extra)
    sharded = _launch(2, tmp_path / "sharded", synthetic_root, (*extra, "policy.bank=sharded"))
    assert sharded["processes"] == 2
    for key in COMPARED:
        assert sharded[key] == replicated[key], key
    for rank in (0, 1):
        assert shard_path(tmp_path / "sharded" / "checkpoints" / "adapt_epoch0001.pt", rank).is_file()

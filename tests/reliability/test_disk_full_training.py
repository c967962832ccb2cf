"""The disk fills up while training saves a checkpoint: one clear error line, the previous checkpoint kept, and
``--resume`` continues from it once there is room again."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import streamlabel.engine.checkpoint as checkpoint_module
from streamlabel.engine.checkpoint import find_latest, load_checkpoint
from streamlabel.engine.phases import Phase
from streamlabel.engine.trainer import Trainer
from streamlabel.launch import cli
from tests.reliability.reliability_inputs import DEMO, tiny_train_overrides


class _FullDisk:
    """A file whose writes fail with ENOSPC after 64 KiB, as a filling disk does."""

    def __init__(self, handle) -> None:
        self._handle, self._written = handle, 0

    def write(self, data) -> int:
        if self._written > 65536:
            raise OSError(errno.ENOSPC, "No space left on device")
        self._written += len(data)
        return self._handle.write(data)

    def __getattr__(self, name: str):
        return getattr(self._handle, name)

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc) -> None:
        self._handle.__exit__(*exc)


def test_disk_full_during_a_training_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture) -> None:
    real_fdopen, real_save = os.fdopen, Trainer._save
    full = {"now": False}

    def save(self: Trainer, phase: Phase, epoch: int) -> None:
        # pre-training saves fine, the first adaptation checkpoint hits a full disk
        full["now"] = phase.name == "adapt"
        real_save(self, phase, epoch)

    monkeypatch.setattr(Trainer, "_save", save)
    monkeypatch.setattr(checkpoint_module.os, "fdopen",
                        lambda fd, mode: _FullDisk(real_fdopen(fd, mode)) if full["now"] else real_fdopen(fd, mode))
    args = ["train", "--config", str(DEMO), "--cpu", "--quiet", *tiny_train_overrides(tmp_path / "run", tmp_path / "d")]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    ckpt = tmp_path / "run" / "checkpoints"
    assert err.startswith(f"streamlabel train: error: writing checkpoint {ckpt / 'adapt_epoch0000.pt'} failed: no "
                          "space left on device"), err
    assert "free; the previous checkpoint pretrain_epoch0000.pt is untouched" in err and "Traceback" not in err
    assert find_latest(ckpt) == ckpt / "pretrain_epoch0000.pt"
    assert sorted(p.name for p in ckpt.iterdir()) == [".streamlabel-checkpoints.json", "latest.txt",
                                                      "pretrain_epoch0000.pt"]  # no temp file left
    assert load_checkpoint(ckpt, fingerprint=None)["phase"] == "pretrain"

    full["now"] = False
    monkeypatch.setattr(Trainer, "_save", real_save)
    monkeypatch.setattr(checkpoint_module.os, "fdopen", real_fdopen)
    assert cli.main([*args, "--resume"]) == 0  # room again: continue from the kept checkpoint
    assert "resumed from pretrain epoch 0" in capsys.readouterr().out
    state = load_checkpoint(ckpt, fingerprint=None)
    assert (state["phase"], state["epoch"]) == ("adapt", 1)

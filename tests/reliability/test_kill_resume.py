"""kill -9 in the middle of an adaptation epoch, then ``--resume``: the same final weights and labels as no crash.

Checkpoints are written at epoch ends (atomically, engine/checkpoint.py); the resumed run restarts the killed
epoch from the last one. Batches, augmentation and RNG are functions of (seed, epoch, slot) and the checkpoint
holds the RNG states, so the replayed epoch is bit-identical to the one the crash cut short.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from streamlabel.engine.checkpoint import find_latest, load_checkpoint
from tests.reliability.reliability_inputs import DEMO, REPO, tiny_train_overrides

HERE = Path(__file__).resolve().parent
ITERS_PER_EPOCH, ITERATIONS = 3, 6  # 1 pre-training epoch, then 2 adaptation epochs of 3 iterations
KILL_AFTER = 5  # adaptation iterations done when the process is killed: 2 of the 3 of epoch 1


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def _train_args(out: Path, data: Path) -> list[str]:
    overrides = tiny_train_overrides(out, data, iterations=ITERATIONS, iters_per_epoch=ITERS_PER_EPOCH)
    return ["--config", str(DEMO), "--cpu", "--quiet", "--json", *overrides]


def _train(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, "-m", "streamlabel.launch.train", *args], env=_env(), cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = next(arg.split("=", 1)[1] for arg in args if arg.startswith("output_dir="))
    return json.loads((REPO / out / "results.json").read_text())  # with the diagnostics the line leaves out


def _kill_mid_epoch(args: list[str], kill_after: int = KILL_AFTER) -> str:
    """Start a run, wait for it to pause after ``kill_after`` adaptation iterations, SIGKILL it; its output."""
    proc = subprocess.Popen([sys.executable, str(HERE / "kill_target.py"), str(kill_after), *args], env=_env(),
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    deadline = time.monotonic() + 300
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("PAUSED-FOR-KILL") or time.monotonic() > deadline:
                break
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    output = "".join(lines)
    assert "PAUSED-FOR-KILL" in output, output[-3000:]
    return output


def _final(out: Path) -> tuple[str, torch.Tensor, dict]:
    """sha256 of the final model weights, the final top-level labels and the checkpoint header fields."""
    state = load_checkpoint(out / "checkpoints", fingerprint=None)
    digest = hashlib.sha256()
    for key, value in sorted(state["model"].items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest(), state["policy"]["label_bank"]["labels"][-1], {"phase": state["phase"],
                                                                             "epoch": state["epoch"]}


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_matches_the_uninterrupted_run(tmp_path: Path) -> None:
    data = tmp_path / "data"
    full = _train(_train_args(tmp_path / "full", data))

    crashed_out = tmp_path / "crashed"
    _kill_mid_epoch(_train_args(crashed_out, data))
    latest = find_latest(crashed_out / "checkpoints")
    assert latest is not None and latest.name == "adapt_epoch0000.pt", latest  # killed inside adaptation epoch 1
    assert not list((crashed_out / "checkpoints").glob(".*streamlabel-tmp"))

    resumed = _train([*_train_args(crashed_out, data), "--resume"])
    for key in ("labels_sha", "bank_sha", "bank_sum", "adapted_mAP", "adapted_rank1", "bcubed_f", "loss_trace"):
        assert resumed[key] == full[key], key
    weights_full, labels_full, where_full = _final(tmp_path / "full")
    weights_resumed, labels_resumed, where_resumed = _final(crashed_out)
    assert where_full == where_resumed == {"phase": "adapt", "epoch": 1}
    assert weights_resumed == weights_full
    assert torch.equal(labels_resumed, labels_full)


@pytest.mark.slow
def test_kill_9_after_a_mid_epoch_checkpoint_resumes_inside_the_epoch(tmp_path: Path) -> None:
    """``train.checkpoint_every_iters=1``: killed during adaptation iteration 2 of epoch 1, the run resumes from
    the checkpoint taken after iteration 1 of that epoch (not from the epoch start) and still ends exactly as
    the uninterrupted run: the checkpoint holds the epoch's sampler labels and the batches already done are
    skipped without being loaded."""
    data = tmp_path / "data"
    every = ("train.checkpoint_every_iters=1",)
    full = _train([*_train_args(tmp_path / "full", data), *every])
    crashed_out = tmp_path / "crashed"
    _kill_mid_epoch([*_train_args(crashed_out, data), *every])
    latest = find_latest(crashed_out / "checkpoints")
    assert latest is not None and latest.name == "adapt_epoch0001_iter000001.pt", latest
    state = load_checkpoint(latest, fingerprint=None)
    assert state["iteration"] == 1 and state["epoch_labels"] is not None
    resumed = _train([*_train_args(crashed_out, data), *every, "--resume"])
    for key in ("labels_sha", "bank_sha", "bank_sum", "adapted_mAP", "adapted_rank1", "bcubed_f", "loss_trace"):
        assert resumed[key] == full[key], key
    weights_full, labels_full, _ = _final(tmp_path / "full")
    weights_resumed, labels_resumed, _ = _final(crashed_out)
    assert weights_resumed == weights_full
    assert torch.equal(labels_resumed, labels_full)

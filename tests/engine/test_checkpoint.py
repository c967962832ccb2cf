"""Checkpoint + RNG state: exact round trips, refusals, rotation, and crash safety (disk full, kill -9)."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from streamlabel.engine import checkpoint as ckpt_mod
from streamlabel.engine.checkpoint import (
    LATEST_NAME,
    WRITTEN_NAME,
    CheckpointError,
    config_diff,
    find_latest,
    load_checkpoint,
    load_checkpoint_with_header,
    save_checkpoint,
)
from streamlabel.engine.rng import capture_rng_state, restore_rng_state

REPO_ROOT = Path(__file__).resolve().parents[2]
TMP = ".streamlabel-tmp"


def _draws() -> tuple:
    """One draw from every generator the RNG state covers."""
    return (torch.rand(5).tolist(), np.random.rand(5).tolist(), [random.random() for _ in range(5)],
            np.random.randn(3).tolist())


def _small_training(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Dropout(0.3), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    return model, opt, sched


def _train_steps(model, opt, sched, n: int) -> None:
    model.train()
    for _ in range(n):
        x = torch.randn(4, 6) + float(np.random.rand()) + random.random()
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


# ----------------------------------------------------------------------------- RNG


def test_rng_restore_replays_the_same_numbers():
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.randn()  # leave a cached gaussian in numpy's legacy state
    state = capture_rng_state()
    first = _draws()
    restore_rng_state(state)
    assert _draws() == first


def test_rng_state_survives_save_and_weights_only_load(tmp_path):
    state = capture_rng_state()
    first = _draws()
    save_checkpoint(tmp_path / "a.pt", {"rng": state}, fingerprint="fp")
    _draws()  # move every generator on
    loaded = load_checkpoint(tmp_path, fingerprint="fp", trusted=False)  # RNG state needs no pickled numpy types
    restore_rng_state(loaded["rng"])
    assert _draws() == first


def test_rng_cuda_states_are_captured_and_restored_when_cuda_is_available(monkeypatch):
    """Faked CUDA: every device's state is captured and set back on its own device index."""
    fake = [torch.full((16,), i, dtype=torch.uint8) for i in range(2)]
    restored = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: fake)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device: restored.__setitem__(device, s.clone()))
    state = capture_rng_state()
    assert [s.tolist() for s in state["cuda"]] == [s.tolist() for s in fake]
    restore_rng_state(state)
    assert sorted(restored) == [0, 1] and torch.equal(restored[1], fake[1])


def test_rng_cuda_state_without_cuda_restores_cpu_and_warns(monkeypatch):
    state = capture_rng_state()
    state["cuda"] = [torch.zeros(16, dtype=torch.uint8)]
    first = _draws()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(RuntimeWarning, match="CUDA is not available"):
        restore_rng_state(state)
    assert _draws() == first


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_rng_real_cuda_round_trip():
    state = capture_rng_state()
    a = torch.rand(4, device="cuda").cpu()
    restore_rng_state(state)
    assert torch.equal(torch.rand(4, device="cuda").cpu(), a)


# ----------------------------------------------------------------------------- round trip


def test_checkpoint_round_trip_resumes_training_bit_exactly(tmp_path):
    model, opt, sched = _small_training()
    _train_steps(model, opt, sched, 3)
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "bank": {"features": torch.randn(10, 4), "labels": torch.arange(10), "np_labels": np.arange(10)},
        "epoch": 3,
        "config": {"lr": 0.1, "policy": {"name": "hcd"}},
        "rng": capture_rng_state(),
    }
    path = save_checkpoint(tmp_path / "ckpt-0003.pt", state, fingerprint="abc123")
    assert path == tmp_path / "ckpt-0003.pt" and find_latest(tmp_path) == path

    _train_steps(model, opt, sched, 4)  # the uninterrupted run
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    expected_lr = sched.get_last_lr()

    header, loaded = load_checkpoint_with_header(tmp_path, fingerprint="abc123")
    assert header["format"] == "streamlabel-checkpoint" and header["version"] == 1
    assert header["fingerprint"] == "abc123" and header["saved_at"]
    model2, opt2, sched2 = _small_training(seed=99)  # different init: everything must come from the file
    model2.load_state_dict(loaded["model"])
    opt2.load_state_dict(loaded["optimizer"])
    sched2.load_state_dict(loaded["scheduler"])
    restore_rng_state(loaded["rng"])
    assert loaded["epoch"] == 3 and loaded["config"] == state["config"]
    assert torch.equal(loaded["bank"]["features"], state["bank"]["features"])
    np.testing.assert_array_equal(loaded["bank"]["np_labels"], np.arange(10))
    _train_steps(model2, opt2, sched2, 4)  # the resumed run
    for k, v in model2.state_dict().items():
        assert torch.equal(v, expected[k]), k
    assert sched2.get_last_lr() == expected_lr


def test_save_rejects_bad_arguments(tmp_path):
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "a.pt", [1, 2], fingerprint="fp")
    with pytest.raises(ValueError):
        save_checkpoint(tmp_path / "a.pt", {}, fingerprint="")
    with pytest.raises(ValueError):
        save_checkpoint(tmp_path / "a.pt", {}, fingerprint="fp", keep=0)
    with pytest.raises(ValueError):
        save_checkpoint(tmp_path / LATEST_NAME, {}, fingerprint="fp")
    with pytest.raises(ValueError, match="directory"):
        save_checkpoint(tmp_path, {}, fingerprint="fp")


# ----------------------------------------------------------------------------- fingerprints


def test_fingerprint_mismatch_is_refused_with_the_config_diff(tmp_path):
    saved_cfg = {"lr": 0.1, "policy": {"name": "hcd", "k": 20, "tau": [0.5, 0.6]}, "epochs": 50, "seed": 0}
    save_checkpoint(tmp_path / "c.pt", {"config": saved_cfg}, fingerprint="a1b2c3d4e5f6a7b8c9d0")
    current = {"lr": 0.1, "policy": {"name": "hcd", "k": 30, "tau": [0.5, 0.7]}, "epochs": 50, "batch": 64}
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path, fingerprint="ffff0000eeee1111", config=current)
    msg = str(info.value)
    assert "was written by a different configuration" in msg
    assert "a1b2c3d4e5f6.." in msg and "ffff0000eeee.." in msg
    assert "start a fresh output_dir or pass the same config" in msg
    assert "differing config keys: batch, policy.k, policy.tau, seed" in msg
    assert "lr" not in msg.split("differing config keys:")[1]
    # without config= the refusal still happens, just without the key list
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "c.pt", fingerprint="other")
    assert "differing config keys" not in str(info.value)
    # fingerprint=None skips the check (inspection)
    assert load_checkpoint(tmp_path, fingerprint=None)["config"] == saved_cfg


def test_config_diff_lists_at_most_ten_keys(tmp_path):
    saved = {f"k{i:02d}": i for i in range(15)}
    save_checkpoint(tmp_path / "c.pt", {"config": saved}, fingerprint="old")
    with pytest.raises(CheckpointError, match=r"k09 and 5 more$"):
        load_checkpoint(tmp_path, fingerprint="new", config={k: v + 1 for k, v in saved.items()})


def test_config_diff_nested_and_type_changes():
    assert config_diff({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 2}}) == []
    assert config_diff({"a": {"b": 1}}, {"a": 5}) == ["a"]
    assert config_diff({"a": 1}, {"a": 1.0}) == ["a"]  # an int turned float is a different config
    assert config_diff({"a": {"b": 1}}, {"a": {"b": 1, "z": {"y": 0}}}) == ["a.z"]


# ----------------------------------------------------------------------------- corrupt / missing


def test_missing_and_empty_targets_raise_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match=r"does not exist"):
        load_checkpoint(tmp_path / "nope.pt", fingerprint=None)
    with pytest.raises(CheckpointError, match=r"no checkpoint in"):
        load_checkpoint(tmp_path, fingerprint=None)
    assert find_latest(tmp_path) is None
    assert issubclass(CheckpointError, RuntimeError)


@pytest.mark.parametrize("kind", ["truncated", "random", "empty", "plain_state_dict", "other_dict"])
def test_non_checkpoint_files_are_refused(tmp_path, kind):
    target = tmp_path / f"{kind}.pt"
    if kind == "truncated":
        good = save_checkpoint(tmp_path / "good.pt", {"w": torch.randn(1000)}, fingerprint="fp")
        target.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "random":
        target.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "empty":
        target.write_bytes(b"")
    elif kind == "plain_state_dict":
        torch.save(torch.nn.Linear(3, 2).state_dict(), target)
    else:
        torch.save({"header": {"format": "something-else"}, "state": {}}, target)
    with pytest.raises(CheckpointError, match=r"is not a streamlabel checkpoint"):
        load_checkpoint(target, fingerprint=None)


def test_newer_format_version_is_refused(tmp_path):
    target = tmp_path / "future.pt"
    torch.save({"header": {"format": "streamlabel-checkpoint", "version": 2, "fingerprint": "fp"}, "state": {}},
               target)
    with pytest.raises(CheckpointError, match="format version 2"):
        load_checkpoint(target, fingerprint="fp")


def test_untrusted_load_refuses_pickled_objects_with_a_clear_message(tmp_path):
    from fractions import Fraction

    save_checkpoint(tmp_path / "n.pt", {"ratio": Fraction(1, 3)}, fingerprint="fp")
    with pytest.raises(CheckpointError, match=r"fractions.Fraction.*trusted=True"):
        load_checkpoint(tmp_path, fingerprint="fp")
    assert load_checkpoint(tmp_path, fingerprint="fp", trusted=True)["ratio"] == Fraction(1, 3)


# ----------------------------------------------------------------------------- pointer and rotation


def test_keep_rotation_and_find_latest(tmp_path):
    for i in range(5):
        save_checkpoint(tmp_path / f"ckpt-{i}.pt", {"i": i}, fingerprint="fp", keep=2)
        assert find_latest(tmp_path) == tmp_path / f"ckpt-{i}.pt"
        assert load_checkpoint(tmp_path, fingerprint="fp")["i"] == i
    assert sorted(p.name for p in tmp_path.iterdir()) == [WRITTEN_NAME, "ckpt-3.pt", "ckpt-4.pt", LATEST_NAME]
    assert (tmp_path / LATEST_NAME).read_text().splitlines() == ["ckpt-4.pt", "ckpt-3.pt"]
    # keep=3 from now on keeps three; overwriting a name already kept does not duplicate it
    save_checkpoint(tmp_path / "ckpt-5.pt", {"i": 5}, fingerprint="fp", keep=3)
    save_checkpoint(tmp_path / "ckpt-5.pt", {"i": 55}, fingerprint="fp", keep=3)
    assert (tmp_path / LATEST_NAME).read_text().splitlines() == ["ckpt-5.pt", "ckpt-4.pt", "ckpt-3.pt"]
    assert load_checkpoint(tmp_path, fingerprint="fp")["i"] == 55


def test_rotation_never_deletes_files_the_pointer_did_not_list(tmp_path):
    (tmp_path / "pretrained.pt").write_bytes(b"user file")
    (tmp_path / "notes.txt").write_text("keep me")
    for i in range(3):
        save_checkpoint(tmp_path / f"ckpt-{i}.pt", {"i": i}, fingerprint="fp", keep=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [WRITTEN_NAME, "ckpt-2.pt", LATEST_NAME, "notes.txt",
                                                          "pretrained.pt"]


def test_rotation_deletes_only_files_it_can_prove_it_wrote(tmp_path):
    """latest.txt lists the user's file, and a kept checkpoint was replaced by another file since: rotation
    removes neither and says why. Mutant killed: rotation trusting the pointer's names (the old rule)."""
    save_checkpoint(tmp_path / "ckpt-0.pt", {"i": 0}, fingerprint="fp", keep=3)
    (tmp_path / "user.pt").write_bytes(b"the user's own file")
    (tmp_path / LATEST_NAME).write_text("ckpt-0.pt\nuser.pt\n")
    save_checkpoint(tmp_path / "ckpt-1.pt", {"i": 1}, fingerprint="fp", keep=3)
    (tmp_path / "ckpt-0.pt").unlink()
    (tmp_path / "ckpt-0.pt").write_bytes(b"replaced by the user")
    with pytest.warns(RuntimeWarning, match="cannot prove it wrote"):
        save_checkpoint(tmp_path / "ckpt-2.pt", {"i": 2}, fingerprint="fp", keep=1)
    assert (tmp_path / "user.pt").read_bytes() == b"the user's own file"
    assert (tmp_path / "ckpt-0.pt").read_bytes() == b"replaced by the user"
    assert not (tmp_path / "ckpt-1.pt").exists()  # its own file, unchanged: rotated out


def test_find_latest_falls_back_and_ignores_unsafe_pointer_lines(tmp_path):
    save_checkpoint(tmp_path / "a.pt", {"i": 0}, fingerprint="fp")
    save_checkpoint(tmp_path / "b.pt", {"i": 1}, fingerprint="fp")
    (tmp_path / "b.pt").unlink()  # removed by hand: the older one still listed is the latest now
    assert find_latest(tmp_path) == tmp_path / "a.pt"
    outside = tmp_path / "outside.pt"
    save_checkpoint(outside, {"i": 9}, fingerprint="fp")
    sub = tmp_path / "run"
    sub.mkdir()
    (sub / LATEST_NAME).write_text("../outside.pt\n/etc/passwd\n")
    assert find_latest(sub) is None


def test_save_creates_missing_directories(tmp_path):
    path = save_checkpoint(tmp_path / "a" / "b" / "c.pt", {"x": 1}, fingerprint="fp")
    assert load_checkpoint(path.parent, fingerprint="fp") == {"x": 1}


# ----------------------------------------------------------------------------- write failures


def _no_temp_files(directory: Path) -> bool:
    return not any(p.name.endswith(TMP) for p in directory.iterdir())


def test_disk_full_keeps_previous_checkpoint_and_pointer(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "ckpt-0.pt", {"w": torch.ones(3)}, fingerprint="fp")
    pointer_before = (tmp_path / LATEST_NAME).read_bytes()
    real_save = torch.save

    def full_disk_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial bytes")  # something reached the temp file before the disk filled up
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk_save)
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(tmp_path / "ckpt-1.pt", {"w": torch.zeros(3)}, fingerprint="fp")
    monkeypatch.setattr(torch, "save", real_save)
    msg = str(info.value)
    assert "ckpt-1.pt" in msg and "no space left on device" in msg and "free" in msg
    assert isinstance(info.value.__cause__, OSError)
    assert not (tmp_path / "ckpt-1.pt").exists() and _no_temp_files(tmp_path)
    assert (tmp_path / LATEST_NAME).read_bytes() == pointer_before
    assert torch.equal(load_checkpoint(tmp_path, fingerprint="fp")["w"], torch.ones(3))


def test_disk_full_inside_torch_writer_is_reported(tmp_path, monkeypatch):
    """A write error inside torch's zip writer surfaces as a RuntimeError from torch.save; still a CheckpointError."""
    save_checkpoint(tmp_path / "ckpt-0.pt", {"w": torch.ones(3)}, fingerprint="fp")
    real_fdopen = os.fdopen

    class FullFile:
        def __init__(self, fh):
            self._fh, self._written = fh, 0

        def write(self, data):
            if self._written > 100:
                raise OSError(errno.ENOSPC, "No space left on device")
            self._written += len(data)
            return self._fh.write(data)

        def __getattr__(self, name):
            return getattr(self._fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self._fh.__exit__(*exc)

    monkeypatch.setattr(ckpt_mod.os, "fdopen", lambda fd, mode: FullFile(real_fdopen(fd, mode)))
    with pytest.raises(CheckpointError, match="writing checkpoint .*ckpt-1.pt failed"):
        save_checkpoint(tmp_path / "ckpt-1.pt", {"w": torch.zeros(10000)}, fingerprint="fp")
    monkeypatch.setattr(ckpt_mod.os, "fdopen", real_fdopen)
    assert _no_temp_files(tmp_path) and not (tmp_path / "ckpt-1.pt").exists()
    assert torch.equal(load_checkpoint(tmp_path, fingerprint="fp")["w"], torch.ones(3))


def test_pointer_write_failure_leaves_directory_as_before(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "ckpt-0.pt", {"i": 0}, fingerprint="fp")
    real_replace = os.replace

    def replace(src, dst):
        if Path(dst).name == LATEST_NAME:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(ckpt_mod.os, "replace", replace)
    with pytest.raises(CheckpointError, match="pointer"):
        save_checkpoint(tmp_path / "ckpt-1.pt", {"i": 1}, fingerprint="fp", keep=1)
    monkeypatch.setattr(ckpt_mod.os, "replace", real_replace)
    assert sorted(p.name for p in tmp_path.iterdir()) == [WRITTEN_NAME, "ckpt-0.pt", LATEST_NAME]
    assert load_checkpoint(tmp_path, fingerprint="fp") == {"i": 0}


def test_unpicklable_state_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="writing checkpoint"):
        save_checkpoint(tmp_path / "bad.pt", {"f": lambda x: x}, fingerprint="fp")
    assert _no_temp_files(tmp_path) and not (tmp_path / "bad.pt").exists()


# ----------------------------------------------------------------------------- kill -9


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import torch
    from streamlabel.engine.checkpoint import save_checkpoint

    out = sys.argv[1]
    save_checkpoint(out + "/ckpt-1.pt", {"step": 1, "w": torch.arange(10.0)}, fingerprint="fp")

    real_save = torch.save

    class SlowFile:
        # Real torch.save bytes in 64 KiB pieces, as a slow disk would take them; past 2 MiB the "disk"
        # stalls, so the parent reliably finds us mid-file however loaded the machine is.
        def __init__(self, fh):
            self.fh, self.written = fh, 0
        def write(self, data):
            data = memoryview(data).cast("B")
            for i in range(0, len(data), 65536):
                self.written += self.fh.write(data[i:i + 65536])
                self.fh.flush()
                time.sleep(0.002)
                if self.written > 2 << 20:
                    time.sleep(60)
            return len(data)
        def flush(self):
            self.fh.flush()

    torch.save = lambda obj, fh: real_save(obj, SlowFile(fh))
    print("first-saved", flush=True)
    save_checkpoint(out + "/ckpt-2.pt", {"step": 2, "w": torch.randn(4_000_000)}, fingerprint="fp", keep=1)
    print("second-saved", flush=True)
    """
)


def test_kill_9_during_checkpoint_write_keeps_the_previous_one(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    script = tmp_path / "writer.py"
    script.write_text(_KILL_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, str(script), str(out)], stdout=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 15
        temp = None
        while time.monotonic() < deadline and proc.poll() is None:
            temps = [p for p in out.iterdir() if p.name.startswith(".ckpt-2.pt.") and p.name.endswith(TMP)]
            if temps and temps[0].stat().st_size > 4096:  # the second file is being written
                temp = temps[0]
                break
            time.sleep(0.005)
        assert temp is not None, f"writer never started the second checkpoint (rc={proc.poll()})"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stdout = proc.stdout.read().decode()
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL and "second-saved" not in stdout

    assert temp.exists()  # the half-written file is still there under its temp name ...
    assert not (out / "ckpt-2.pt").exists()  # ... and never under a checkpoint name
    assert find_latest(out) == out / "ckpt-1.pt"
    state = load_checkpoint(out, fingerprint="fp")
    assert state["step"] == 1 and torch.equal(state["w"], torch.arange(10.0))

    # The next save (a resumed run) cleans up the dead writer's temp file and rotates normally.
    save_checkpoint(out / "ckpt-2.pt", {"step": 2}, fingerprint="fp", keep=1)
    assert sorted(p.name for p in out.iterdir()) == [WRITTEN_NAME, "ckpt-2.pt", LATEST_NAME]


class _RunsCode:
    """Unpickling this calls a function of the file's choosing (here: writes a marker file)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "code from the checkpoint ran"))


def test_a_crafted_checkpoint_cannot_run_code(tmp_path):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pt"
    torch.save({"header": {"format": "streamlabel-checkpoint", "version": 1, "fingerprint": None},
                "state": {"payload": _RunsCode(str(marker))}}, path)
    with pytest.raises(CheckpointError, match=r"holds an object a checkpoint never holds .*nothing in it ran"):
        load_checkpoint(path, fingerprint=None)
    assert not marker.exists()


def test_numpy_arrays_load_without_trust(tmp_path):
    path = save_checkpoint(tmp_path / "np.pt", {"labels": np.arange(5), "scale": np.float32(2.0)}, fingerprint="f")
    state = load_checkpoint(path, fingerprint="f")
    assert np.array_equal(state["labels"], np.arange(5)) and state["scale"] == np.float32(2.0)

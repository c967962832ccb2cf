"""Nothing a user owns is deleted or overwritten (issue 28): every case asserts the exit code, a message
that names the cause, no traceback, and that no file outside the command's named outputs changed.

Each test names the mutant it kills: the behaviour it checks, removed or reverted.
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

import numpy as np
import pytest

from streamlabel.data import build_dataset
from streamlabel.data.owned_files import ForeignFilesError, Manifest
from streamlabel.data.synthetic import write_synthetic_market
from streamlabel.engine.checkpoint import LATEST_NAME, find_resumable, save_checkpoint
from streamlabel.engine.run_lock import LOCK_NAME, RunLock, RunLockError
from streamlabel.launch import cli
from tests.helpers.signals import default_sigint
from tests.reliability.fs_snapshot import tree_digest
from tests.reliability.reliability_inputs import market_tree, tiny_train_overrides

REPO = Path(__file__).resolve().parents[2]
SIZES = {"num_train_ids": 3, "num_test_ids": 2, "num_cams": 2, "images_per_cam": 1, "height": 16, "width": 8}


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def refused(code: int, out: str, err: str, pattern: str, expected: int = 2) -> None:
    """Exit ``expected``, one stderr line matching ``pattern``, no traceback."""
    assert code == expected, err
    assert "Traceback" not in out + err, err
    import re

    assert any(re.search(pattern, line) for line in err.splitlines()), err


def fake_market(root: Path) -> Path:
    """A Market-1501 copy with a stray text file at its root and in its train folder."""
    market_tree(root)
    (root / "notes.txt").write_text("months of collection notes\n")
    (root / "bounding_box_train" / "readme.txt").write_text("do not delete\n")
    return root


# ----------------------------------------------------------------------------- the synthetic builder


def test_default_demo_on_a_real_market_folder_refuses_and_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's command: ``streamlabel train data.target.root=<Market copy>``. Mutant killed: the
    synthetic root is not checked before work (the demo generated its source, then cleared the target)."""
    monkeypatch.chdir(tmp_path)
    market = fake_market(tmp_path / "market1501")
    before = tree_digest(tmp_path)
    short = ["train.pretrain_iterations=2", "train.iterations=2", "train.iters_per_epoch=2"]  # a mutant ends fast
    code, out, err = run(["train", f"data.target.root={market}", *short], capsys)
    refused(code, out, err, r"data\.target\.root: .*market1501 is not empty and holds no synthetic dataset "
                            r"streamlabel wrote .*notes\.txt")
    assert "another" in err or "new or empty folder" in err  # the way out
    assert tree_digest(tmp_path) == before  # the Market copy byte-identical, no run folder, no source data


def test_synthetic_builder_never_clears_a_folder_it_did_not_write(tmp_path: Path) -> None:
    """The library path (``build_dataset``, as a checkpoint's config reaches it). Mutant killed: the old
    ``rmtree`` of any root without a matching ``synthetic.json``."""
    market = fake_market(tmp_path / "m")
    before = tree_digest(tmp_path)
    with pytest.raises(ForeignFilesError, match="holds no synthetic dataset streamlabel wrote"):
        build_dataset("synthetic", market, domain="target", **SIZES)
    with pytest.raises(ForeignFilesError):  # bad sizes too: the folder is refused before anything else
        build_dataset("synthetic", market, domain="target", num_train_ids=0)
    assert tree_digest(tmp_path) == before


def test_regenerating_deletes_only_files_the_manifest_proves_ours(tmp_path: Path) -> None:
    """Mutants killed: files removed without checking their digest (a user's edited image is lost), and
    the foreign-file check skipped (a user's file inside a split folder is lost)."""
    root = tmp_path / "syn"
    write_synthetic_market(root, seed=0, **SIZES)
    before = tree_digest(tmp_path)
    with pytest.raises(ForeignFilesError, match=r"pass overwrite=True"):  # never replaced without being asked
        write_synthetic_market(root, seed=1, **SIZES)
    assert tree_digest(tmp_path) == before
    (root / "query" / "my_crops").mkdir()  # a folder of the user's inside a split folder
    with pytest.raises(ForeignFilesError, match="my_crops"):
        write_synthetic_market(root, seed=1, overwrite=True, **SIZES)
    (root / "query" / "my_crops").rmdir()
    (root / "mine.txt").write_text("beside, not inside: kept\n")
    added = root / "query" / "added_by_user.txt"
    added.write_text("user file\n")
    before = tree_digest(tmp_path)
    with pytest.raises(ForeignFilesError, match="added_by_user.txt"):
        write_synthetic_market(root, seed=1, overwrite=True, **SIZES)
    assert tree_digest(tmp_path) == before
    added.unlink()
    edited = next((root / "bounding_box_train").iterdir())
    edited.write_bytes(edited.read_bytes() + b"edited")
    before = tree_digest(tmp_path)
    with pytest.raises(ForeignFilesError, match=edited.name):
        write_synthetic_market(root, seed=1, overwrite=True, **SIZES)
    assert tree_digest(tmp_path) == before
    edited.unlink()
    summary = write_synthetic_market(root, seed=1, overwrite=True, **{**SIZES, "num_train_ids": 2})
    after = tree_digest(tmp_path)
    assert after["syn/mine.txt"] == before["syn/mine.txt"]
    images = sum(1 for p in after if p.endswith(".jpg"))
    assert images == summary["images"]  # the old images are gone, none left to mix with the new ones


def test_remove_written_keeps_a_file_changed_since_it_was_written(tmp_path: Path) -> None:
    """``remove_written`` on its own (callers check ``foreign_files`` first, this must not depend on it).
    Mutant killed: deletion by listed name without the digest check."""
    manifest = Manifest(tmp_path)
    manifest.make_folder(tmp_path / "q")
    manifest.write_file(tmp_path / "q" / "a.jpg", b"ours")
    manifest.write_file(tmp_path / "q" / "b.jpg", b"ours too")
    (tmp_path / "q" / "a.jpg").write_bytes(b"edited by the user")
    manifest.remove_written([tmp_path / "q"])
    assert (tmp_path / "q" / "a.jpg").read_bytes() == b"edited by the user"
    assert not (tmp_path / "q" / "b.jpg").exists()


def test_a_manifest_cannot_send_a_deletion_outside_its_root(tmp_path: Path) -> None:
    """A ``synthetic.json`` edited to list ``../`` paths is not a manifest of ours. Mutant killed:
    ``Manifest.from_json`` without the escaping-path check (a file outside the root is deleted)."""
    root = tmp_path / "syn"
    write_synthetic_market(root, seed=0, **SIZES)
    victim = tmp_path / "victim.txt"
    victim.write_text("mine\n")
    meta = json.loads((root / "synthetic.json").read_text())
    meta["written"]["files"]["query/../../victim.txt"] = hashlib.sha256(b"mine\n").hexdigest()
    (root / "synthetic.json").write_text(json.dumps(meta))
    before = tree_digest(tmp_path)
    with pytest.raises(ForeignFilesError):
        write_synthetic_market(root, seed=1, overwrite=True, **SIZES)
    assert tree_digest(tmp_path) == before


# ----------------------------------------------------------------------------- outputs checked before work


def test_labels_out_onto_its_own_input_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Mutant killed: ``output_file`` without the inputs check (the dump is overwritten by its labels)."""
    dump = tmp_path / "dump.npy"  # an .npz archive under an .npy name: np.load reads it
    with dump.open("wb") as handle:
        np.savez(handle, feats=np.random.default_rng(0).normal(size=(20, 8)).astype(np.float32))
    before = tree_digest(tmp_path)
    for out in (dump, tmp_path / "sub" / ".." / "dump.npy"):
        code, stdout, err = run(["labels", "--features", str(dump), "--out", str(out), "--quiet"], capsys)
        refused(code, stdout, err, r"--out .*dump\.npy is also an input of this command")
    assert tree_digest(tmp_path) == before


@pytest.mark.parametrize("value", ["", " "])
def test_empty_output_dir_is_refused(value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Mutant killed: no emptiness check (``Path('')`` is the current directory: the run writes there)."""
    monkeypatch.chdir(tmp_path)
    argv = ["train", *tiny_train_overrides(tmp_path / "unused", tmp_path / "data")]
    argv = [a for a in argv if not a.startswith("output_dir=")] + [f"output_dir={value}"]
    code, out, err = run(argv, capsys)
    refused(code, out, err, r"output_dir.* is an empty path; give a path")
    assert tree_digest(tmp_path) == {}


def test_output_dir_inside_a_data_root_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Mutant killed: ``check_run_folder`` without the data roots as inputs."""
    market = market_tree(tmp_path / "market")
    before = tree_digest(tmp_path)
    argv = ["train", *tiny_train_overrides(market / "runs", tmp_path / "data")]
    argv = [a for a in argv if not a.startswith("data.target=")]
    argv += [f"data.target={{name: market1501, root: {market}}}"]
    code, out, err = run(argv, capsys)
    refused(code, out, err, r"output_dir .*market/runs is inside the input folder .*market")
    assert tree_digest(tmp_path) == before


def test_names_too_long_for_the_file_system(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Mutant killed: no name-length check (``OSError: File name too long`` from deep inside)."""
    long = "x" * 300
    before = tree_digest(tmp_path)
    code, out, err = run(["labels", "--features", str(tmp_path / "f.npz"), "--out", str(tmp_path / f"{long}.npy")],
                         capsys)
    refused(code, out, err, r"--out: the name x+\.\.\. is 304 bytes long; file systems allow at most 255")
    code, out, err = run(["labels", "--features", str(tmp_path / f"{long}.npz")], capsys)
    refused(code, out, err, r"File name too long")
    code, out, err = run(["train", *tiny_train_overrides(tmp_path / long, tmp_path / "data")], capsys)
    refused(code, out, err, r"output_dir: the name x+\.\.\. is 300 bytes long")
    assert tree_digest(tmp_path) == before


# ----------------------------------------------------------------------------- permissions (as another user)


def _unprivileged_prefix() -> list[str]:
    """A command prefix that runs as a user the file modes apply to (root ignores them)."""
    if os.geteuid() != 0:
        return []
    probe = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                            "import streamlabel"], capture_output=True, cwd=REPO)
    if probe.returncode != 0:
        pytest.skip("running as root and cannot run as an unprivileged user (setpriv), so modes are not enforced")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def _cli(prefix: list[str], argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-m", "streamlabel.launch.cli", *argv], capture_output=True,
                          text=True, cwd=cwd, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture
def shared_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder another user can enter (pytest's own is private to its user)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="streamlabel-ro-"))
    folder.chmod(0o777)
    yield folder
    subprocess.run(["rm", "-rf", str(folder)], check=False)


def test_read_only_outputs_are_refused_before_work(shared_tmp: Path) -> None:
    """``labels --out``, ``output_dir``, its checkpoints folder, ``compare --out`` and ``synth --preview`` in
    folders the user cannot write: refused at once, naming the folder. Mutant killed: no writability probe
    (labels computes, then fails to write; compare trains every run before it finds --out unwritable)."""
    prefix = _unprivileged_prefix()
    data = shared_tmp / "data"
    data.mkdir()
    data.chmod(0o777)  # mkdir's mode goes through the umask
    rng = np.random.default_rng(0)
    np.savez(data / "f.npz", feats=rng.normal(size=(20, 8)).astype(np.float32))
    locked = shared_tmp / "locked"
    locked.mkdir()
    (locked / "checkpoints").mkdir(parents=True)
    if prefix:
        locked.chmod(0o755)  # owned by root: read-only for the unprivileged user
    else:
        locked.chmod(0o555)
    writable = shared_tmp / "run"
    writable.mkdir()
    writable.chmod(0o777)
    (writable / "checkpoints").mkdir()
    (writable / "checkpoints").chmod(0o755 if prefix else 0o555)
    kept = data / "kept.npy"  # the user's read-only file: never replaced
    kept.write_bytes(b"user file")
    kept.chmod(0o444)
    tiny = tiny_train_overrides(locked / "run", data)
    cases = [
        (["labels", "--features", str(data / "f.npz"), "--out", str(kept)],
         r"--out .*kept\.npy exists and is read-only"),
        (["labels", "--features", str(data / "f.npz"), "--out", str(locked / "l.npy")],
         r"--out .*locked/l\.npy: cannot write in .*locked"),
        (["train", *tiny], r"output_dir .*locked/run: cannot write in .*locked"),
        (["train", *tiny_train_overrides(writable, data)], r"output_dir's checkpoints folder .*run/checkpoints: "
                                                            r"cannot write in"),
        (["compare", "--refresh-every", "0", "--out", str(locked / "cmp"), *tiny_train_overrides(data / "cmp", data)],
         r"--out .*locked/cmp: cannot write in"),
        (["synth", "--preview", str(locked / "p.png")], r"--preview .*locked/p\.png: cannot write in"),
    ]
    for argv, pattern in cases:
        before = tree_digest(shared_tmp)
        started = time.perf_counter()
        result = _cli(prefix, argv, shared_tmp)
        refused(result.returncode, result.stdout, result.stderr, pattern)
        assert time.perf_counter() - started < 60  # refused before any work, not after training
        assert tree_digest(shared_tmp) == before, argv


# ----------------------------------------------------------------------------- one run per folder


def test_a_second_run_into_a_locked_output_dir_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Another live process holds the run folder. Mutant killed: no lock (two runs interleave checkpoints)."""
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from streamlabel.engine.run_lock import "
         "RunLock; lock = RunLock(Path(sys.argv[1])).__enter__(); print('held', flush=True); time.sleep(120)",
         str(out)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = tree_digest(tmp_path)
        code, stdout, err = run(["train", *tiny_train_overrides(out, tmp_path / "data")], capsys)
        refused(code, stdout, err, rf"output_dir .*run is in use by another streamlabel run \(pid {holder.pid} ")
        assert tree_digest(tmp_path) == before
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_is_reported_and_taken_over(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run killed with -9 left its lock file: the next run names the dead pid and goes on. Mutants killed:
    a stale lock taken over without a word; a lock file not removed when the run ends."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename, "started": "then"}))
    code, stdout, err = run(["train", "--quiet", *tiny_train_overrides(out, tmp_path / "data", iterations=2)], capsys)
    assert code == 0, err
    assert f"taking over the lock of pid {dead.pid}" in err and "no longer running" in err
    assert not (out / LOCK_NAME).exists()


def test_a_lock_from_another_host_is_not_taken_over(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A shared file system: this host cannot tell whether that pid runs. Mutant killed: the host check
    removed (another machine's live run is taken over)."""
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere.example", "started": "then"}))
    before = tree_digest(tmp_path)
    with pytest.raises(RunLockError, match=r"locked by pid 1 on elsewhere\.example .*another host this one cannot"), \
            RunLock(out):
        pass
    code, stdout, err = run(["train", *tiny_train_overrides(out, tmp_path / "data")], capsys)
    refused(code, stdout, err, r"output_dir .*run is locked by pid 1 on elsewhere\.example")
    assert tree_digest(tmp_path) == before


def test_lock_folder_made_for_a_refused_run_is_removed(tmp_path: Path) -> None:
    """A run refused after the lock was taken leaves no empty run folder. Mutant killed: RunLock forgets the
    folders it created."""
    with pytest.raises(RuntimeError), RunLock(tmp_path / "a" / "b"):
        raise RuntimeError("refused")
    assert not (tmp_path / "a").exists()


# ----------------------------------------------------------------------------- resume without latest.txt


def _fake_checkpoints(folder: Path) -> None:
    for name, progress in (("adapt_epoch0001.pt", (1, 4)), ("adapt_epoch0000_iter000003.pt", (1, 3)),
                           ("pretrain_epoch0009.pt", (0, 20))):
        save_checkpoint(folder / name, {"name": name}, fingerprint="fp", keep=5, progress=progress)


def test_find_resumable_orders_by_header_not_by_name(tmp_path: Path) -> None:
    """Mutants killed: sorted by file name or mtime (the pretrain file was written last and sorts last)."""
    _fake_checkpoints(tmp_path)
    (tmp_path / LATEST_NAME).unlink()
    assert find_resumable(tmp_path).name == "adapt_epoch0001.pt"
    (tmp_path / LATEST_NAME).write_text("\n")
    assert find_resumable(tmp_path).name == "adapt_epoch0001.pt"
    (tmp_path / LATEST_NAME).write_text("gone.pt\n")
    assert find_resumable(tmp_path).name == "adapt_epoch0001.pt"


@pytest.mark.parametrize("pointer", [None, ""])
def test_resume_without_a_usable_pointer_continues_from_the_newest_checkpoint(
        pointer: str | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Mutant killed: --resume trusting only latest.txt (it started from scratch and overwrote them)."""
    out = tmp_path / "run"
    tiny = tiny_train_overrides(out, tmp_path / "data", iterations=2, iters_per_epoch=1)
    assert cli.main(["train", "--quiet", *tiny]) == 0
    ckpts = out / "checkpoints"
    if pointer is None:
        (ckpts / LATEST_NAME).unlink()
    else:
        (ckpts / LATEST_NAME).write_text(pointer)
    kept = {p.name: p.read_bytes() for p in ckpts.glob("*.pt")}
    capsys.readouterr()
    longer = [a for a in tiny if not a.startswith("train.iterations=")] + ["train.iterations=3"]
    code, stdout, err = run(["train", "--quiet", "--resume", *longer], capsys)
    assert code == 0, err
    assert "the newest complete checkpoint by its header is adapt_epoch0001.pt" in stdout + err
    assert "resumed from adapt epoch 1" in stdout + err
    for name, data in kept.items():  # continued, not restarted: the old files are as they were (or rotated)
        assert not (ckpts / name).exists() or (ckpts / name).read_bytes() == data


def test_resume_over_files_that_are_not_checkpoints_stops(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Mutant killed: find_resumable returning None for unreadable .pt files (the run starts over)."""
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "adapt_epoch0003.pt").write_bytes(b"half a checkpoint")
    before = tree_digest(tmp_path)
    code, stdout, err = run(["train", "--resume", *tiny_train_overrides(out, tmp_path / "data")], capsys)
    refused(code, stdout, err, r"holds 1 \.pt file\(s\) \(adapt_epoch0003\.pt\) but no complete streamlabel "
                               r"checkpoint .*does not start over")
    after = tree_digest(tmp_path)
    assert {k: v for k, v in after.items() if k.startswith("run")} == {k: v for k, v in before.items()
                                                                       if k.startswith("run")}


# ----------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_names_the_last_checkpoint_and_exits_130(tmp_path: Path) -> None:
    """Mutant killed: KeyboardInterrupt not handled (a traceback, exit 1, the lock file left behind)."""
    out = tmp_path / "run"
    argv = ["train", "--quiet", *tiny_train_overrides(out, tmp_path / "data", iterations=400, iters_per_epoch=1)]
    proc = subprocess.Popen([sys.executable, "-m", "streamlabel.launch.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            preexec_fn=default_sigint)
    deadline = time.time() + 240
    while not (out / "checkpoints" / LATEST_NAME).exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, err = proc.communicate(timeout=120)
    refused(proc.returncode, stdout, err, r"streamlabel train: interrupted: the last checkpoint is .*checkpoints/"
                                          r"\w+\.pt; continue with --resume", expected=130)
    assert not (out / LOCK_NAME).exists()


def test_a_run_never_writes_over_a_config_or_results_file_it_did_not_write(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``output_dir=.`` in the folder of the user's own ``config.yaml`` (the run's config would replace the
    input), and a results.json edited after the run. Mutant killed: no run-file manifest check (config.yaml and
    results.json written over)."""
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    user_config = project / "config.yaml"
    user_config.write_text(f"_base_: {REPO / 'configs' / 'demo.yaml'}\nseed: 3\n")
    before = tree_digest(tmp_path)
    tiny = [a for a in tiny_train_overrides(project, tmp_path / "data") if not a.startswith("output_dir=")]
    code, out, err = run(["train", "--config", str(user_config), "output_dir=.", *tiny], capsys)
    refused(code, out, err, r"output_dir \. holds .*config\.yaml, which streamlabel did not write")
    assert tree_digest(tmp_path) == before
    run_dir = tmp_path / "run"
    tiny = tiny_train_overrides(run_dir, tmp_path / "data", iterations=2)
    assert cli.main(["train", "--quiet", *tiny]) == 0
    capsys.readouterr()
    (run_dir / "results.json").write_text('{"my": "notes"}\n')
    before = tree_digest(tmp_path)
    code, out, err = run(["train", "--quiet", "--resume", *tiny], capsys)
    refused(code, out, err, r"holds .*results\.json, which streamlabel did not write \(or which changed since\)")
    assert tree_digest(tmp_path) == before

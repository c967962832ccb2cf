"""Cases a second adversarial round found (issue 28): links and FIFOs where streamlabel writes or reads,
read-only files to root, empty paths, unbounded counts. Each asserts the exit code, a message naming the cause,
no traceback, and that nothing outside the named outputs changed; each names the mutant it kills."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamlabel.engine.run_lock import LOCK_NAME
from tests.reliability.fs_snapshot import tree_digest
from tests.reliability.reliability_inputs import tiny_train_overrides
from tests.reliability.test_no_data_loss import refused, run

REPO = Path(__file__).resolve().parents[2]


def _each_refused_changing_nothing(cases: list[tuple[list[str], str]], root: Path, before: dict,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Every (argv, pattern): refused with a message matching the pattern, and nothing under ``root`` changed."""
    for argv, pattern in cases:
        code, stdout, err = run(argv, capsys)
        refused(code, stdout, err, pattern)
        assert tree_digest(root) == before, argv


def _dump(path: Path, rows: int = 20) -> Path:
    with path.open("wb") as handle:
        np.savez(handle, feats=np.random.default_rng(0).normal(size=(rows, 8)).astype(np.float32),
                 pids=np.arange(rows) % 4, camids=np.arange(rows) % 2)
    return path


def test_a_lock_file_that_is_a_link_to_a_user_file_is_not_written_through(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Mutant killed: the lock opened without O_NOFOLLOW and the link check (the user's file truncated)."""
    precious = tmp_path / "mine" / "precious.txt"
    precious.parent.mkdir()
    precious.write_text("months of notes\n")
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).symlink_to(precious)
    before = tree_digest(tmp_path)
    code, stdout, err = run(["train", *tiny_train_overrides(out, tmp_path / "data")], capsys)
    refused(code, stdout, err, r"\.streamlabel\.lock is not a regular file \(a link, a folder or a FIFO\)")
    assert tree_digest(tmp_path) == before


@pytest.mark.parametrize("kind", ["fifo", "read_only", "link"])
def test_labels_out_never_replaces_a_fifo_a_read_only_file_or_a_link(
        kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Even as root (modes do not bind it), a 0444 file is the user's statement. Mutant killed: output_file
    checking only os.access (root may write anything; the FIFO and the link were replaced by a file)."""
    _dump(tmp_path / "f.npz")
    out = tmp_path / "o.npy"
    if kind == "fifo":
        os.mkfifo(out)
    elif kind == "read_only":
        out.write_bytes(b"the user's labels")
        out.chmod(0o444)
    else:
        (tmp_path / "target.npy").write_bytes(b"elsewhere")
        out.symlink_to(tmp_path / "target.npy")
    before = tree_digest(tmp_path)
    code, stdout, err = run(["labels", "--features", str(tmp_path / "f.npz"), "--out", str(out), "--quiet"], capsys)
    cause = {"fifo": "not a regular file", "read_only": "read-only", "link": "a symbolic link"}[kind]
    refused(code, stdout, err, rf"--out .*o\.npy exists and is {cause}")
    assert tree_digest(tmp_path) == before


def test_a_fifo_in_a_synthetic_root_does_not_hang_the_check(tmp_path: Path) -> None:
    """A FIFO inside a synthetic dataset that is about to be rewritten (other sizes). Mutant killed: the
    manifest check hashing it (the read blocks forever)."""
    from streamlabel.data.synthetic import write_synthetic_market

    target = tmp_path / "data" / "target"
    write_synthetic_market(target, seed=5, domain="target", num_train_ids=3, num_test_ids=2, num_cams=2,
                           images_per_cam=1, height=16, width=8)
    os.mkfifo(target / "query" / "0007_c1s1_000451_01.jpg")
    before = tree_digest(tmp_path)
    argv = ["train", *tiny_train_overrides(tmp_path / "run", tmp_path / "data")]
    done = subprocess.run([sys.executable, "-m", "streamlabel.launch.cli", *argv], capture_output=True, text=True,
                          cwd=REPO, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    refused(done.returncode, done.stdout, done.stderr, r"data\.target\.root: .*holds files streamlabel did not write"
                                                       r".*0007_c1s1_000451_01\.jpg")
    assert tree_digest(tmp_path) == before


@pytest.mark.parametrize(("override", "pattern"), [
    ("model.pretrained=", r"'model\.pretrained' \(from command line\) is an empty path; give a path \(null for none\)"),
    ("data.target.root=", r"'data\.target\.root' \(from command line\) is an empty path"),
    ("train.iterations=99999999999999999999999", r"'train\.iterations' in command line must be in \[1, 100000000\]"),
])
def test_empty_paths_and_unbounded_counts_in_a_config(override: str, pattern: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Mutants killed: an empty model.pretrained read as "no weights" (it trained on), an empty root read as
    the current folder, train.iterations without an upper bound (it trained for ever)."""
    key = override.partition("=")[0]
    argv = ["train", *[a for a in tiny_train_overrides(tmp_path / "run", tmp_path / "data")
                       if not a.startswith(key + "=")], override]
    code, stdout, err = run(argv, capsys)
    refused(code, stdout, err, pattern)
    assert tree_digest(tmp_path) == {}


def test_absurd_counts_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Mutants killed: --ranks and --passes without an upper bound (a traceback from an int overflow; a
    labelling that never ends)."""
    _dump(tmp_path / "q.npz")
    _dump(tmp_path / "g.npz")
    before = tree_digest(tmp_path)
    code, stdout, err = run(["evaluate", "--query", str(tmp_path / "q.npz"), "--gallery", str(tmp_path / "g.npz"),
                             "--ranks", "1000000000000"], capsys)
    refused(code, stdout, err, r"--ranks must be integers in \[1, 1,000,000\]")
    code, stdout, err = run(["labels", "--features", str(tmp_path / "q.npz"), "--passes", "1000000000"], capsys)
    refused(code, stdout, err, r"--passes must be in \[0, 100000\]")
    assert tree_digest(tmp_path) == before


def test_a_fifo_in_place_of_streamlabels_own_metadata_does_not_hang(tmp_path: Path) -> None:
    """synthetic.json and .streamlabel-run.json as FIFOs. Mutant killed: metadata read with read_text (blocks)."""
    data = tmp_path / "data" / "target"
    data.mkdir(parents=True)
    os.mkfifo(data / "synthetic.json")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    os.mkfifo(run_dir / ".streamlabel-run.json")
    before = tree_digest(tmp_path)
    argv = ["train", *tiny_train_overrides(run_dir, tmp_path / "data")]
    done = subprocess.run([sys.executable, "-m", "streamlabel.launch.cli", *argv], capture_output=True, text=True,
                          cwd=REPO, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    refused(done.returncode, done.stdout, done.stderr, r"\.streamlabel-run\.json, which streamlabel did not write")
    os.unlink(run_dir / ".streamlabel-run.json")
    done = subprocess.run([sys.executable, "-m", "streamlabel.launch.cli", *argv], capture_output=True, text=True,
                          cwd=REPO, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    refused(done.returncode, done.stdout, done.stderr, r"data/target is not empty and holds no synthetic dataset")
    before.pop("run/.streamlabel-run.json")  # the FIFO the test itself removed
    assert tree_digest(tmp_path) == before


def test_outputs_refused_before_any_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """compare.png a folder in --out, --baseline empty, output_dir the file-system root or a link loop: refused
    before training. Mutants killed: the compare outputs checked as folders' contents only (found after
    training), no empty-baseline check, no root check, resolve()'s RuntimeError escaping (a traceback)."""
    monkeypatch.chdir(tmp_path)
    tiny = tiny_train_overrides(tmp_path / "run", tmp_path / "data")
    (tmp_path / "o" / "compare.png").mkdir(parents=True)
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    before = tree_digest(tmp_path)
    cases = [
        (["compare", "--refresh-every", "0", "--out", str(tmp_path / "o"), *tiny],
         r"--out .*/o holds .*compare\.png, which streamlabel did not write"),
        (["compare", "--refresh-every", "0", "--baseline", "", *tiny], r"--baseline is empty"),
        (["train", *[a for a in tiny if not a.startswith("output_dir=")], "output_dir=/"],
         r"output_dir / is the root of the file system"),
        (["train", *[a for a in tiny if not a.startswith("output_dir=")], f"output_dir={tmp_path / 'loop' / 'run'}"],
         r"output_dir .*loop/run cannot be resolved"),
    ]
    _each_refused_changing_nothing(cases, tmp_path, before, capsys)


def test_read_only_run_files_are_not_replaced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A 0444 results.json of the user's run (modes bind even root here). Mutant killed: OwnedOutputs without
    the read-only check (both files replaced, exit 0)."""
    out = tmp_path / "run"
    tiny = tiny_train_overrides(out, tmp_path / "data", iterations=2)
    assert run(["train", "--quiet", *tiny], capsys)[0] == 0
    (out / "results.json").chmod(0o444)
    before = tree_digest(tmp_path)
    longer = [a for a in tiny if not a.startswith("train.iterations=")] + ["train.iterations=4"]
    code, stdout, err = run(["train", "--quiet", "--resume", *longer], capsys)
    refused(code, stdout, err, r"output_dir .*run: .*results\.json exists and is read-only")
    assert tree_digest(tmp_path) == before


def test_a_synthetic_rewrite_probes_every_folder_before_deleting(tmp_path: Path) -> None:
    """A split folder the user cannot write: nothing is deleted. Mutant killed: check_synthetic_root without
    probe_writable (the other splits' images were deleted, then the write failed)."""
    import tempfile

    from tests.reliability.test_no_data_loss import _unprivileged_prefix

    prefix = _unprivileged_prefix()
    work = Path(tempfile.mkdtemp(prefix="streamlabel-probe-"))
    try:
        work.chmod(0o777)
        small = ["--domain", "target", "--train-ids", "2", "--test-ids", "1", "--cams", "2", "--images-per-cam", "1",
                 "--height", "8", "--width", "8", "--quiet"]
        cli = [sys.executable, "-m", "streamlabel.launch.cli", "synth", "--out", str(work / "d")]
        subprocess.run([*prefix, *cli, *small], check=True, cwd=REPO, timeout=120)
        (work / "d" / "query").chmod(0o555)
        before = tree_digest(work)
        bigger = [*small[:2], "--train-ids", "3", *small[4:], "--overwrite"]
        done = subprocess.run([*prefix, *cli, *bigger], capture_output=True, text=True, cwd=REPO, timeout=120)
        refused(done.returncode, done.stdout, done.stderr, r"--out: cannot write in .*d/query \(Permission denied\); "
                                                           r"nothing was deleted or written")
        assert tree_digest(work) == before
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=False)


def test_paths_config_links_plugins_and_sizes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """'~' is the home folder in every path; a config that is a link loop, a plugin that calls sys.exit, zero
    test identities and one root for both generated domains are refused. Mutants killed: path_argument without
    expanduser (a folder named '~'), resolve()'s RuntimeError escaping, SystemExit passing through imports (exit
    0, nothing trained), num_test_ids allowed at 0, no same-root check."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    _dump(tmp_path / "f.npz")
    assert run(["labels", "--features", "f.npz", "--out", "~/l.npy", "--quiet"], capsys)[0] == 0
    assert (tmp_path / "home" / "l.npy").is_file() and not (tmp_path / "~").exists()
    (tmp_path / "loop.yaml").symlink_to(tmp_path / "loop.yaml")
    (tmp_path / "exits.py").write_text("import sys\nsys.exit(0)\n")
    tiny = tiny_train_overrides(tmp_path / "run", tmp_path / "data")
    before = tree_digest(tmp_path)
    cases = [
        (["train", "--config", "loop.yaml"], r"config file loop\.yaml cannot be resolved"),
        (["train", *tiny, f"imports=[{tmp_path / 'exits.py'}]"],
         r"cannot import .*exits\.py.*: it called sys\.exit\(0\)"),
        (["train", *tiny, "data.target.kwargs.num_test_ids=0"], r"num_test_ids must be in \[1, 100,000\]"),
        (["synth", "--out", "d", "--test-ids", "0"], r"--test-ids must be"),
        (["train", *[a for a in tiny if not a.startswith("data.source=")],
          f"data.source={{name: synthetic, root: {tmp_path / 'data' / 'target'}, kwargs: {{domain: source}}}}"],
         r"data\.source\.root and data\.target\.root are the same folder"),
    ]
    _each_refused_changing_nothing(cases, tmp_path, before, capsys)


def test_seeds_and_nan_ranges(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Mutants killed: no seed bounds (an overflow message that names no flag), in_range letting NaN through
    (a NaN distance matrix reported later)."""
    _dump(tmp_path / "f.npz")
    before = tree_digest(tmp_path)
    cases = [
        (["labels", "--features", str(tmp_path / "f.npz"), "--seed", str(10**23), "--passes", "1"],
         r"--seed must be in \[0, 4294967295\]"),
        (["synth", "--out", str(tmp_path / "d"), "--seed", "-1"], r"--seed must be in \[0, 4294967295\]"),
        (["evaluate", "--query", str(tmp_path / "f.npz"), "--gallery", str(tmp_path / "f.npz"), "--rerank",
          "--lambda-value", "nan"], r"--lambda-value must be in \[0\.0, 1\.0\], got nan"),
        (["train", f"output_dir={tmp_path / 'run'}", "seed=100000000000000000000"],
         r"'seed' in command line must be in"),
    ]
    _each_refused_changing_nothing(cases, tmp_path, before, capsys)

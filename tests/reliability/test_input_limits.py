"""Sizes with no sane upper bound, and .npz members whose header lies about their size.

- A feature dump member whose .npy header is garbage, or declares a shape whose bytes are not the bytes the
  member holds (e.g. (10**12, 10**6) float32 in a few hundred bytes), is refused naming file and member
  before anything is allocated (``labels`` and ``evaluate``).
- Image sides, batches, workers, threads, padding, neighbour counts and the ``synth`` sizes have documented
  upper bounds (``streamlabel/config/limits.py``), and combinations are compared with this machine's memory
  (or disk) up front.

Every case asserts exit 2, one error line naming the cause (and the limit), no traceback, and an unchanged
working folder. The mutant each test kills is named in its docstring.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from streamlabel.config import limits
from streamlabel.config.limits import MAX_BATCH, MAX_CPU_THREADS, MAX_IMAGE_SIDE, MAX_NEIGHBOURS, MAX_WORKERS
from tests.reliability.refusal_checks import refused
from tests.reliability.reliability_inputs import DEMO


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --------------------------------------------------------------------------- .npz headers
def _npy(array: np.ndarray, header: str | None = None) -> bytes:
    """``array`` as .npy bytes; with ``header``, that header text (v1.0) in front of the array's real data."""
    if header is None:
        buf = io.BytesIO()
        np.save(buf, array)
        return buf.getvalue()
    text = header.encode("latin1")
    text += b" " * (64 - (10 + len(text) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + array.tobytes()


def _dump(path: Path, feats: bytes | None = None, pids: bytes | None = None, n: int = 12) -> Path:
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("feats.npy", feats if feats is not None else _npy(rng.random((n, 4), dtype=np.float32)))
        archive.writestr("pids.npy", pids if pids is not None else _npy(np.arange(n) // 2))
        archive.writestr("camids.npy", _npy(np.arange(n) % 2))
    return path


F4 = np.zeros((12, 4), np.float32)
HUGE = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 1000000), }"
BIG = "{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000), }"  # 40 GB: np.empty might "succeed"
HEADERS = {
    "huge shape": (_npy(F4, HUGE), r"member 'feats' \(feats.npy\): its .npy header declares shape "
                                   r"\(1000000000000, 1000000\) float32 = [\d.]+ PiB, but the member holds 192 B of "
                                   r"data: a corrupt or forged header \(refused before allocating anything\)"),
    "big shape": (_npy(F4, BIG), r"member 'feats' .*declares shape \(100000, 100000\) float32 = 37.3 GiB, but the "
                                 r"member holds 192 B"),
    "shape smaller than the data": (_npy(F4, BIG.replace("(100000, 100000)", "(3, 4)")),
                                    r"member 'feats' \(feats.npy\): its .npy header declares shape \(3, 4\) "
                                    r"float32 = 48 B, but the member holds 192 B"),
    "garbage header": (b"\x93NUMPY\x01\x00\x24\x00" + b"this is not a python literal at all!" + bytes(192),
                       r"member 'feats' \(feats.npy\) has a corrupt .npy header \(ValueError: .*\); refused before "
                       r"reading its data"),
    "code in the header": (_npy(F4, HUGE.replace("(1000000000000, 1000000)", "__import__('os').getpid()")),
                           r"member 'feats' \(feats.npy\) has a corrupt .npy header \(ValueError: malformed node"),
    "negative dimension": (_npy(F4, BIG.replace("(100000, 100000)", "(-12, 4)")),
                           r"member 'feats' \(feats.npy\) has a corrupt .npy header: shape \(-12, 4\) has a negative"),
    "unknown version": (b"\x93NUMPY\x07\x00" + bytes(300),
                        r"member 'feats' \(feats.npy\) has a corrupt .npy header \(ValueError: .*version"),
    "truncated header": (b"\x93NUMPY\x01\x00\xff\x00{'descr'", r"member 'feats' \(feats.npy\) has a corrupt .npy "
                                                               r"header"),
}


@pytest.mark.parametrize("case", list(HEADERS))
def test_npz_member_with_a_lying_or_corrupt_header(work: Path, capsys: pytest.CaptureFixture, case: str) -> None:
    """``labels`` and ``evaluate`` on the same dump. Mutant: no ``check_npz_members`` before ``np.load`` (numpy
    allocates what the header says: MemoryError, 'array is too big', or a read error naming neither member nor
    cause)."""
    member, pattern = HEADERS[case]
    path = _dump(work / "f.npz", feats=member)
    refused(["labels", "--features", str(path)], capsys, r"f.npz: " + pattern, work)
    refused(["evaluate", "--split-by-camera", str(path)], capsys, r"f.npz: " + pattern, work)


def test_a_lying_id_member_is_named_too(work: Path, capsys: pytest.CaptureFixture) -> None:
    """The check covers every member read, not only feats. Mutant: the check limited to ``feats``."""
    pids = _npy(np.arange(12), "{'descr': '<i8', 'fortran_order': False, 'shape': (10000000000000,), }")
    path = _dump(work / "p.npz", pids=pids)
    refused(["evaluate", "--split-by-camera", str(path)], capsys,
            r"p.npz: member 'pids' \(pids.npy\): its .npy header declares shape \(10000000000000,\) int64", work)


def test_npz_larger_than_memory_is_refused_up_front(work: Path, capsys: pytest.CaptureFixture,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A truthful header whose arrays exceed the memory available (simulated: 100 bytes). Mutant: no
    ``memory_problem`` check in ``check_npz_members``."""
    path = _dump(work / "f.npz")
    monkeypatch.setattr(limits, "available_memory", lambda: 100)
    refused(["labels", "--features", str(path)], capsys,
            r"f.npz: reading feats, pids, camids needs about [\d.]+ \w+, more than the 100 B of memory available", work)


def test_fifo_feature_file_is_not_read(work: Path, capsys: pytest.CaptureFixture) -> None:
    """A FIFO is refused by kind; /dev/zero too. Mutant: ``path.is_file()`` as the only check (the FIFO was
    reported as 'feature file not found')."""
    import os

    os.mkfifo(work / "pipe.npz")
    refused(["labels", "--features", "pipe.npz"], capsys,
            r"pipe.npz is not a regular file \(a FIFO, device or socket\); give a .npz file", work)
    refused(["evaluate", "--query", "/dev/zero", "--gallery", "pipe.npz"], capsys,
            r"/dev/zero is not a regular file", work)


# --------------------------------------------------------------------------- config bounds
# after the config checks, a run of this config fails at once on its missing dataset (no training, no data
# written): a regression that lets an absurd size through fails the test fast instead of running out of memory
TRAIN = ["train", "--config", str(DEMO), "--cpu", "--quiet", "output_dir=run", "model.name=osnet_x0_25",
         "data.source=null", "train.pretrain_iterations=0", "data.target={name: market1501, root: nowhere}"]


@pytest.mark.parametrize(("override", "pattern"), [
    ("data.height=100000", rf"'data.height' in command line must be in \[8, {MAX_IMAGE_SIDE}\]; got 100000"),
    ("data.width=5000", rf"'data.width' in command line must be in \[8, {MAX_IMAGE_SIDE}\]; got 5000"),
    ("data.pad=1000000", rf"'data.pad' in command line must be in \[0, {MAX_IMAGE_SIDE}\]; got 1000000"),
    ("cpu_threads=100000", rf"'cpu_threads' in command line must be in \[-1, {MAX_CPU_THREADS}\]; got 100000"),
    ("data.num_workers=5000", rf"'data.num_workers' in command line must be in \[0, {MAX_WORKERS}\]; got 5000"),
    ("train.target_batch=1000000", rf"'train.target_batch' .* must be in \[1, {MAX_BATCH}\]; got 1000000"),
    ("train.source_batch=1000000", rf"'train.source_batch' .* must be in \[0, {MAX_BATCH}\]; got 1000000"),
    ("eval.batch_size=1000000", rf"'eval.batch_size' .* must be in \[1, {MAX_BATCH}\]; got 1000000"),
    ("data.num_instances=100000", rf"'data.num_instances' .* must be in \[1, {MAX_BATCH}\]; got 100000"),
    ("policy.k=100000", rf"'policy.k' in command line: parameter 'k' of policy 'hcd' is 100,000; neighbour counts "
                        rf"above {MAX_NEIGHBOURS:,} are refused"),
    ("policy.link_k=50000", r"'policy.link_k' in command line: parameter 'link_k' of policy 'hcd' is 50,000; "
                            r"neighbour counts above"),
    ("policy.num_levels=100000", r"'policy.num_levels' .*is 100,000; values above 64 are refused"),
    ("policy={name: spcl, k1: 1000000}", r"'policy.k1' in command line: parameter 'k1' of policy 'spcl' is "
                                         r"1,000,000; neighbour counts above"),
])
def test_absurd_sizes_in_a_config_are_refused_with_the_limit(
    work: Path, capsys: pytest.CaptureFixture, override: str, pattern: str
) -> None:
    """Mutants: the ``high=`` bounds dropped from ``config/schema.py``; ``neighbour_bound_error`` not called by
    ``parameter_type_error``. Before, these passed the config check and ran out of memory (or time) later."""
    refused([*TRAIN, override], capsys, pattern, work)


def test_batch_and_image_size_together_are_checked_against_memory(
    work: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each bound may hold while the product does not fit: the batch of float32 images alone is compared with
    the memory available (simulated: 64 MiB). Mutant: no ``_memory_checks`` in ``cross_checks``."""
    monkeypatch.setattr(limits, "available_memory", lambda: 64 << 20)
    refused([*TRAIN, "data.height=1024", "data.width=512", "train.target_batch=64", "train.source_batch=64"], capsys,
            r"one batch of \d+ images of 1024 x 512 \(\+ \d+ padding\) \(train.source_batch \+ train.target_batch, "
            r"data.height / width / pad\) needs about [\d.]+ \w+, more than the 64.0 MiB of memory available here "
            r"\(set in .*\): lower the batch or the image size", work)


def test_labels_neighbour_count_bound(work: Path, capsys: pytest.CaptureFixture) -> None:
    """``labels k=...`` above the bound is refused whatever N is. Mutant: the bound missing from
    ``check_fits_samples`` (then k < N passes on a large dump and builds an N x k graph)."""
    path = _dump(work / "f.npz")
    refused(["labels", "--features", str(path), "k=20000"], capsys,
            rf"f.npz: parameter 'k' of policy 'hcd' is 20,000; neighbour counts above {MAX_NEIGHBOURS:,}", work)


def test_evaluate_rerank_neighbour_bounds(work: Path, capsys: pytest.CaptureFixture) -> None:
    """Mutant: ``--k1`` checked only from below."""
    path = _dump(work / "f.npz")
    refused(["evaluate", "--split-by-camera", str(path), "--rerank", "--k1", "1000000"], capsys,
            rf"--k1 must be <= {MAX_NEIGHBOURS}, got 1000000", work)


# --------------------------------------------------------------------------- synth sizes
# the outputs lie under a file, so a regression that lets a size through is refused by the output check at
# once (a wrong message, a failed test) instead of rendering or writing for hours
OUT, PNG = ["--out", "a_file/d"], ["--preview", "a_file/g.png"]


@pytest.mark.parametrize(("flags", "pattern"), [
    ([*OUT, "--train-ids", "1000000000"], r"--train-ids must be <= 100000, got 1000000000"),
    ([*OUT, "--test-ids", "1000000000"], r"--test-ids must be <= 100000, got 1000000000"),
    ([*OUT, "--cams", "5000"], r"--cams must be <= 100, got 5000"),
    ([*OUT, "--images-per-cam", "100000"], r"--images-per-cam must be <= 1000, got 100000"),
    ([*OUT, "--height", "100000"], rf"--height must be <= {MAX_IMAGE_SIDE}, got 100000"),
    ([*PNG, "--width", "100000"], rf"--width must be <= {MAX_IMAGE_SIDE}, got 100000"),
    ([*PNG, "--ids", "1000000"], r"--ids must be <= 10000, got 1000000"),
])
def test_synth_sizes_are_bounded(work: Path, capsys: pytest.CaptureFixture, flags: list[str], pattern: str) -> None:
    """Mutant: the ``UPPER`` bounds removed from synth_cmd (without the outputs' trap the command would render or
    write for hours, or run out of memory)."""
    (work / "a_file").write_text("not a folder\n", encoding="utf-8")
    refused(["synth", *flags], capsys, pattern, work)


def _limited(limit: int):
    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    return apply


@pytest.mark.parametrize(("flags", "pattern"), [
    (["--out", "d", "--train-ids", "100000", "--test-ids", "100000", "--cams", "100", "--images-per-cam", "100"],
     r"--out would write about 6,000,000,000 images .*; at most 5,000,000 are written by one command"),
    (["--preview", "g.png", "--ids", "10000", "--shots", "100", "--cams", "100"],
     r"--preview of 10000 ids x 100 cameras x 100 shots at 128 x 64 needs about [\d.]+ TiB, more than the "),
])
def test_synth_size_estimates_refuse_before_any_work(tmp_path: Path, flags: list[str], pattern: str) -> None:
    """Each flag within its bound, together too much: refused before anything is rendered or written. Run in a
    subprocess limited to 4 GiB of data and 120 s, so that a regression fails the test instead of exhausting
    the machine. Mutant: no ``_check_sizes`` in synth_cmd."""
    import os
    import subprocess
    import sys

    from tests.reliability.fs_snapshot import tree_digest
    from tests.reliability.reliability_inputs import REPO

    before = tree_digest(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    try:
        done = subprocess.run([sys.executable, "-m", "streamlabel", "synth", *flags], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120, preexec_fn=_limited(4 << 30))
    except subprocess.TimeoutExpired:
        pytest.fail(f"streamlabel synth {' '.join(flags)} started the work")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(r"streamlabel synth: error: " + pattern, lines[0]), done.stderr[-2000:]
    assert tree_digest(tmp_path) == before


def test_synth_writes_within_free_disk(work: Path, capsys: pytest.CaptureFixture,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The images --out would write are compared with the free space (simulated: 1 KiB). Mutant: no disk
    estimate in ``_check_sizes``."""
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage(2048, 1024, 1024))
    (work / "a_file").write_text("not a folder\n", encoding="utf-8")
    small = ["--train-ids", "2", "--test-ids", "1", "--cams", "2", "--images-per-cam", "1"]  # a regression: 16 images
    refused(["synth", "--out", "d", *small], capsys, r"--out would write about 16 images of 64 x 32, at least "
                                                     r"[\d.]+ \w+, more than the 1.0 KiB free at ", work)
    # a file system of no size (/proc, /sys) is not "full": the output check names the real cause
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage(0, 0, 0))
    line = refused(["synth", *OUT], capsys, r"--out a_file/d: a_file is a file", work)
    assert "free" not in line


def test_a_number_of_processes_the_batches_cannot_be_split_over_is_refused() -> None:
    """Each process takes an equal share of a batch's identities: 3 processes and 8 identities cannot work.
    Mutant killed: check_world_size a no-op (the sampler's error came at the first epoch, after pretraining)."""
    from streamlabel.config.errors import ConfigError
    from streamlabel.engine.setup import check_world_size

    cfg = {"data": {"num_instances": 4}, "train": {"source_batch": 0, "target_batch": 32}}
    check_world_size(cfg, 1)
    check_world_size(cfg, 8)
    with pytest.raises(ConfigError, match=r"3 processes cannot share train.target_batch=32 \(8 identities x 4 "
                                          r"images\).*divides 8"):
        check_world_size(cfg, 3)
    with pytest.raises(ConfigError, match="1000 processes"):
        check_world_size(cfg, 1000)

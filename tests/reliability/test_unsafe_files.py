"""Checkpoints that hold arbitrary objects are refused as unsafe, and say why, in every form torch 2.14's
weights-only loader refuses them (an allow-list miss, a blocked module such as ``os``, a pickle instruction it
does not run); truncated or random files are still "truncated or corrupt". A FIFO is never opened.

Each case runs ``streamlabel evaluate --checkpoint`` in-process (the FIFO in a subprocess with a timeout) and
asserts exit 2, one error line, no traceback, an unchanged folder and that nothing in the file ran.
"""

from __future__ import annotations

import functools
import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from streamlabel.engine.checkpoint import CheckpointError, load_checkpoint
from tests.reliability.fs_snapshot import tree_digest
from tests.reliability.refusal_checks import refused
from tests.reliability.reliability_inputs import REPO

HEADER = {"format": "streamlabel-checkpoint", "version": 1, "fingerprint": "x"}
UNSAFE = r"checkpoint .*{name} was refused as unsafe: it holds an object a checkpoint never holds \({why}\); it " \
         r"was not loaded \(nothing in it ran\)"


class _System:
    """Unpickling calls os.system: a module torch blocks outright ('whose module posix is blocked')."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _WritesFile:
    """Unpickling calls Path.write_text: a global missing from the allow-list ('Unsupported global')."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "ran"))


class _Plain:
    """An instance of a class of the file's choosing."""

    def __init__(self) -> None:
        self.x = 1


def _save(path: Path, payload: object, **kwargs) -> Path:
    torch.save({"header": HEADER, "state": {"model": {}, "extra": payload}}, path, **kwargs)
    return path


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _cases(folder: Path, marker: Path) -> dict[str, tuple[Path, str]]:
    raw4 = folder / "raw4.pt"
    raw4.write_bytes(pickle.dumps({"header": HEADER, "state": {"x": _System(marker)}}, protocol=4))
    return {
        "blocked module (os.system)": (_save(folder / "system.pt", _System(marker)),
                                       UNSAFE.format(name="system.pt", why=r"it calls posix.system \(module posix: "
                                                                           r"loading it would run system calls\)")),
        "legacy format, blocked module": (_save(folder / "legacy.pt", _System(marker),
                                                _use_new_zipfile_serialization=False),
                                          UNSAFE.format(name="legacy.pt", why=r"it calls posix.system .*")),
        "global off the allow-list": (_save(folder / "writes.pt", _WritesFile(marker)),
                                      UNSAFE.format(name="writes.pt", why=r"it names the global (getattr|pathlib\S*), "
                                                                          r"which is not on the safe loader's "
                                                                          r"allow-list")),
        "builtin eval": (_save(folder / "eval.pt", eval),
                         UNSAFE.format(name="eval.pt", why=r"it names the global eval, .*allow-list")),
        "functools.partial": (_save(folder / "partial.pt", functools.partial(int, "3")),
                              UNSAFE.format(name="partial.pt", why=r"it names the global functools.partial.*")),
        "instance of a class": (_save(folder / "plain.pt", _Plain()),
                                UNSAFE.format(name="plain.pt", why=r"it names the global .*_Plain.*")),
        "pickle protocol 4 (torch.save)": (_save(folder / "p4.pt", _System(marker), pickle_protocol=4),
                                           UNSAFE.format(name="p4.pt", why=r"its pickle uses the instruction FRAME "
                                                                           r"\(opcode 149, pickle protocol 4\+\).*")),
        "raw pickle protocol 4": (raw4, UNSAFE.format(name="raw4.pt", why=r"its pickle uses the instruction FRAME.*")),
    }


CASES = ["blocked module (os.system)", "legacy format, blocked module", "global off the allow-list", "builtin eval",
         "functools.partial", "instance of a class", "pickle protocol 4 (torch.save)", "raw pickle protocol 4"]


@pytest.mark.parametrize("case", CASES)
def test_unsafe_checkpoint_is_refused_as_unsafe(work: Path, capsys: pytest.CaptureFixture, case: str) -> None:
    """Mutant: the refusal recognised only by torch's 'Unsupported global: GLOBAL x' wording (as it was): the
    blocked-module and protocol-4 forms of torch 2.14 were reported as 'truncated or corrupt: Weights only load
    failed'."""
    marker = work.parent / f"{work.name}_ran"
    path, pattern = _cases(work, marker)[case]
    line = refused(["evaluate", "--checkpoint", str(path)], capsys, pattern, work)
    assert "truncated or corrupt" not in line
    assert not marker.exists(), "code in the checkpoint ran"


@pytest.mark.parametrize("content", [os.urandom(3000), b"cGLOBAL text that reads as a pickle opcode\n" * 3,
                                     b"\x80\x02" + b"\x95" * 40])
def test_garbage_is_still_corrupt_not_unsafe(work: Path, capsys: pytest.CaptureFixture, content: bytes) -> None:
    """Random bytes, text whose first byte is GLOBAL's opcode, or a protocol header followed by opcode bytes
    trip the same loader errors; they are not a pickle at all. Mutant: every weights-only error reported as
    unsafe (no well-formedness check in ``weights_only_refusal``)."""
    path = work / "garbage.pt"
    path.write_bytes(content)
    line = refused(["evaluate", "--checkpoint", str(path)], capsys,
                   r"garbage.pt is not a streamlabel checkpoint \(truncated or corrupt: ", work)
    assert "unsafe" not in line


def test_refusal_detail_is_the_loader_line_not_its_advice(tmp_path: Path) -> None:
    """The corrupt message quotes what the loader found, not 'Weights only load failed'. Mutant: the first
    sentence of torch's message (as it was)."""
    path = tmp_path / "r.pt"
    path.write_bytes(b"\x80\x02K\x01\xff\xff")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, fingerprint=None)
    assert "Weights only load failed" not in str(info.value), info.value


def test_trusted_load_of_own_objects_still_works(tmp_path: Path) -> None:
    """``trusted=True`` lifts the refusal for a file you wrote (not reachable from the command line)."""
    buf = io.BytesIO()
    torch.save({"header": HEADER, "state": {"n": functools.partial(int, "3")}}, buf)
    path = tmp_path / "own.pt"
    path.write_bytes(buf.getvalue())
    assert load_checkpoint(path, fingerprint=None, trusted=True)["n"]() == 3


def test_fifo_checkpoint_is_refused_without_hanging(tmp_path: Path) -> None:
    """Mutant: no regular-file check in ``load_checkpoint_with_header`` (``torch.load`` opens the FIFO and
    waits for a writer for ever; the subprocess times out)."""
    fifo = tmp_path / "ckpt.pt"
    os.mkfifo(fifo)
    before = tree_digest(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    try:
        done = subprocess.run([sys.executable, "-m", "streamlabel", "evaluate", "--checkpoint", str(fifo)],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("streamlabel evaluate --checkpoint hung on a FIFO")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"checkpoint {fifo} is not a regular file (a FIFO, device or socket); it was not read" in done.stderr
    assert tree_digest(tmp_path) == before

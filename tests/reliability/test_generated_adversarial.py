"""The generated adversarial suite of issue 28: every command x every kind of bad input (adversarial_cases.py).

Each case runs in a fresh working folder (``streamlabel.launch.cli.main`` in-process, or ``python -m
streamlabel`` for the signal cases) and asserts four things:

1. the exit code;
2. a stderr line that names the cause (the case's regular expression; on a successful exit only for the
   cases that must warn);
3. no ``Traceback`` in stdout or stderr (an exception escaping ``main`` counts as one);
4. no file outside the case's named outputs changed: ``tree_digest`` of the working folder (which holds every
   input) and of ``configs/`` before and after.

Guards keep a case that should have been refused from running away: unless the case may train (tiny configs
only), the command is stopped where training begins (checkpoint restore, first feature pass, first step); absurd
thread counts and synthetic sizes stop before they allocate; an in-process case that does not return in its time
limit is interrupted (SIGALRM). A guard stop or a hang fails the case like a traceback.
Permission cases (chmod 000 inputs, read-only folders) run without the capabilities that let root ignore file
modes (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) when the suite runs as root.

``python benchmarks/adversarial_report.py`` prints the count of cases by command and outcome.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

import pytest
import torch

from streamlabel.launch import cli
from tests.helpers.signals import default_sigint
from tests.reliability.adversarial_cases import COMMANDS, KNOWN_BUGS, REPO, Case, cases, changes_outside
from tests.reliability.fs_snapshot import tree_digest

pytestmark = pytest.mark.usefixtures("single_thread")

CASES = cases()
MAX_THREADS = 64
TRAINING_STARTS = ("_restore", "_init_source_memory", "run_step")  # Trainer methods where training begins
MAX_PIXELS = 2_000_000_000  # synthetic images x height x width x 3 a case may render


class Guard(BaseException):
    """A guard stopped the command: it went on where it should have stopped (BaseException: never swallowed)."""


class Hang(BaseException):
    """The in-process command did not return within the case's time limit."""


def _install_guards(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlabel.data import synthetic
    from streamlabel.engine import trainer

    if not case.trains:
        def stop(*_args, **_kwargs):
            raise Guard("reached the training loop: the command should have stopped before any training")

        for name in TRAINING_STARTS:
            monkeypatch.setattr(trainer.Trainer, name, stop, raising=False)

    set_threads = torch.set_num_threads

    def capped_threads(n: int) -> None:
        if n > MAX_THREADS:
            raise Guard(f"torch.set_num_threads({n}) was called: no upper bound checked")
        set_threads(n)

    monkeypatch.setattr(torch, "set_num_threads", capped_threads)

    write_market = synthetic.write_synthetic_market

    def capped_market(root, seed=0, domain="source", overwrite=False, *args, **sizes):
        images = ((sizes.get("num_train_ids", 100) + sizes.get("num_test_ids", 50)) * sizes.get("num_cams", 4)
                  * sizes.get("images_per_cam", 4))
        if images * sizes.get("height", 128) * sizes.get("width", 64) * 3 > MAX_PIXELS:
            raise Guard(f"write_synthetic_market({sizes}) was called: no upper bound checked")
        return write_market(root, seed, domain, overwrite, *args, **sizes)

    monkeypatch.setattr(synthetic, "write_synthetic_market", capped_market)
    preview = synthetic.preview_grid

    def capped_preview(domain="source", seed=0, ids=8, shots=2, num_cams=4, height=128, width=64):
        if ids * shots * num_cams * height * width * 3 * 2 > MAX_PIXELS:
            raise Guard(f"preview_grid(ids={ids}, height={height}, width={width}) was called: no upper bound")
        return preview(domain, seed, ids, shots, num_cams, height, width)

    monkeypatch.setattr(synthetic, "preview_grid", capped_preview)


def _on_alarm(_signum, _frame):
    raise Hang("no exit within the time limit (a hang)")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_CAP_V3 = 0x20080522  # _LINUX_CAPABILITY_VERSION_3
_DAC = (1 << 1) | (1 << 2)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH: what lets root ignore file modes


def _capabilities(update=None) -> int | None:
    """This thread's effective capability bits 0-31 (Linux), set to ``update`` first if given; None elsewhere."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        header, data = _CapHeader(_CAP_V3, 0), (_CapData * 2)()
        if libc.capget(ctypes.byref(header), data) != 0:
            return None
        if update is not None:
            data[0].effective = update
            if libc.capset(ctypes.byref(_CapHeader(_CAP_V3, 0)), data) != 0:
                return None
        return int(data[0].effective)
    except (OSError, AttributeError):
        return None


def _can_drop_dac() -> bool:
    caps = _capabilities()
    return caps is not None and (not caps & _DAC or _capabilities(caps) == caps)


@contextlib.contextmanager
def _file_modes_enforced(case: Case):
    """For a permission case, this thread without the capabilities that let root ignore file modes (a no-op
    for other users, whom the modes already bind). The command's file access happens on this thread."""
    caps = _capabilities() if case.nonroot else None
    if not caps or not caps & _DAC:
        yield
        return
    _capabilities(caps & ~_DAC)
    try:
        yield
    finally:
        _capabilities(caps)


def _run_in_process(case: Case, monkeypatch: pytest.MonkeyPatch) -> tuple[int | None, str]:
    """Exit code of ``cli.main`` (None when something escaped it) and what escaped, as the user would see it."""
    _install_guards(case, monkeypatch)
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, case.timeout)
    try:
        with _file_modes_enforced(case):
            code = cli.main(list(case.argv))
        return code, ""
    except SystemExit as exit_:  # argparse's own errors
        return (exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)), ""
    except Hang as hang:
        return None, f"{hang} after {case.timeout:.0f} s"
    except Guard as guard:
        return None, f"guard: {guard}"
    except BaseException as err:  # noqa: BLE001 - whatever escapes main is the user's traceback
        return None, "".join(traceback.format_exception(err))[-4000:]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def _start_holder(case: Case, work: Path) -> subprocess.Popen:
    """A `train` paused after its first adaptation iteration (kill_target.py), holding the run folder."""
    holder = subprocess.Popen([sys.executable, str(REPO / "tests" / "reliability" / "kill_target.py"), *case.holder],
                              cwd=work, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    deadline = time.monotonic() + 120
    lines = []
    for line in holder.stdout:
        lines.append(line)
        if line.startswith("PAUSED-FOR-KILL") or time.monotonic() > deadline:
            break
    if not any(line.startswith("PAUSED-FOR-KILL") for line in lines):
        _stop(holder)
        pytest.fail("the holding run did not reach its pause: " + "".join(lines)[-2000:])
    return holder


def _stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _run_subprocess(case: Case, work: Path) -> tuple[int | None, str, str, str]:
    """Exit code (None: it hung), stdout, stderr and a note of `python -m streamlabel` in ``work``."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "streamlabel", *case.argv], cwd=work, env=_env(), stdout=out,
                                stderr=err, text=True, start_new_session=True, preexec_fn=default_sigint)
        note = ""
        deadline = time.monotonic() + case.timeout
        try:
            if case.interrupt_when:
                while not (work / case.interrupt_when).exists() and proc.poll() is None:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
                else:
                    note = f"it ended before {case.interrupt_when} appeared"
            code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _stop(proc)
            code, note = None, f"no exit within {case.timeout:.0f} s (a hang)"
        out.seek(0)
        err.seek(0)
        return code, out.read(), err.read(), note


def _apply_modes(case: Case, work: Path) -> None:
    if case.nonroot and os.geteuid() == 0 and not _can_drop_dac():
        pytest.skip("running as root, which ignores file modes, and the DAC capabilities cannot be dropped")
    for rel, mode in case.chmod:
        (work / rel).chmod(mode)


def _restore_permissions(work: Path) -> None:
    """Modes that let the folder be removed (a case may leave chmod 000 / 555 entries)."""
    for folder, dirs, files in os.walk(work):
        for name in dirs + files:
            path = Path(folder) / name
            if not path.is_symlink():
                with contextlib.suppress(OSError):
                    path.chmod(0o755 if path.is_dir() else 0o644)
        with contextlib.suppress(OSError):
            Path(folder).chmod(0o755)


def _params():
    out = []
    for case in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
        if case.nonroot and os.name != "posix":
            marks.append(pytest.mark.skip(reason="POSIX permissions"))
        out.append(pytest.param(case, id=case.name, marks=marks))
    return out


@pytest.mark.parametrize("case", _params())
def test_generated_case(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                        capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    work = tmp_path / "work"
    work.mkdir()
    holder = None
    try:
        monkeypatch.chdir(work)
        for build in case.setup:
            build(work)
        _apply_modes(case, work)
        if case.holder:
            holder = _start_holder(case, work)
        capfd.readouterr()  # whatever the setup printed
        before, configs_before = tree_digest(work), tree_digest(REPO / "configs")
        if case.subprocess:
            code, out, err, escaped = _run_subprocess(case, work)
        else:
            code, escaped = _run_in_process(case, monkeypatch)
            out, err = capfd.readouterr()
        after, configs_after = tree_digest(work), tree_digest(REPO / "configs")
    finally:
        if holder is not None:
            _stop(holder)
        _restore_permissions(work)
    tail = "\n".join(err.splitlines()[-8:])
    problems = []  # every assertion that fails, so a report shows the whole picture (e.g. data loss + hang)
    # 3. no traceback (anything escaping main is one), no hang, no guard stop
    if escaped:
        problems.append(escaped)
    if "Traceback" in out + err:
        problems.append(f"a traceback was printed:\n{err[-3000:]}")
    # 1. the exit code
    if code not in case.codes and not escaped:
        problems.append(f"exit {code}, expected {' or '.join(map(str, case.codes))}")
    # 2. the message names the cause (a warning's too, for the cases that must warn when they succeed)
    needs_message = case.message and code is not None and (code != 0 or case.warns)
    if needs_message and not any(re.search(case.message, line) for line in err.splitlines()):
        problems.append(f"no stderr line matches {case.message!r}")
    # 4. nothing outside the named outputs changed
    changed = changes_outside(before, after, case.outputs, case.keep)
    if changed:
        problems.append(f"changed outside the outputs {case.outputs} (or inside keep {case.keep}): {changed[:8]}"
                        + (f" and {len(changed) - 8} more" if len(changed) > 8 else ""))
    if configs_before != configs_after:
        problems.append("the repository's configs/ changed")
    assert not problems, "\n".join(problems) + f"\nstderr tail:\n{tail}"


def test_the_generated_suite_covers_every_command() -> None:
    assert len(CASES) >= 100
    assert len({c.name for c in CASES}) == len(CASES), "case names must be unique"
    per_command = Counter(c.command for c in CASES)
    assert set(per_command) == set(COMMANDS), per_command
    assert min(per_command.values()) >= 10, per_command
    assert not set(KNOWN_BUGS) - {c.name for c in CASES}, "KNOWN_BUGS names cases that do not exist"
    from streamlabel.engine.trainer import Trainer

    assert all(hasattr(Trainer, name) for name in TRAINING_STARTS), "the training guard patches methods that are gone"
    for case in CASES:
        assert case.name.startswith(case.command + "_"), case.name
        assert case.codes == (0,) or case.message, f"{case.name}: a refusal must name its cause"
        re.compile(case.message)

"""One run per output folder: ``<output_dir>/.streamlabel.lock`` holds the pid of the run writing there.

The lock is an advisory ``flock`` on that file, so the operating system drops it when its process dies,
however it dies. A lock file left behind by a dead run (``kill -9``, power loss) is therefore *stale*: it
is reported by pid and taken over with a warning, never silently. A live holder, or a holder on another
host that this one cannot check, stops the new run with the holder's pid and start time.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from streamlabel.engine.checkpoint import CheckpointError

try:  # POSIX; elsewhere the lock is an exclusive create, and a stale one must be removed by hand
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "RunLock", "RunLockError"]

LOCK_NAME = ".streamlabel.lock"


class RunLockError(CheckpointError):
    """Another run writes to this output folder (or did, and its lock cannot be checked)."""


def _holder(text: str) -> dict:
    try:
        info = json.loads(text)
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def _describe(info: dict) -> str:
    if not info:
        return "a run of unknown pid"
    return f"pid {info.get('pid')} on {info.get('host')} (started {info.get('started')})"


class RunLock:
    """``with RunLock(folder):`` holds ``folder``'s lock for the block; creates the folder if needed and
    removes it again on exit when it is empty (a refused run leaves no folder behind)."""

    def __init__(self, folder: Path, *, warn: Callable[[str], None] | None = None) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._warn = warn or (lambda line: print(f"[streamlabel] warning: {line}", file=sys.stderr))
        self._fd: int | None = None
        self._made: list[Path] = []

    def __enter__(self) -> RunLock:
        self._made = [p for p in (self.folder, *self.folder.parents) if not p.exists()][::-1]
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self._acquire()
        except BaseException:
            self._remove_made_folders()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.release()

    def _acquire(self) -> None:
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        if fcntl is None:  # pragma: no cover - Windows
            self._acquire_exclusive(me)
            return
        while True:
            if self.path.is_symlink() or (self.path.exists() and not self.path.is_file()):
                raise RunLockError(f"{self.path} is not a regular file (a link, a folder or a FIFO): it is not a "
                                   f"lock streamlabel wrote, so it is not touched; remove it if no run uses "
                                   f"{self.folder}")
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                info = _holder(os.read(fd, 4096).decode("utf-8", "replace"))
                os.close(fd)
                raise RunLockError(
                    f"output_dir {self.folder} is in use by another streamlabel run ({_describe(info)}); wait for "
                    f"it to finish or choose another output_dir") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the holder removed the file between our open and our flock: try again
                os.close(fd)
                continue
            break
        previous = _holder(os.read(fd, 4096).decode("utf-8", "replace"))
        if previous:
            if previous.get("host") not in (None, me["host"]):
                os.close(fd)
                raise RunLockError(
                    f"output_dir {self.folder} is locked by {_describe(previous)}, another host this one cannot "
                    f"check; if no run uses the folder, delete {self.path}")
            self._warn(f"output_dir {self.folder}: taking over the lock of {_describe(previous)}, which is no "
                       f"longer running (it stopped without releasing it)")
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(me) + "\n").encode())
        os.fsync(fd)
        self._fd = fd

    def _acquire_exclusive(self, me: dict) -> None:  # pragma: no cover - Windows
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            info = _holder(self.path.read_text(encoding="utf-8", errors="replace"))
            raise RunLockError(f"output_dir {self.folder} is locked by {_describe(info)}; if no run uses the "
                               f"folder, delete {self.path}") from None
        os.write(fd, (json.dumps(me) + "\n").encode())
        self._fd = fd

    def release(self) -> None:
        """Remove the lock file (ours: we hold its lock) and the folders this lock created if empty."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = None
        self._remove_made_folders()

    def _remove_made_folders(self) -> None:
        for folder in reversed(self._made):
            with contextlib.suppress(OSError):  # not empty (the run wrote there) or gone: left as it is
                folder.rmdir()
        self._made = []

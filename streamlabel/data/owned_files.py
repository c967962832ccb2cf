"""Files streamlabel wrote itself, and the proof: a manifest of their paths and SHA-256 digests.

A folder is cleared only of files the manifest lists *with the same content*: a file the user added,
replaced or edited is not provably ours, so its folder is never cleared and the caller stops instead.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ForeignFilesError", "Manifest", "describe_foreign", "digest", "probe_writable", "read_json_meta",
           "write_problem"]

MAX_SHOWN = 3  # foreign paths named in an error


class ForeignFilesError(FileExistsError):
    """A folder streamlabel would write into holds files it cannot prove it wrote."""


def digest(data: bytes) -> str:
    """SHA-256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _file_digest(path: Path) -> str | None:
    """SHA-256 of a regular file's content; None for anything else (a FIFO is never opened: it would block)."""
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return None
        return digest(path.read_bytes())
    except OSError:
        return None


MAX_META_BYTES = 64 << 20  # a manifest of millions of files stays below this


def read_json_meta(path: Path) -> object:
    """The JSON in one of streamlabel's own small metadata files, or None when there is none to trust: missing,
    not a regular file (a FIFO is never opened: it would block), too large, or not JSON."""
    try:
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_META_BYTES:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@dataclass
class Manifest:
    """Paths (relative to ``root``, '/'-separated) of the files and folders streamlabel created there."""

    root: Path
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256 of what was written
    folders: list[str] = field(default_factory=list)  # folders created, parents first

    @classmethod
    def from_json(cls, root: Path, entry: object) -> Manifest | None:
        """The manifest recorded in a meta file's ``written`` entry; None when it is not one of ours."""
        if not isinstance(entry, dict):
            return None
        files, folders = entry.get("files"), entry.get("folders", [])
        if not isinstance(files, dict) or not isinstance(folders, list):
            return None
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
            return None
        if not all(isinstance(f, str) for f in folders) or any(_escapes(p) for p in [*files, *folders]):
            return None
        return cls(root, dict(files), list(folders))

    def to_json(self) -> dict:
        return {"files": dict(sorted(self.files.items())), "folders": list(self.folders)}

    def make_folder(self, folder: Path) -> None:
        """``mkdir -p`` that records each folder it creates."""
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        for path in reversed(missing):
            path.mkdir()
            if self.root in path.parents:  # the root and its parents are the caller's, not listed
                self.folders.append(self._relative(path))

    def write_file(self, path: Path, data: bytes) -> None:
        """Write ``data`` to ``path`` (never over an existing file) and record its digest."""
        with open(path, "xb") as handle:
            handle.write(data)
        self.files[self._relative(path)] = digest(data)

    def foreign_files(self, paths: Iterable[Path]) -> list[Path]:
        """Every file or folder at or under ``paths`` that this manifest does not prove ours (unlisted, or
        changed since it was written)."""
        known_dirs = set(self.folders)
        foreign: list[Path] = []
        for folder in paths:
            if not folder.exists() and not folder.is_symlink():
                continue
            if folder.is_file() and not folder.is_symlink():
                if not self.proves(folder):
                    foreign.append(folder)
                continue
            if not folder.is_dir() or folder.is_symlink():
                foreign.append(folder)
                continue
            for path in sorted(folder.rglob("*")):
                rel = self._relative(path)
                if path.is_dir() and not path.is_symlink():
                    if rel not in known_dirs:
                        foreign.append(path)
                elif not self.proves(path):
                    foreign.append(path)
        return foreign

    def remove_written(self, folders: Iterable[Path]) -> None:
        """Delete the files under ``folders`` whose content is still what we wrote, then the folders we made
        if they are empty. Call :meth:`foreign_files` first: anything not proven ours stays."""
        folders = list(folders)
        for rel in list(self.files):
            path = self.root / rel
            inside = any(folder in path.parents for folder in folders)
            if inside and self.proves(path):
                path.unlink()
                del self.files[rel]
        for rel in reversed(list(self.folders)):
            path = self.root / rel
            inside = any(path == folder or folder in path.parents for folder in folders)
            if inside and path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
                path.rmdir()
                self.folders.remove(rel)

    def proves(self, path: Path) -> bool:
        """Whether the manifest lists ``path`` with its current content (a link or a FIFO never is)."""
        listed = self.files.get(self._relative(path))
        return listed is not None and not path.is_symlink() and listed == _file_digest(path)

    def _relative(self, path: Path) -> str:
        return Path(os.path.relpath(path, self.root)).as_posix()


def _escapes(rel: str) -> bool:
    """A manifest path that points outside its root (absolute, or through '..'): never trusted."""
    return rel.startswith("/") or ".." in Path(rel).parts or rel in ("", ".")


def write_problem(folder: Path) -> str | None:
    """Why a new file cannot be created in the existing ``folder`` (the system's words), or None when it can:
    probed with a temporary file this function creates and removes; nothing else is touched."""
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".streamlabel-probe-")
    except OSError as err:
        return str(err.strerror or err)
    os.close(handle)
    os.unlink(probe)
    return None


def probe_writable(folders: Iterable[Path]) -> None:
    """Refuse (PermissionError naming the folder) when any existing folder of ``folders`` cannot take a new
    file, before anything is deleted or written."""
    for folder in folders:
        problem = write_problem(folder) if folder.is_dir() else None
        if problem:
            raise PermissionError(errno.EACCES, f"cannot write in {folder} ({problem}); nothing was deleted or "
                                                f"written")


def describe_foreign(paths: list[Path]) -> str:
    """'a, b, c and 4 more' for an error message."""
    shown = ", ".join(str(p) for p in paths[:MAX_SHOWN])
    return shown + (f" and {len(paths) - MAX_SHOWN} more" if len(paths) > MAX_SHOWN else "")

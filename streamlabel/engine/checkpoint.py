"""Crash-safe checkpoints for exact resume.

A streamlabel checkpoint holds everything a run needs to continue bit-exactly (DESIGN.md
section 6 item 6): model weights, optimizer and scheduler state, the policy's banks and
labels, the RNG states (:mod:`streamlabel.engine.rng`), and the config.  This module only
moves that dict to and from disk; what goes into it is the engine's business.

Guarantees
----------
* **Atomic.**  :func:`save_checkpoint` writes to a temporary file in the target directory
  (``.<name>.<pid>.<random>.streamlabel-tmp``), flushes and ``fsync``\\ s it, ``os.replace``\\ s
  it onto the final name and ``fsync``\\ s the directory.  A crash or ``kill -9`` at any point
  leaves either the old file set or the new one, never a half-written file under a
  checkpoint name.
* **A pointer to the newest one.**  ``latest.txt`` in the same directory names the newest
  checkpoint file on its first line, followed by the older checkpoints still kept (newest
  first).  It is written atomically the same way, *after* the checkpoint is in place, so it
  never names a file that is not complete.  :func:`find_latest` reads it.
* **Rotation after safety.**  Only the ``keep`` newest checkpoints listed in the pointer are
  kept; older ones are deleted only once the new checkpoint and the pointer are durable, and
  only when ``.streamlabel-checkpoints.json`` proves this code wrote that very file (device,
  inode, size and mtime recorded when it was written). Files the pointer never listed, or that
  were replaced since, are never deleted.
* **Failures are loud and harmless.**  Any error while writing (disk full, permission, an
  unpicklable object) removes the temporary file, leaves the previous checkpoint and pointer
  untouched and raises :class:`CheckpointError` with the path and the free space.
* **No silent mixing of runs.**  Every checkpoint carries a header with the config
  fingerprint; :func:`load_checkpoint` refuses a checkpoint written by another configuration
  and lists the config keys that differ.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import pickle
import shutil
import stat
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from streamlabel.data.owned_files import read_json_meta
from streamlabel.models.weights import unpickler_detail, weights_only_refusal

__all__ = [
    "FORMAT",
    "LATEST_NAME",
    "VERSION",
    "CheckpointError",
    "CheckpointKeyError",
    "CheckpointState",
    "config_diff",
    "find_latest",
    "find_resumable",
    "load_checkpoint",
    "load_checkpoint_with_header",
    "save_checkpoint",
]

FORMAT = "streamlabel-checkpoint"
VERSION = 1
LATEST_NAME = "latest.txt"
WRITTEN_NAME = ".streamlabel-checkpoints.json"  # the identity of every checkpoint written: rotation's proof
_TMP_SUFFIX = ".streamlabel-tmp"
_MAX_DIFF_KEYS = 10


class CheckpointError(RuntimeError):
    """A checkpoint could not be written, found, read, or does not belong to this run."""


class CheckpointKeyError(CheckpointError, KeyError):
    """A checkpoint lacks an entry the caller needs (also a KeyError, shown without quotes)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class CheckpointState(dict):
    """The state dict of a loaded checkpoint: a missing entry is a :class:`CheckpointKeyError` naming the file
    and the entry, not a bare ``KeyError: 'x'``."""

    source: str = "the checkpoint"

    def __missing__(self, key: object) -> object:
        have = ", ".join(sorted(str(k) for k in self)) or "nothing"
        raise CheckpointKeyError(f"checkpoint {self.source} has no {key!r} entry (it has: {have}); it was not "
                                 "written by this version of streamlabel train, or was edited")


# ----------------------------------------------------------------------------- helpers


def _free_space(directory: Path) -> str:
    """Human readable free space of the file system holding ``directory`` (or why it is unknown)."""
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError as exc:
        return f"free space unknown ({exc.strerror or exc})"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if free < 1024 or unit == "TiB":
            return f"{free:.1f} {unit} free" if unit != "B" else f"{free} B free"
        free /= 1024
    return ""  # unreachable


def _describe(exc: BaseException) -> str:
    """The error text, with the OSError buried under torch's RuntimeError wrapper when there is one."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError):
            if seen.errno == errno.ENOSPC:
                return f"no space left on device ({seen})"
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    return f"{type(exc).__name__}: {exc}"


def _fsync_dir(directory: Path) -> None:
    """Make a rename/unlink in ``directory`` durable.  Not possible on Windows; skipped there."""
    if os.name == "nt":  # pragma: no cover - directories cannot be opened for fsync on Windows
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(final: Path, write) -> None:
    """Write ``final`` via ``write(fileobj)`` into a temp file + fsync + ``os.replace`` + directory fsync.

    On any exception the temporary file is removed and the exception propagates; ``final``
    is untouched unless ``os.replace`` already succeeded.
    """
    directory = final.parent
    try:
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{final.name}.{os.getpid()}.", suffix=_TMP_SUFFIX)
    except OSError as err:  # name the file the user asked for, not our temporary name
        raise type(err)(err.errno, err.strerror, str(final)) from err
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(directory)


def _first_sentence(exc: BaseException) -> str:
    """The first sentence of an error text: torch's loader appends paragraphs of generic advice."""
    text = " ".join(str(exc).split())
    return text.split(". ")[0].rstrip(".")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _remove_stale_temps(directory: Path) -> None:
    """Delete temp files left by writers that died mid-write (``kill -9``, power loss).

    Only files with our temp suffix whose embedded pid is no longer running are removed, so a
    concurrent writer in another live process is never disturbed.
    """
    for p in directory.glob(f".*{_TMP_SUFFIX}"):
        if p.is_symlink() or not p.is_file():  # a temp file is a regular file we made; nothing else is touched
            continue
        parts = p.name[: -len(_TMP_SUFFIX)].rsplit(".", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid == os.getpid() or _pid_alive(pid):
            continue
        with contextlib.suppress(OSError):
            p.unlink()


def _identity(path: Path) -> list[int] | None:
    """What identifies the very file at ``path`` (device, inode, size, mtime), links not followed; None when
    there is no regular file."""
    try:
        info = path.lstat()
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns]


def _read_written(directory: Path) -> dict[str, list[int]]:
    """The checkpoints this code wrote in ``directory`` and their identities (``WRITTEN_NAME``)."""
    meta = read_json_meta(directory / WRITTEN_NAME)
    files = meta.get("files") if isinstance(meta, dict) and meta.get("format") == WRITTEN_NAME else None
    if not isinstance(files, dict):
        return {}
    return {k: v for k, v in files.items() if isinstance(k, str) and isinstance(v, list)}


def _read_pointer(directory: Path) -> list[str]:
    """Checkpoint file names listed in ``latest.txt``, newest first (empty when there is no pointer)."""
    pointer = directory / LATEST_NAME
    if pointer.exists() and not pointer.is_file():  # a FIFO would block the read, a folder cannot be one
        raise CheckpointError(f"checkpoint pointer {pointer} is not a regular file; move it away (the checkpoints "
                              f"beside it are found by their headers then)")
    try:
        text = pointer.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"cannot read checkpoint pointer {directory / LATEST_NAME}: {exc}") from exc
    names = []
    for line in text.splitlines():
        name = line.strip()
        # Only plain names in this directory: the pointer never sends us elsewhere.
        if name and name not in names and "/" not in name and "\\" not in name and name not in (".", ".."):
            names.append(name)
    return names


def _short(fp: str | None) -> str:
    if not fp:
        return "<none>"
    return fp if len(fp) <= 12 else fp[:12] + ".."


def config_diff(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """Dotted keys where two nested config dicts differ (added, removed or changed), sorted.

    Non-dict values (lists, scalars, strings) are compared as a whole.
    """
    if isinstance(saved, Mapping) and isinstance(current, Mapping):
        out: list[str] = []
        for key in sorted(set(saved) | set(current), key=str):
            dotted = f"{prefix}.{key}" if prefix else str(key)
            if key not in saved or key not in current:
                out.append(dotted)
            else:
                out.extend(config_diff(saved[key], current[key], dotted))
        return out
    try:
        same = bool(saved == current) and type(saved) is type(current)
    except Exception:  # e.g. array-like values whose == is elementwise
        same = False
    return [] if same else [prefix or "<root>"]


# ----------------------------------------------------------------------------- public API


def find_latest(directory: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint in ``directory`` according to its ``latest.txt``, or ``None``.

    If the newest named file has gone (deleted by hand), the next older one still listed is
    returned.  Temporary files from an interrupted write are never considered.
    """
    directory = Path(directory)
    for name in _read_pointer(directory):
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def find_resumable(directory: str | os.PathLike) -> Path | None:
    """The checkpoint a resume continues from: the one ``latest.txt`` names, or, when the pointer is missing,
    empty or names no existing file, the newest complete checkpoint in ``directory`` by its own header
    (``progress``, then ``saved_at``). ``None`` only when the folder holds no ``*.pt`` file at all; ``*.pt``
    files none of which is a readable streamlabel checkpoint raise :class:`CheckpointError`, so a resume
    never starts over on top of them."""
    directory = Path(directory)
    latest = find_latest(directory)
    if latest is not None:
        return latest
    files = sorted(p for p in directory.glob("*.pt") if p.is_file()) if directory.is_dir() else []
    if not files:
        return None
    ranked, refused = [], []
    for path in files:
        header = _read_header(path)
        if header is None:
            refused.append(path.name)
            continue
        progress = header.get("progress")
        ranked.append(((1, list(progress)) if isinstance(progress, list) else (0, []), str(header.get("saved_at")),
                       path))
    if not ranked:
        shown = ", ".join(refused[:3]) + (f" and {len(refused) - 3} more" if len(refused) > 3 else "")
        raise CheckpointError(
            f"{directory} holds {len(files)} .pt file(s) ({shown}) but no complete streamlabel checkpoint and no "
            f"usable {LATEST_NAME}; --resume does not start over on top of them: move them away or choose "
            f"another output_dir")
    return max(ranked, key=lambda item: (item[0], item[1]))[2]


def _read_header(path: Path) -> dict | None:
    """The header of a streamlabel checkpoint file (tensors memory-mapped, not read), or None."""
    try:
        with torch.serialization.safe_globals(numpy_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return None
    header = obj.get("header") if isinstance(obj, dict) else None
    if isinstance(header, dict) and header.get("format") == FORMAT and isinstance(obj.get("state"), dict):
        return header
    return None


def save_checkpoint(
    path: str | os.PathLike, state: dict, *, fingerprint: str, keep: int = 2,
    progress: tuple[int, ...] | None = None,
) -> Path:
    """Atomically write ``state`` to ``path``, point ``latest.txt`` at it and keep the ``keep`` newest.

    ``state`` is any ``torch.save``-able dict (state dicts, tensors, RNG state, config).  It is
    stored under a header ``{"format", "version", "fingerprint", "saved_at", "progress"}`` so loading can
    recognise the file and check it belongs to this configuration; ``progress`` (e.g. phase, epoch,
    iteration) orders the checkpoints of a folder when its ``latest.txt`` is lost (:func:`find_resumable`).

    Returns the final path.  Raises :class:`CheckpointError` if anything fails while writing;
    the previous checkpoint and pointer are then left exactly as they were.
    """
    if not isinstance(state, dict):
        raise TypeError(f"checkpoint state must be a dict, got {type(state).__name__}")
    if not isinstance(fingerprint, str) or not fingerprint:
        raise ValueError("save_checkpoint needs a non-empty config fingerprint string")
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    final = Path(path)
    if final.name == LATEST_NAME or final.name.endswith(_TMP_SUFFIX):
        raise ValueError(f"{final.name!r} is reserved for the checkpoint pointer / temp files")
    if final.is_dir():
        raise ValueError(f"checkpoint path {final} is a directory; pass a file name inside it")
    directory = final.parent

    header = {
        "format": FORMAT,
        "version": VERSION,
        "fingerprint": fingerprint,
        "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "progress": list(progress) if progress is not None else None,
    }
    # a plain dict: a loaded CheckpointState saved again must still load with weights_only=True
    payload = {"header": header, "state": dict(state) if type(state) is not dict else state}

    try:
        directory.mkdir(parents=True, exist_ok=True)
        previous = _read_pointer(directory)
    except OSError as exc:
        raise CheckpointError(
            f"cannot prepare checkpoint directory {directory}: {_describe(exc)}; {_free_space(directory)}"
        ) from exc
    _remove_stale_temps(directory)

    try:
        atomic_write(final, lambda fh: torch.save(payload, fh))
    except Exception as exc:
        raise CheckpointError(
            f"writing checkpoint {final} failed: {_describe(exc)}; {_free_space(directory)}; "
            f"the previous checkpoint{' ' + previous[0] if previous else ''} is untouched"
        ) from exc

    kept = [final.name] + [n for n in previous if n != final.name and (directory / n).is_file()]
    kept, drop = kept[:keep], kept[keep:]
    try:
        atomic_write(directory / LATEST_NAME, lambda fh: fh.write(("\n".join(kept) + "\n").encode("utf-8")))
    except Exception as exc:
        # The new checkpoint is complete but unreferenced: remove it so the directory is exactly as before,
        # unless it replaced a file of the same name (then the old contents are gone already and this one is valid).
        if final.name not in previous:
            with contextlib.suppress(OSError):
                final.unlink()
        raise CheckpointError(
            f"updating checkpoint pointer {directory / LATEST_NAME} failed: {_describe(exc)}; "
            f"{_free_space(directory)}; the previous pointer is untouched"
        ) from exc

    written = _read_written(directory)
    written[final.name] = _identity(final)
    removed = False
    for name in drop:
        path = directory / name
        if written.get(name) != _identity(path):  # listed, but not provably the file this code wrote there
            if path.exists() or path.is_symlink():
                warnings.warn(f"not removing {path}: {LATEST_NAME} lists it, but streamlabel cannot prove it wrote "
                              f"that file (it was replaced or written by something else)", RuntimeWarning, stacklevel=2)
            written.pop(name, None)
            continue
        try:
            path.unlink()
            removed = True
            del written[name]
        except FileNotFoundError:
            del written[name]
        except OSError as exc:  # rotation failing must not fail a save that succeeded
            warnings.warn(f"could not remove old checkpoint {path}: {exc}", RuntimeWarning, stacklevel=2)
    with contextlib.suppress(OSError):  # without the record, old checkpoints are only kept, never lost
        text = json.dumps({"format": WRITTEN_NAME, "files": written}, indent=1).encode()
        atomic_write(directory / WRITTEN_NAME, lambda fh: fh.write(text))
    if removed:
        with contextlib.suppress(OSError):
            _fsync_dir(directory)
    return final


def numpy_globals() -> list:
    """The numpy names a checkpoint may hold besides tensors (arrays, dtypes, scalars): the allow-list of
    ``torch.load(weights_only=True)``. Rebuilding an array runs no code of the file's choosing."""
    import numpy as np

    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    dtypes = {type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDGSUV"}
    return [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype, *sorted(dtypes, key=str)]


def load_checkpoint_with_header(
    path_or_dir: str | os.PathLike,
    *,
    fingerprint: str | None,
    map_location: Any = "cpu",
    config: dict | None = None,
    trusted: bool = False,
) -> tuple[dict, dict]:
    """Like :func:`load_checkpoint` but returns ``(header, state)``."""
    target = Path(path_or_dir)
    if target.is_dir():
        latest = find_latest(target)
        if latest is None:
            raise CheckpointError(f"no checkpoint in {target} (no {LATEST_NAME} naming an existing checkpoint file)")
        listed = _read_pointer(target)
        if listed and latest.name != listed[0]:
            warnings.warn(f"{target / LATEST_NAME} names {listed[0]} first, which is missing or not a regular file; "
                          f"loading the older {latest.name}", RuntimeWarning, stacklevel=2)
        target = latest
    elif not target.exists():
        raise CheckpointError(f"checkpoint {target} does not exist")
    mode = target.stat().st_mode
    if not stat.S_ISREG(mode):  # a FIFO would block the read forever, a device never end
        raise CheckpointError(f"checkpoint {target} is not a regular file (a FIFO, device or socket); it was not "
                              "read")

    try:
        with torch.serialization.safe_globals(numpy_globals()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # the refusal says it better
            obj = torch.load(target, map_location=map_location, weights_only=not trusted)
    except pickle.UnpicklingError as exc:
        refused = None if trusted else weights_only_refusal(exc, target)
        if refused:
            raise CheckpointError(
                f"checkpoint {target} was refused as unsafe: it holds an object a checkpoint never holds "
                f"({refused}); it was not loaded (nothing in it ran). A streamlabel checkpoint holds only tensors, "
                f"numbers, strings and numpy arrays; load it with trusted=True only if you wrote it yourself"
            ) from exc
        raise CheckpointError(
            f"{target} is not a streamlabel checkpoint (truncated or corrupt: {unpickler_detail(exc)})"
        ) from exc
    except Exception as exc:
        if "inline_container" in str(exc):  # a zip archive torch.save did not write (e.g. an .npz)
            raise CheckpointError(f"{target} is not a streamlabel checkpoint (a zip archive, but not one written "
                                  f"by torch.save)") from exc
        raise CheckpointError(
            f"{target} is not a streamlabel checkpoint "
            f"(truncated or corrupt: {type(exc).__name__}: {_first_sentence(exc)})"
        ) from exc

    header = obj.get("header") if isinstance(obj, dict) else None
    if not isinstance(header, dict) or header.get("format") != FORMAT or not isinstance(obj.get("state"), dict):
        raise CheckpointError(
            f"{target} is not a streamlabel checkpoint (no {FORMAT!r} header; a plain state_dict or another "
            f"program's file?)"
        )
    version = header.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(
            f"checkpoint {target} has format version {version!r}; this streamlabel reads up to version {VERSION}"
        )
    state = CheckpointState(obj["state"])
    state.source = str(target)

    saved_fp = header.get("fingerprint")
    if fingerprint is not None and saved_fp != fingerprint:
        msg = (
            f"checkpoint {target} was written by a different configuration "
            f"(fingerprint {_short(saved_fp)} vs {_short(fingerprint)}); "
            f"start a fresh output_dir or pass the same config"
        )
        if config is not None and isinstance(state.get("config"), Mapping):
            diff = config_diff(state["config"], config)
            if diff:
                shown = ", ".join(diff[:_MAX_DIFF_KEYS])
                more = f" and {len(diff) - _MAX_DIFF_KEYS} more" if len(diff) > _MAX_DIFF_KEYS else ""
                msg += f"; differing config keys: {shown}{more}"
        raise CheckpointError(msg)
    return header, state


def load_checkpoint(
    path_or_dir: str | os.PathLike,
    *,
    fingerprint: str | None,
    map_location: Any = "cpu",
    config: dict | None = None,
    trusted: bool = False,
) -> dict:
    """Load the state dict saved by :func:`save_checkpoint`.

    ``path_or_dir`` is a checkpoint file, or a directory meaning its latest checkpoint.
    ``fingerprint`` is this run's config fingerprint; a checkpoint with another one is refused
    (pass ``None`` to skip the check, e.g. to inspect a file).  With ``config`` given and the
    checkpoint storing its config under ``state["config"]``, the refusal lists the dotted config
    keys that differ (at most 10).

    The file is read with ``torch.load(weights_only=True)``: tensors, numbers, strings and containers of
    them, which is everything a streamlabel checkpoint holds; a file that pickles anything else (code, by
    design or by accident) is refused with a CheckpointError before any of it runs. ``trusted=True`` lifts
    that for a file you wrote yourself with other objects in it.

    Raises :class:`CheckpointError` for a missing file, a file that is not a streamlabel
    checkpoint (truncated, random bytes, a plain state_dict) and a fingerprint mismatch.
    """
    return load_checkpoint_with_header(
        path_or_dir, fingerprint=fingerprint, map_location=map_location, config=config, trusted=trusted
    )[1]

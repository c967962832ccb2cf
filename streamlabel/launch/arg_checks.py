"""Checks of command-line values that argparse's types do not make: a device that exists, an output file
that can be written where the user said, a number inside its range. Each failure is an InputError with
one line naming the flag; nothing has been read or written when it is raised."""

from __future__ import annotations

import argparse
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from streamlabel.data.owned_files import write_problem
from streamlabel.launch.errors import InputError

if TYPE_CHECKING:
    import torch


def checked_device(name: str | None, flag: str = "--device") -> torch.device:
    """``torch.device(name)`` (default cpu) if this machine has it."""
    import torch  # here, not at import: `streamlabel --help` stays fast

    try:
        device = torch.device(name or "cpu")
    except RuntimeError as err:
        raise InputError(f"{flag} {name!r} is not a torch device (cpu, cuda, cuda:1, ...)") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"{flag} {name}: no CUDA device is available on this machine (use cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(f"{flag} {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise InputError(f"{flag} {name}: only cpu and cuda devices are supported")
    return device


def output_file(path: Path | None, suffix: str, flag: str = "--out", inputs: Sequence[Path | None] = ()) -> Path | None:
    """``path`` when a file with ``suffix`` can be written there: not a folder, the right suffix (so the file
    lands exactly where asked, not at ``path + suffix``), not one of ``inputs``, a parent folder that exists
    or can be made, and that this process can write in (probed with a temporary file it removes)."""
    if path is None:
        return None
    _name_lengths(path, flag)
    if path.is_dir():
        raise InputError(f"{flag} {path} is a folder; give a file name ending in {suffix}")
    if path.suffix != suffix:
        raise InputError(f"{flag} {path} must end in {suffix}")
    for given in inputs:
        if given is not None and same_path(path, given):
            raise InputError(f"{flag} {path} is also an input of this command ({given}); it would be overwritten, "
                             f"give another file name")
    if path.exists() or path.is_symlink():
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO, device or link is the user's: never replaced
            kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file"
            raise InputError(f"{flag} {path} exists and is {kind}; it would be replaced, give another file name")
        if not info.st_mode & 0o222 or not os.access(path, os.W_OK):  # modes say read-only even to root
            raise InputError(f"{flag} {path} exists and is read-only; give another file name")
    _probe_writable(path.parent, flag, path)
    return path


def output_folder(path: Path, flag: str = "--out", inputs: Sequence[Path | None] = ()) -> Path:
    """``path`` when a folder can be written there: a folder already or one that can be
    made (no file in the way, at the path itself or at a parent), not one of the input folders ``inputs``
    nor inside one, and writable by this process (probed with a temporary file it removes)."""
    _name_lengths(path, flag)
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as err:  # a loop of symbolic links
        raise InputError(f"{flag} {path} cannot be resolved: {err}") from None
    if resolved == Path(resolved.anchor):
        raise InputError(f"{flag} {path} is the root of the file system; name a folder of its own for the outputs")
    for given in inputs:
        if given is not None and (same_path(path, given) or _inside(path, given)):
            raise InputError(f"{flag} {path} is {'' if same_path(path, given) else 'inside '}the input folder "
                             f"{given}; outputs never go into an input's folder, give another folder")
    _probe_writable(path, flag, path)
    return path


def path_argument(text: str) -> Path:
    """An argparse ``type`` for paths: an empty string is refused (``Path('')`` would be the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; give a path")
    return Path(text).expanduser()  # as for config paths: '~/x' is the home folder's x, never a folder named ~


def same_path(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name the same file or folder (through links, ``..`` and relative paths)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symbolic link loop
        return False


def _inside(path: Path, folder: Path) -> bool:
    try:
        return folder.resolve() in path.resolve().parents
    except (OSError, RuntimeError):
        return False


NAME_MAX = 255  # bytes in one path component on ext4, xfs, btrfs, tmpfs, NTFS


def _name_lengths(path: Path, flag: str) -> None:
    """Refuse a path with a component longer than the file system allows, before anything is written."""
    for part in path.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise InputError(f"{flag}: the name {part[:40]}... is {len(os.fsencode(part))} bytes long; file systems "
                             f"allow at most {NAME_MAX} bytes per name")


def _probe_writable(path: Path, flag: str, shown: Path) -> None:
    """Refuse when the nearest existing folder at or above ``path`` is a file or cannot be written in. The
    probe is a temporary file this function creates and removes; nothing else is touched."""
    for candidate in (path, *path.parents):
        try:
            exists = candidate.exists()
        except OSError as err:
            raise InputError(f"{flag} {shown}: {err.strerror or err}") from None
        if not exists and candidate.is_symlink():
            raise InputError(f"{flag} {shown}: {candidate} is a broken symbolic link (to {os.readlink(candidate)}, "
                             f"which does not exist); create its target or give another path")
        if not exists:
            continue
        if not candidate.is_dir():
            where = "" if candidate == shown else f"{shown}: "
            raise InputError(f"{flag} {where}{candidate} is a file, not a folder")
        problem = write_problem(candidate)
        if problem:
            raise InputError(f"{flag} {shown}: cannot write in {candidate} ({problem}); "
                             f"choose a folder you can write to")
        return


def in_range(flag: str, value: float, low: float | None = None, high: float | None = None) -> None:
    """Refuse ``value`` outside [low, high] (either bound may be open: None), and NaN, which no bound holds."""
    if value != value or (low is not None and value < low) or (high is not None and value > high):
        bounds = f">= {low}" if high is None else (f"<= {high}" if low is None else f"in [{low}, {high}]")
        raise InputError(f"{flag} must be {bounds}, got {value}")


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Help that shows an option's default once: only where its help text does not already say it, and not
    for switches (False) or unset options (None)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        shown = not unset and action.option_strings
        if shown and "default" not in text and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def no_repeated_keys(items: list[str]) -> list[str]:
    """Refuse a ``key=value`` list that sets one key twice: which one was meant is a guess, so neither wins."""
    seen: dict[str, str] = {}
    for item in items:
        key = item.partition("=")[0].strip()
        if key in seen:
            raise InputError(f"{key} is given twice ({seen[key]} and {item}); give it once")
        seen[key] = item
    return items

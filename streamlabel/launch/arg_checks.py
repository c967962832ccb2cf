"""Checks of command-line values that argparse's types do not make: a device that exists, an output file
that can be written where the user said, a number inside its range. Each failure is an InputError with
one line naming the flag; nothing has been read or written when it is raised."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

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


def output_file(path: Path | None, suffix: str, flag: str = "--out") -> Path | None:
    """``path`` when a file with ``suffix`` can be written there: not a folder, the right suffix (so the file
    lands exactly where asked, not at ``path + suffix``), a parent that is a folder or can be made."""
    if path is None:
        return None
    if path.is_dir():
        raise InputError(f"{flag} {path} is a folder; give a file name ending in {suffix}")
    if path.suffix != suffix:
        raise InputError(f"{flag} {path} must end in {suffix}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{flag} {path}: {parent} is a file, not a folder")
            break
    return path


def output_folder(path: Path, flag: str = "--out") -> Path:
    """``path`` when a folder can be written there: it is a folder already or can be made (no file in the
    way, at the path itself or at a parent)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            if not candidate.is_dir():
                where = "" if candidate == path else f"{path}: "
                raise InputError(f"{flag} {where}{candidate} is a file, not a folder")
            break
    return path


def in_range(flag: str, value: float, low: float | None = None, high: float | None = None) -> None:
    """Refuse ``value`` outside [low, high] (either bound may be open: None)."""
    if (low is not None and value < low) or (high is not None and value > high):
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

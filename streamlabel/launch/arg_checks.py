"""Checks of command-line values that argparse's types do not make: a device that exists, an output file
that can be written where the user said, a number inside its range. Each failure is an InputError with
one line naming the flag; nothing has been read or written when it is raised."""

from __future__ import annotations

from pathlib import Path

import torch

from streamlabel.launch.errors import InputError


def checked_device(name: str | None, flag: str = "--device") -> torch.device:
    """``torch.device(name)`` (default cpu) if this machine has it."""
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


def in_range(flag: str, value: float, low: float | None = None, high: float | None = None) -> None:
    """Refuse ``value`` outside [low, high] (either bound may be open: None)."""
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f">= {low}" if high is None else (f"<= {high}" if low is None else f"in [{low}, {high}]")
        raise InputError(f"{flag} must be {bounds}, got {value}")

"""Image files of a feature dump's ``names``, found under folders the user gives (pictures need the pixels)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from streamlabel.launch.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def image_paths(names: np.ndarray, folder: Path, flag: str = "--images",
                found: dict[str, list[Path]] | None = None) -> list[str]:
    """The path of every name in ``names`` under ``folder`` (searched recursively; a name found twice is
    refused, as a wrong picture would be worse than none). ``found``: ``images_under(folder)`` when the
    caller already scanned it."""
    if not folder.is_dir():
        raise InputError(f"{flag} {folder} is not a folder")
    found = images_under(folder) if found is None else found
    out = []
    for name in names.tolist():
        hits = found.get(str(name), [])
        if len(hits) != 1:
            what = "is not" if not hits else f"is {len(hits)} times"
            raise InputError(f"{flag} {folder}: image {name!r} of the dump {what} under it; give the folder the "
                             f"dump was extracted from (its split folder when names repeat across splits)")
        out.append(str(hits[0]))
    return out


def images_under(folder: Path) -> dict[str, list[Path]]:
    """Every image file under ``folder`` (recursively), by file name."""
    found: dict[str, list[Path]] = {}
    for path in folder.rglob("*"):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            found.setdefault(path.name, []).append(path)
    return found


def dump_names(dump: dict[str, np.ndarray], path: Path | None) -> np.ndarray:
    """The ``names`` array of a dump (written by ``streamlabel extract``), or a clear error."""
    if "names" not in dump:
        raise InputError(f"{path}: the dump has no 'names' array (image file names), so no picture can be drawn; "
                         "`streamlabel extract` writes it")
    return dump["names"]


def split_folders(folders: Sequence[Path] | None, count: int) -> list[Path]:
    """``--images DIR [DIR]``: one folder for every split, or one per split."""
    if not folders:
        raise InputError("pictures of a feature dump need --images DIR (the folder its images are in)")
    if len(folders) not in (1, count):
        raise InputError(f"--images takes 1 or {count} folders, got {len(folders)}")
    return list(folders) * count if len(folders) == 1 else list(folders)

"""Layout checks and file-name parsing shared by the folder-based parsers."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import DatasetLayoutError
from .samples import ReidSample

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")

# Given the regex match of one file name, return (pid, camid) or raise ValueError with a reason.
NameParser = Callable[["re.Match[str]"], tuple[int, int]]


def layout_error(problem: str, layout: str) -> DatasetLayoutError:
    """A DatasetLayoutError whose message ends with the expected layout tree."""
    return DatasetLayoutError(f"{problem}\nExpected layout:\n{layout.rstrip()}")


def missing_root_error(root: Path, layout: str) -> DatasetLayoutError:
    """The error for a dataset root that is not a folder; a relative root names the folder it was taken from."""
    where = "" if root.is_absolute() else f" (relative paths start at the folder streamlabel runs in, {Path.cwd()})"
    return layout_error(f"dataset root {root} does not exist or is not a folder{where}", layout)


def find_root(
    root: str | Path, required: Sequence[str], layout: str, candidates: Sequence[str] = ()
) -> Path:
    """Return ``root`` or the first ``root/candidate`` holding every ``required`` entry, else raise."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise missing_root_error(root, layout)
    for base in [root, *(root / c for c in candidates)]:
        if all((base / r).exists() for r in required):
            return base
    missing = [r for r in required if not (root / r).exists()]
    tried = "" if not candidates else f" (also looked in {', '.join(str(root / c) for c in candidates)})"
    raise layout_error(f"{root / missing[0]} is missing{tried}", layout)


def list_images(folder: Path, layout: str, recursive: bool = False) -> list[Path]:
    """Sorted image files of ``folder`` (sorted so sample order, hence bank rows, is deterministic)."""
    if not folder.is_dir():
        raise layout_error(f"{folder} is missing or is not a folder", layout)
    folder = folder.resolve()  # once per folder: sample paths are absolute without a syscall per file
    if recursive:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    else:  # scandir's cached file type avoids one stat per image on big folders
        with os.scandir(folder) as entries:
            files = sorted(folder / e.name for e in entries
                           if os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS and e.is_file())
    if not files:
        raise layout_error(f"{folder} holds no images ({'/'.join(IMAGE_EXTENSIONS)})", layout)
    return files


def parse_file_names(
    files: Sequence[Path],
    pattern: str | re.Pattern[str],
    parse: NameParser,
    layout: str,
    where: Path,
    strict: bool = True,
) -> list[ReidSample]:
    """Parse (pid, camid) from each file's name; names that do not match raise (or warn if not strict)."""
    regex = re.compile(pattern)
    samples: list[ReidSample] = []
    bad: list[tuple[str, str]] = []
    for path in files:
        match = regex.fullmatch(path.name) or regex.fullmatch(path.stem)
        if match is None:
            bad.append((path.name, f"does not match {regex.pattern!r}"))
            continue
        try:
            pid, camid = parse(match)
        except ValueError as exc:
            bad.append((path.name, str(exc)))
            continue
        samples.append(ReidSample(str(path.absolute()), pid, camid))
    if bad:
        name, reason = bad[0]
        msg = f"{len(bad)} of {len(files)} image names in {where} cannot be parsed, e.g. {name!r}: {reason}"
        if strict:
            raise layout_error(msg, layout)
        warnings.warn(msg + " (skipped)", stacklevel=3)
    if not samples:
        raise layout_error(f"no usable images in {where}", layout)
    return samples


def camera_index(raw: str, base: int = 1) -> int:
    """0-based camera id from a ``base``-based camera number in a file name."""
    cam = int(raw) - base
    if cam < 0:
        raise ValueError(f"camera number {raw} is below {base}")
    return cam

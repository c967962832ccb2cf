"""Image loading (always RGB) and a pre-flight check that finds corrupt or unreadable files."""

from __future__ import annotations

import io
import os
import stat
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import UnreadableImageError
from .samples import ReidDataset, ReidSample, relabel

_MAX_LISTED = 5


def to_rgb(img: Image.Image) -> Image.Image:
    """``img`` as 8-bit RGB; 16-bit, 32-bit and float grayscale are scaled to 0..255, not clipped to white."""
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        values = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16"):
            low, high = 0.0, 65535.0
        elif values.size and (values.min() < 0 or values.max() > 255):
            low, high = float(values.min()), float(values.max())
        else:
            low, high = 0.0, 255.0
        scaled = (values - low) * (255.0 / max(high - low, 1e-12))
        img = Image.fromarray(np.clip(np.nan_to_num(scaled), 0, 255).round().astype(np.uint8))
    return img.convert("RGB")


def not_a_regular_file(path: str) -> str | None:
    """Why ``path`` is no file to read an image from (a FIFO would block the read, a device never ends), or
    None for a regular file (links followed)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return f"{type(exc).__name__}: {exc.strerror or exc}"
    return None if stat.S_ISREG(mode) else "not a regular file (a folder, FIFO, device or socket); not read"


def load_image(path: str) -> Image.Image:
    """Open ``path`` and return it decoded as RGB (grayscale, CMYK, palette, RGBA, 16-bit are converted)."""
    problem = not_a_regular_file(path)
    if problem:
        raise UnreadableImageError(str(path), problem)
    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb(img) if img.mode != "RGB" else img
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise UnreadableImageError(str(path), f"{type(exc).__name__}: {exc}") from exc


def check_image(path: str, full_decode: bool = True) -> str | None:
    """None if ``path`` is a readable image, else the reason; ``verify()`` + header, then a real decode."""
    problem = not_a_regular_file(path)
    if problem:
        return problem
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        if not data:
            return "zero-byte file"
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
        with Image.open(io.BytesIO(data)) as img:
            if img.width <= 0 or img.height <= 0:
                return f"empty image size {img.size}"
            if full_decode:  # a truncated JPEG only fails here; draft() decodes at 1/8 scale, cheaply
                img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
                img.load()
    except UnidentifiedImageError:
        return "UnidentifiedImageError: not an image format PIL can identify"
    except (OSError, ValueError, SyntaxError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def find_unreadable_images(
    paths: Sequence[str], full_decode: bool = True, num_threads: int = 8
) -> list[tuple[str, str]]:
    """(path, reason) for every path that fails ``check_image``, in input order."""
    if num_threads > 1 and len(paths) > 64:
        with ThreadPoolExecutor(num_threads) as pool:
            reasons = list(pool.map(lambda p: check_image(p, full_decode), paths, chunksize=64))
    else:
        reasons = [check_image(p, full_decode) for p in paths]
    return [(p, r) for p, r in zip(paths, reasons, strict=True) if r is not None]


def verify_images(
    samples: Sequence[ReidSample],
    on_error: Literal["skip", "raise"] = "skip",
    full_decode: bool = True,
    num_threads: int = 8,
) -> list[ReidSample]:
    """The readable samples, in order; bad ones warn (count + first paths) or raise UnreadableImageError."""
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    bad = find_unreadable_images([s.path for s in samples], full_decode, num_threads)
    if not bad:
        return list(samples)
    if on_error == "raise":
        path, reason = bad[0]
        more = f" ({len(bad) - 1} more unreadable images)" if len(bad) > 1 else ""
        raise UnreadableImageError(path, reason + more)
    listed = "\n  ".join(f"{p}: {r}" for p, r in bad[:_MAX_LISTED])
    warnings.warn(
        f"skipping {len(bad)} unreadable image(s) of {len(samples)}:\n  {listed}"
        + ("\n  ..." if len(bad) > _MAX_LISTED else ""),
        stacklevel=2,
    )
    bad_paths = {p for p, _ in bad}
    return [s for s in samples if s.path not in bad_paths]


def verify_dataset(
    dataset: ReidDataset, on_error: Literal["skip", "raise"] = "skip", full_decode: bool = True
) -> ReidDataset:
    """``verify_images`` on every split; train pids are made dense again if an identity lost all images."""
    train = verify_images(dataset.train, on_error, full_decode)
    if len(train) != len(dataset.train):
        train = relabel(train)
    return replace(
        dataset,
        train=train,
        query=verify_images(dataset.query, on_error, full_decode),
        gallery=verify_images(dataset.gallery, on_error, full_decode),
    )

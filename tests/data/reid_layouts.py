"""Helpers for the data tests: tiny JPEG files laid out exactly like the real datasets."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

from PIL import Image


def jpeg_bytes(size: tuple[int, int] = (8, 16), color: tuple[int, int, int] = (200, 30, 60)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="JPEG")
    return buf.getvalue()


_JPEG = jpeg_bytes()


def write_images(folder: Path, names: Iterable[str], data: bytes = _JPEG) -> list[Path]:
    """Write the same tiny JPEG under every name (names may contain sub-folders)."""
    paths = []
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths.append(path)
    return paths


# Market-1501: train ids 0002, 0007, 0010; query 0001, 0003; gallery with junk (-1) and distractors (0).
MARKET_TRAIN = [
    "0002_c1s1_000451_03.jpg", "0002_c1s1_000551_01.jpg", "0002_c2s1_000301_01.jpg",
    "0007_c2s3_070952_01.jpg", "0007_c3s3_071002_02.jpg",
    "0010_c6s4_002427_02.jpg", "0010_c1s1_001251_01.jpg",
]
MARKET_QUERY = ["0001_c1s1_001051_00.jpg", "0003_c3s3_064744_00.jpg"]
MARKET_GALLERY = [
    "0001_c2s1_000301_01.jpg", "0001_c5s1_001426_03.jpg", "0003_c4s3_065037_01.jpg",
    "0000_c1s1_000151_01.jpg", "0000_c6s1_000001_02.jpg",  # distractors
    "-1_c1s1_000401_03.jpg", "-1_c3s1_000926_01.jpg", "-1_c5s1_000401_06.jpg",  # junk
]

DUKE_TRAIN = ["0001_c2_f0046182.jpg", "0001_c5_f0051341.jpg", "0003_c1_f0044158.jpg", "0003_c8_f0000001.jpg"]
DUKE_QUERY = ["0005_c2_f0046985.jpg", "0008_c7_f0001234.jpg"]
DUKE_GALLERY = ["0005_c3_f0048987.jpg", "0008_c1_f0002000.jpg", "0011_c4_f0009999.jpg"]


def market_like(root: Path, train: list[str], query: list[str], gallery: list[str]) -> Path:
    write_images(root / "bounding_box_train", train)
    write_images(root / "query", query)
    write_images(root / "bounding_box_test", gallery)
    return root

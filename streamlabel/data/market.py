"""Market-1501 and DukeMTMC-reID: ``bounding_box_train``, ``bounding_box_test``, ``query`` folders."""

from __future__ import annotations

import re
from pathlib import Path

from .layout import camera_index, find_root, layout_error, list_images, parse_file_names
from .registry import register_dataset
from .samples import ReidDataset, ReidSample, relabel

MARKET_LAYOUT = """\
<root>/                       (or <root>/Market-1501-v15.09.15/)
  bounding_box_train/         0002_c1s1_000451_03.jpg ...
  bounding_box_test/          0000_c1s1_000151_01.jpg, -1_c1s1_000401_03.jpg ...
  query/                      0001_c1s1_001051_00.jpg ...
"""

DUKE_LAYOUT = """\
<root>/                       (or <root>/DukeMTMC-reID/)
  bounding_box_train/         0001_c2_f0046182.jpg ...
  bounding_box_test/          0002_c1_f0044158.jpg ...
  query/                      0005_c2_f0046985.jpg ...
"""

MARKET_PATTERN = r"(?P<pid>-?\d+)_c(?P<camid>\d+)s\d+_\d+_\d+\.(?i:jpe?g|png)"
DUKE_PATTERN = r"(?P<pid>-?\d+)_c(?P<camid>\d+)_f\d+\.(?i:jpe?g|png)"
# Market-style prefix only (CUHK03-NP and other datasets saved in the Market convention).
MARKET_STYLE_PATTERN = r"(?P<pid>-?\d+)_c(?P<camid>\d+)(?:[_s].*)?\.(?i:jpe?g|png|bmp)"

SPLIT_FOLDERS = ("bounding_box_train", "bounding_box_test", "query")


def _pid_cam(match: re.Match[str]) -> tuple[int, int]:
    pid = int(match["pid"])
    if pid < -1:
        raise ValueError(f"person id {pid} is below -1")
    return pid, camera_index(match["camid"], base=1)


def parse_market_style(
    root: Path, name: str, pattern: str, layout: str, strict: bool = True, distractor_pid: int | None = 0
) -> ReidDataset:
    """Parse the three Market-style folders under ``root`` (already located).

    Train drops junk (-1) and distractors (``distractor_pid``) and is relabelled to 0..P-1; query drops
    junk; gallery keeps junk (pid -1, ignored by evaluation) and distractors, as the official protocol.
    """
    def split(folder: str) -> list[ReidSample]:
        where = root / folder
        return parse_file_names(list_images(where, layout), pattern, _pid_cam, layout, where, strict)

    train = [s for s in split("bounding_box_train") if s.pid >= 0 and s.pid != distractor_pid]
    if not train:
        folder = root / "bounding_box_train"
        raise layout_error(f"{folder} holds only junk (-1) or distractor images", layout)
    query = [s for s in split("query") if s.pid >= 0]
    gallery = split("bounding_box_test")
    return ReidDataset(name=name, train=relabel(train), query=query, gallery=gallery)


@register_dataset("market1501")
def market1501(root: str | Path, strict: bool = True) -> ReidDataset:
    """Market-1501 (751 train ids, 12,936 train images; 6 cameras)."""
    base = find_root(root, SPLIT_FOLDERS, MARKET_LAYOUT, candidates=("Market-1501-v15.09.15", "Market-1501"))
    return parse_market_style(base, "market1501", MARKET_PATTERN, MARKET_LAYOUT, strict)


@register_dataset("dukemtmcreid")
def dukemtmcreid(root: str | Path, strict: bool = True) -> ReidDataset:
    """DukeMTMC-reID (702 train ids, 16,522 train images; 8 cameras)."""
    base = find_root(root, SPLIT_FOLDERS, DUKE_LAYOUT, candidates=("DukeMTMC-reID",))
    return parse_market_style(base, "dukemtmcreid", DUKE_PATTERN, DUKE_LAYOUT, strict)

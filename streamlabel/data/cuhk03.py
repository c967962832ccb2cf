"""CUHK03-NP (new protocol, 767/700 ids): ``detected/`` or ``labeled/`` with Market-style folders."""

from __future__ import annotations

from pathlib import Path

from .layout import find_root, layout_error
from .market import MARKET_STYLE_PATTERN, SPLIT_FOLDERS, parse_market_style
from .registry import register_dataset
from .samples import ReidDataset

CUHK03NP_LAYOUT = """\
<root>/                       (or <root>/cuhk03-np/)
  detected/                   (or labeled/)
    bounding_box_train/       0001_c1_1.png ...
    bounding_box_test/        0003_c1_1.png ...
    query/                    0003_c2_6.png ...
"""

VARIANTS = ("detected", "labeled")


@register_dataset("cuhk03np")
def cuhk03np(root: str | Path, variant: str = "detected", strict: bool = True) -> ReidDataset:
    """CUHK03-NP, ``variant`` = "detected" (default) or "labeled" boxes; 2 cameras."""
    if variant not in VARIANTS:
        raise ValueError(f"cuhk03np variant must be one of {VARIANTS}, got {variant!r}")
    required = [f"{variant}/{folder}" for folder in SPLIT_FOLDERS]
    base = find_root(root, required, CUHK03NP_LAYOUT, candidates=("cuhk03-np", "cuhk03_np", "CUHK03-NP"))
    if not (base / variant).is_dir():
        raise layout_error(f"{base / variant} is missing", CUHK03NP_LAYOUT)
    return parse_market_style(
        base / variant, f"cuhk03np_{variant}", MARKET_STYLE_PATTERN, CUHK03NP_LAYOUT, strict,
        distractor_pid=None,
    )

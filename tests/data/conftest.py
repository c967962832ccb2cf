"""Fixtures for the data tests (helpers live in reid_layouts.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.data.reid_layouts import (
    DUKE_GALLERY,
    DUKE_QUERY,
    DUKE_TRAIN,
    MARKET_GALLERY,
    MARKET_QUERY,
    MARKET_TRAIN,
    market_like,
)


@pytest.fixture
def market_root(tmp_path: Path) -> Path:
    root = market_like(tmp_path / "Market-1501-v15.09.15", MARKET_TRAIN, MARKET_QUERY, MARKET_GALLERY)
    (root / "bounding_box_train" / "Thumbs.db").write_bytes(b"windows thumbnail cache")
    return root


@pytest.fixture
def duke_root(tmp_path: Path) -> Path:
    return market_like(tmp_path / "DukeMTMC-reID", DUKE_TRAIN, DUKE_QUERY, DUKE_GALLERY)


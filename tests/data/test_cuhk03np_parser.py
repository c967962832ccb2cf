"""CUHK03-NP: detected/labeled variants in Market-style folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamlabel.data import DatasetLayoutError, build_dataset, cuhk03np
from tests.data.reid_layouts import market_like

TRAIN = ["0001_c1_1.png", "0001_c1_2.png", "0001_c2_6.png", "0004_c1_1.png", "0004_c2_7.png"]
QUERY = ["0003_c1_1.png", "0005_c2_6.png"]
GALLERY = ["0003_c2_6.png", "0003_c2_7.png", "0005_c1_2.png"]


@pytest.fixture
def np_root(tmp_path: Path) -> Path:
    root = tmp_path / "cuhk03-np"
    market_like(root / "detected", TRAIN, QUERY, GALLERY)
    market_like(root / "labeled", TRAIN[:3], QUERY, GALLERY)
    return root


def test_detected_and_labeled(np_root: Path) -> None:
    det = build_dataset("cuhk03np", np_root.parent)
    assert det.name == "cuhk03np_detected"
    assert len(det.train) == 5 and det.num_train_pids == 2 and det.num_train_cams == 2
    assert [s.camid for s in det.query] == [0, 1]
    lab = cuhk03np(np_root, variant="labeled")
    assert len(lab.train) == 3 and lab.num_train_pids == 1 and "labeled" in lab.train[0].path


def test_missing_variant(np_root: Path) -> None:
    for p in sorted((np_root / "labeled").rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    (np_root / "labeled").rmdir()
    with pytest.raises(DatasetLayoutError) as err:
        cuhk03np(np_root, variant="labeled")
    assert "labeled" in str(err.value) and "detected/" in str(err.value)


def test_unknown_variant(np_root: Path) -> None:
    with pytest.raises(ValueError, match="variant"):
        cuhk03np(np_root, variant="both")

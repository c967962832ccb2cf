"""Market-1501 and DukeMTMC-reID parsing: counts, relabelling, junk/distractors, cameras, layout errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from streamlabel.data import DatasetLayoutError, build_dataset, dukemtmcreid, market1501
from tests.data.reid_layouts import MARKET_TRAIN, write_images


def test_market_counts_relabel_and_cameras(market_root: Path) -> None:
    ds = market1501(market_root)
    assert ds.name == "market1501"
    assert len(ds.train) == 7 and ds.num_train_pids == 3
    assert sorted({s.pid for s in ds.train}) == [0, 1, 2]  # 0002, 0007, 0010 -> 0, 1, 2
    assert [s.pid for s in ds.train if Path(s.path).name.startswith("0010")] == [2, 2]
    cams = {Path(s.path).name: s.camid for s in ds.train}
    assert cams["0002_c1s1_000451_03.jpg"] == 0 and cams["0010_c6s4_002427_02.jpg"] == 5
    assert ds.num_train_cams == 4  # c1, c2, c3, c6
    assert [Path(s.path).name for s in ds.train] == sorted(MARKET_TRAIN)  # sorted => stable bank rows
    assert all(Path(s.path).is_absolute() for s in ds.train + ds.query + ds.gallery)


def test_market_junk_and_distractors(market_root: Path) -> None:
    ds = market1501(market_root)
    gallery_pids = sorted(s.pid for s in ds.gallery)
    assert gallery_pids == [-1, -1, -1, 0, 0, 1, 1, 3]  # junk kept as -1, distractors as 0, raw ids
    assert [s.pid for s in ds.query] == [1, 3]


def test_market_junk_dropped_from_train(market_root: Path) -> None:
    write_images(market_root / "bounding_box_train", ["-1_c1s1_000401_03.jpg", "0000_c1s1_000151_01.jpg"])
    ds = market1501(market_root)
    assert len(ds.train) == 7 and ds.num_train_pids == 3


def test_root_may_be_parent_folder(market_root: Path) -> None:
    ds = build_dataset("market1501", market_root.parent)
    assert len(ds.train) == 7


def test_duke(duke_root: Path) -> None:
    ds = dukemtmcreid(duke_root.parent)
    assert ds.name == "dukemtmcreid"
    assert [(s.pid, s.camid) for s in ds.train] == [(0, 1), (0, 4), (1, 0), (1, 7)]
    assert len(ds.query) == 2 and len(ds.gallery) == 3
    assert {s.pid for s in ds.gallery} == {5, 8, 11}


def test_missing_folder_names_it_and_shows_layout(market_root: Path) -> None:
    shutil.rmtree(market_root / "query")
    with pytest.raises(DatasetLayoutError) as err:
        market1501(market_root)
    msg = str(err.value)
    assert str(market_root / "query") in msg and "missing" in msg
    assert "Expected layout" in msg and "bounding_box_train/" in msg and "0002_c1s1_000451_03.jpg" in msg


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        market1501(tmp_path / "nowhere")


def test_empty_folder(market_root: Path) -> None:
    shutil.rmtree(market_root / "bounding_box_test")
    (market_root / "bounding_box_test").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"bounding_box_test holds no images"):
        market1501(market_root)


def test_malformed_names_reported_with_count_and_example(market_root: Path) -> None:
    write_images(market_root / "query", ["holiday.jpg", "0004_cam1.jpg"])
    with pytest.raises(DatasetLayoutError) as err:
        market1501(market_root)
    msg = str(err.value)
    assert "2 of 4 image names" in msg and "query" in msg and "0004_cam1.jpg" in msg


def test_non_strict_skips_malformed_names_with_warning(market_root: Path) -> None:
    write_images(market_root / "query", ["holiday.jpg"])
    with pytest.warns(UserWarning, match="holiday.jpg"):
        ds = market1501(market_root, strict=False)
    assert len(ds.query) == 2


def test_duke_names_are_not_market_names(duke_root: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="cannot be parsed"):
        market1501(duke_root)


def test_camera_zero_is_an_error(market_root: Path) -> None:
    write_images(market_root / "query", ["0005_c0s1_000001_00.jpg"])
    with pytest.raises(DatasetLayoutError, match="camera number 0"):
        market1501(market_root)


def test_train_of_only_junk(market_root: Path) -> None:
    shutil.rmtree(market_root / "bounding_box_train")
    write_images(market_root / "bounding_box_train", ["-1_c1s1_000401_03.jpg"])
    with pytest.raises(DatasetLayoutError, match="only junk"):
        market1501(market_root)

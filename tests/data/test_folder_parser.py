"""Generic folder datasets (regex pid/camid, camid_map) and the cuhk03_p1 preset."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamlabel.data import (
    DatasetLayoutError,
    build_dataset,
    cuhk03_p1,
    cuhk03_p1_transductive,
    folder_dataset,
    reverse_direction,
)
from tests.data.reid_layouts import write_images
from tests.helpers.shared_data import shared_file


def test_default_pattern(tmp_path: Path) -> None:
    write_images(tmp_path / "train", ["12_c0_a.jpg", "12_c1_b.jpg", "40_c1_a.png"])
    write_images(tmp_path / "query", ["5_c0.jpg", "-1_c0.jpg"])
    write_images(tmp_path / "gallery", ["5_c1.jpg", "-1_c1.jpg"])
    ds = folder_dataset(tmp_path)
    assert [(s.pid, s.camid) for s in ds.train] == [(0, 0), (0, 1), (1, 1)]
    assert [s.pid for s in ds.query] == [5]  # junk dropped from query
    assert sorted(s.pid for s in ds.gallery) == [-1, 5]  # junk kept in gallery


def test_custom_regex_base_and_missing_splits(tmp_path: Path) -> None:
    write_images(tmp_path / "imgs", ["car-0003-cam02.jpg", "car-0003-cam01.jpg", "car-0009-cam01.jpg"])
    ds = build_dataset("folder", tmp_path, train="imgs", query=None, gallery=None,
                       pattern=r"car-(?P<pid>\d+)-cam(?P<camid>\d+)\.jpg", camid_base=1, name="cars")
    assert ds.name == "cars" and ds.query == [] and ds.gallery == []
    assert [(s.pid, s.camid) for s in ds.train] == [(0, 0), (0, 1), (1, 0)]


def test_camid_map_mapping_and_callable(tmp_path: Path) -> None:
    write_images(tmp_path / "train", ["0001_left.jpg", "0001_right.jpg", "0002_left.jpg"])
    pattern = r"(?P<pid>\d+)_(?P<camid>left|right)\.jpg"
    sides = {"left": 0, "right": 1}
    ds = folder_dataset(tmp_path, query=None, gallery=None, pattern=pattern, camid_map=sides)
    assert [s.camid for s in ds.train] == [0, 1, 0]
    ds = folder_dataset(tmp_path, query=None, gallery=None, pattern=r"(?P<pid>\d+)_(?P<side>\w+)\.jpg",
                        camid_map=lambda g: len(g["side"]))
    assert [s.camid for s in ds.train] == [4, 5, 4]
    with pytest.raises(DatasetLayoutError, match=r"camera 'right' is not in camid_map"):
        folder_dataset(tmp_path, query=None, gallery=None, pattern=pattern, camid_map={"left": 0})


def test_pattern_needs_groups(tmp_path: Path) -> None:
    write_images(tmp_path / "train", ["0001_c1.jpg"])
    with pytest.raises(ValueError, match="camid"):
        folder_dataset(tmp_path, query=None, gallery=None, pattern=r"(?P<pid>\d+)_c\d+\.jpg")
    with pytest.raises(ValueError, match="'pid'"):
        folder_dataset(tmp_path, query=None, gallery=None, pattern=r"(\d+)_c(?P<camid>\d+)\.jpg")


def test_missing_split_folder(tmp_path: Path) -> None:
    write_images(tmp_path / "train", ["0001_c1.jpg"])
    with pytest.raises(DatasetLayoutError, match=r"query is missing"):
        folder_dataset(tmp_path)


def _fake_p1(root: Path) -> Path:
    write_images(root / "train", [f"{p:04d}_{s:02d}.jpg" for p in (0, 1, 2) for s in range(10)
                                  if (p, s) != (2, 9)])
    write_images(root / "val", [f"{p:04d}_{s:02d}.jpg" for p in (0, 1) for s in (0, 3, 5, 8)])
    return root


def test_cuhk03_p1_preset_on_fixture(tmp_path: Path) -> None:
    root = _fake_p1(tmp_path / "cuhk03_p1")
    ds = build_dataset("cuhk03_p1", tmp_path)
    assert len(ds.train) == 29 and ds.num_train_pids == 3 and ds.num_train_cams == 2
    assert {s.camid for s in ds.query} == {0} and {s.camid for s in ds.gallery} == {1}
    assert len(ds.query) == 4 and all(Path(s.path).parent.name == "val" for s in ds.query)
    rev = cuhk03_p1(root, query_camera="B")
    assert rev.query == ds.gallery and rev.gallery == ds.query
    assert reverse_direction(ds).query == ds.gallery
    trans = cuhk03_p1_transductive(root)
    assert {s.camid for s in trans.query} == {0} and len(trans.query) == 15 and len(trans.gallery) == 14
    assert {Path(s.path).parent.name for s in trans.query + trans.gallery} == {"train"}


def test_cuhk03_p1_train_ids_keeps_the_first_identities(tmp_path: Path) -> None:
    root = _fake_p1(tmp_path / "cuhk03_p1")
    full, small = cuhk03_p1(root), cuhk03_p1(root, train_ids=2)
    first_two = sorted({Path(s.path).name.split("_")[0] for s in full.train})[:2]
    assert {Path(s.path).name.split("_")[0] for s in small.train} == set(first_two)
    assert small.num_train_pids == 2 and 0 < len(small.train) < len(full.train)
    assert small.query == full.query and small.gallery == full.gallery
    with pytest.raises(ValueError, match="train_ids must be an integer >= 0"):
        cuhk03_p1(root, train_ids=-1)


def test_cuhk03_p1_bad_shot(tmp_path: Path) -> None:
    root = _fake_p1(tmp_path)
    write_images(root / "val", ["0003_12.jpg", "0003.jpg"])
    with pytest.raises(DatasetLayoutError) as err:
        cuhk03_p1(root)
    assert "2 of 10 image names" in str(err.value) and "PPPP_NN.jpg" in str(err.value)


@pytest.mark.shared
def test_cuhk03_p1_real_data() -> None:
    ds = cuhk03_p1(shared_file("data", "cuhk03_p1"))
    assert len(ds.train) == 7239 and ds.num_train_pids == 743 and ds.num_train_cams == 2
    assert len(ds.query) + len(ds.gallery) == 938
    assert len({s.pid for s in ds.query + ds.gallery}) == 100
    assert {s.camid for s in ds.query} == {0} and {s.camid for s in ds.gallery} == {1}
    trans = cuhk03_p1_transductive(shared_file("data"))
    assert len(trans.query) + len(trans.gallery) == 7239

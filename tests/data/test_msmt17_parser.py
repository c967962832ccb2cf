"""MSMT17 list-file parsing: V1 and V2 folder names, cameras from file names, malformed lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamlabel.data import DatasetLayoutError, build_dataset, msmt17
from tests.data.reid_layouts import write_images

TRAIN = ["0000/0000_000_01_0303morning_0015_0.jpg", "0000/0000_001_05_0303morning_0016_1.jpg",
         "0001/0001_000_15_0303noon_0100_0.jpg"]
VAL = ["0002/0002_000_03_0303afternoon_0200_0.jpg", "0002/0002_011_01_0303afternoon_0210_0.jpg"]
QUERY = ["0000/0000_000_07_0303morning_0008_0.jpg"]
GALLERY = ["0000/0000_001_02_0303morning_0009_0.jpg", "0003/0003_000_11_0303noon_0009_0.jpg"]


def _pid(rel: str) -> int:
    return int(rel.split("/")[0])


def make_msmt(base: Path, train_dir: str = "train", test_dir: str = "test") -> Path:
    write_images(base / train_dir, TRAIN + VAL)
    write_images(base / test_dir, QUERY + GALLERY)
    for name, rels in (("train", TRAIN), ("val", VAL), ("query", QUERY), ("gallery", GALLERY)):
        (base / f"list_{name}.txt").write_text("".join(f"{r} {_pid(r)}\n" for r in rels))
    return base


def test_v1_counts_and_cameras(tmp_path: Path) -> None:
    make_msmt(tmp_path / "MSMT17_V1")
    ds = build_dataset("msmt17", tmp_path)
    assert len(ds.train) == 5 and ds.num_train_pids == 3  # list_train + list_val
    by_name = {Path(s.path).name: s for s in ds.train + ds.query + ds.gallery}
    assert by_name["0000_000_01_0303morning_0015_0.jpg"].camid == 0
    assert by_name["0001_000_15_0303noon_0100_0.jpg"].camid == 14
    assert by_name["0002_011_01_0303afternoon_0210_0.jpg"].camid == 0  # camera is the 3rd field, not 011
    assert by_name["0000_000_07_0303morning_0008_0.jpg"].camid == 6
    assert sorted({s.pid for s in ds.train}) == [0, 1, 2]
    assert [s.pid for s in ds.gallery] == [0, 3]
    assert all(Path(s.path).is_file() for s in ds.train + ds.query + ds.gallery)


def test_without_val(tmp_path: Path) -> None:
    ds = msmt17(make_msmt(tmp_path), include_val=False)
    assert len(ds.train) == 3 and ds.num_train_pids == 2


def test_v2_mask_folders(tmp_path: Path) -> None:
    make_msmt(tmp_path / "MSMT17_V2", "mask_train_v2", "mask_test_v2")
    ds = msmt17(tmp_path)
    assert len(ds.train) == 5 and "mask_train_v2" in ds.train[0].path and "mask_test_v2" in ds.query[0].path


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    base = make_msmt(tmp_path)
    lines = (base / "list_query.txt").read_text() + "0000/0000_000_07_0303morning_0008_0.jpg zero\n"
    (base / "list_query.txt").write_text(lines)
    with pytest.raises(DatasetLayoutError) as err:
        msmt17(base)
    assert f"{base / 'list_query.txt'}:2" in str(err.value) and "malformed line" in str(err.value)


def test_bad_camera_field_names_line(tmp_path: Path) -> None:
    base = make_msmt(tmp_path)
    (base / "list_gallery.txt").write_text("0000/0000_000_xx_0303morning_0009_0.jpg 0\n")
    with pytest.raises(DatasetLayoutError, match=r"list_gallery.txt:1: .*numeric camera"):
        msmt17(base)


def test_listed_image_missing(tmp_path: Path) -> None:
    base = make_msmt(tmp_path)
    (base / "train" / TRAIN[2]).unlink()
    with pytest.raises(DatasetLayoutError, match=r"1 images listed in .*list_train.txt do not exist"):
        msmt17(base)


@pytest.mark.parametrize("missing", ["list_gallery.txt", "list_train.txt", "test"])
def test_missing_pieces(tmp_path: Path, missing: str) -> None:
    base = make_msmt(tmp_path)
    target = base / missing
    if target.is_dir():
        for p in sorted(target.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        target.rmdir()
    else:
        target.unlink()
    with pytest.raises(DatasetLayoutError) as err:
        msmt17(base)
    assert missing in str(err.value) and "Expected layout" in str(err.value)


def test_empty_list_file(tmp_path: Path) -> None:
    base = make_msmt(tmp_path)
    (base / "list_query.txt").write_text("\n")
    with pytest.raises(DatasetLayoutError, match="lists no images"):
        msmt17(base)

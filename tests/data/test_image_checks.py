"""Corrupt image detection (skip / raise) and RGB loading of grayscale, CMYK and palette images."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from streamlabel.data import (
    ReidDataset,
    ReidSample,
    UnreadableImageError,
    find_unreadable_images,
    load_image,
    market1501,
    verify_dataset,
    verify_images,
)
from tests.data.reid_layouts import jpeg_bytes, market_like


def _big_jpeg() -> bytes:
    img = Image.effect_noise((64, 128), 60).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture
def mixed(tmp_path: Path) -> tuple[list[ReidSample], dict[str, Path]]:
    good = _big_jpeg()
    files = {
        "good1": good,
        "zero": b"",
        "truncated": good[: len(good) // 2],
        "text": b"this is not an image\n",
        "good2": jpeg_bytes(),
    }
    paths = {}
    for i, (key, data) in enumerate(files.items()):
        paths[key] = tmp_path / f"{i:04d}_c1s1_000001_00.jpg"
        paths[key].write_bytes(data)
    samples = [ReidSample(str(paths[k]), i, 0) for i, k in enumerate(files)]
    return samples, paths


def test_find_unreadable(mixed: tuple[list[ReidSample], dict[str, Path]]) -> None:
    samples, paths = mixed
    bad = find_unreadable_images([s.path for s in samples])
    assert [p for p, _ in bad] == [str(paths[k]) for k in ("zero", "truncated", "text")]


def test_skip_warns_with_count_and_paths(mixed: tuple[list[ReidSample], dict[str, Path]]) -> None:
    samples, paths = mixed
    with pytest.warns(UserWarning, match="skipping 3 unreadable image") as rec:
        good = verify_images(samples, on_error="skip")
    assert [s.path for s in good] == [str(paths["good1"]), str(paths["good2"])]
    msg = str(rec[0].message)
    assert all(str(paths[k]) in msg for k in ("zero", "truncated", "text"))


def test_raise_names_the_path(mixed: tuple[list[ReidSample], dict[str, Path]]) -> None:
    samples, paths = mixed
    with pytest.raises(UnreadableImageError) as err:
        verify_images(samples, on_error="raise")
    assert err.value.path == str(paths["zero"]) and str(paths["zero"]) in str(err.value)
    assert "2 more" in str(err.value)
    with pytest.raises(ValueError, match="on_error"):
        verify_images(samples, on_error="ignore")  # type: ignore[arg-type]


def test_threaded_check_matches_serial(tmp_path: Path) -> None:
    good, data = _big_jpeg(), {}
    for i in range(100):
        data[tmp_path / f"{i}.jpg"] = good if i % 7 else good[:300]
    for p, b in data.items():
        p.write_bytes(b)
    paths = [str(p) for p in data]
    assert find_unreadable_images(paths, num_threads=4) == find_unreadable_images(paths, num_threads=1)
    assert len(find_unreadable_images(paths)) == 15


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "RGBA", "I;16"])
def test_modes_load_as_rgb(tmp_path: Path, mode: str) -> None:
    rgb = Image.new("RGB", (10, 20), (10, 120, 250))
    img = rgb.convert(mode) if mode != "I;16" else Image.new(mode, (10, 20), 300)
    path = tmp_path / f"img.{'jpg' if mode in ('L', 'CMYK') else 'png'}"
    img.save(path)
    assert find_unreadable_images([str(path)]) == []
    out = load_image(str(path))
    assert out.mode == "RGB" and out.size == (10, 20)


@pytest.mark.parametrize("content", [b"", b"not an image", jpeg_bytes()[:40]])
def test_load_image_error_names_path(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "0001_c1s1_000001_00.jpg"
    path.write_bytes(content)
    with pytest.raises(UnreadableImageError) as err:
        load_image(str(path))
    assert str(path) in str(err.value)


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UnreadableImageError, match="nope.jpg"):
        load_image(str(tmp_path / "nope.jpg"))


def test_verify_dataset_keeps_train_pids_dense(tmp_path: Path) -> None:
    root = market_like(tmp_path, ["0002_c1s1_000001_00.jpg", "0005_c1s1_000001_00.jpg",
                                  "0009_c2s1_000001_00.jpg"], ["0001_c1s1_000001_00.jpg"],
                       ["0001_c2s1_000001_00.jpg"])
    (root / "bounding_box_train" / "0005_c1s1_000001_00.jpg").write_bytes(b"")
    with pytest.warns(UserWarning, match="skipping 1"):
        ds = verify_dataset(market1501(root))
    assert isinstance(ds, ReidDataset) and [s.pid for s in ds.train] == [0, 1]

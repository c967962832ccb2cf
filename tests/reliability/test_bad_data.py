"""Bad datasets and images: clear errors naming the folder/file and the expected layout; odd colour modes load."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from streamlabel.config.errors import ConfigError
from streamlabel.data import DatasetLayoutError, UnreadableImageError, build_transforms, load_image
from streamlabel.data.image_dataset import ReidImageDataset
from streamlabel.data.samples import ReidSample
from streamlabel.engine.setup import build_domain
from streamlabel.launch import cli
from tests.reliability.reliability_inputs import DEMO, MARKET_TRAIN, image_bytes, market_tree


def _spec(root: Path, name: str = "market1501", **kwargs: object) -> dict:
    return {"name": name, "root": str(root), "kwargs": kwargs}


def _flat(root: Path) -> None:
    for name in MARKET_TRAIN:  # images straight in the root, no split folders
        root.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(image_bytes())


def _renamed_folders(root: Path) -> None:
    market_tree(root)
    (root / "bounding_box_train").rename(root / "train")


def _empty_train(root: Path) -> None:
    market_tree(root, train=[])


def _bad_names(root: Path) -> None:
    market_tree(root, train=["person1.jpg", "0002_c1s1_000451_03.jpg"])


def _only_junk(root: Path) -> None:
    market_tree(root, train=["-1_c1s1_000401_03.jpg", "0000_c6s1_000001_02.jpg"])


def _root_is_file(root: Path) -> None:
    root.write_text("not a folder")


# (case, how to spoil the root, regex of the message)
BAD_LAYOUTS: list[tuple[str, Callable[[Path], None], str]] = [
    ("root missing", lambda root: None, r"dataset root ROOT does not exist or is not a folder\nExpected layout:"),
    ("root is a file", _root_is_file, r"dataset root ROOT does not exist or is not a folder"),
    ("root empty", lambda root: root.mkdir(), r"ROOT/bounding_box_train is missing .*\nExpected layout:\n<root>/"),
    ("images without split folders", _flat, r"ROOT/bounding_box_train is missing"),
    ("split folder misnamed", _renamed_folders, r"ROOT/bounding_box_train is missing"),
    ("train folder empty", _empty_train, r"ROOT/bounding_box_train holds no images \(.jpg/.jpeg/.png/.bmp\)"),
    ("file names in another convention", _bad_names, r"1 of 2 image names in ROOT/bounding_box_train cannot be "
     r"parsed, e.g. 'person1.jpg': does not match"),
    ("only junk and distractors", _only_junk, r"ROOT/bounding_box_train holds only junk \(-1\) or distractor"),
]


@pytest.mark.parametrize(("case", "spoil", "pattern"), BAD_LAYOUTS, ids=[c[0] for c in BAD_LAYOUTS])
def test_bad_layout_names_folder_and_expected_layout(tmp_path: Path, case: str, spoil, pattern: str) -> None:
    root = tmp_path / "market"
    spoil(root)
    with pytest.raises(DatasetLayoutError) as info:
        build_domain(_spec(root), "skip")
    message = str(info.value)
    assert re.search(pattern.replace("ROOT", re.escape(str(root.resolve()) if root.is_dir() else str(root))),
                     message, re.S), f"{case}: {message}"


def test_unknown_dataset_name_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match=r"unknown dataset 'market'; did you mean 'market1501'\? \(available: .*"):
        build_domain(_spec(tmp_path, name="market"), "skip")


def test_unknown_dataset_kwarg_is_a_config_error(tmp_path: Path) -> None:
    market_tree(tmp_path / "m")
    with pytest.raises(ConfigError, match=r"dataset 'market1501' \(root .*\): bad 'kwargs': .*'strictt'"):
        build_domain(_spec(tmp_path / "m", strictt=False), "skip")


_GOOD = image_bytes("RGB", "JPEG", (64, 128))
# (case, file bytes, the reason the message must give)
BAD_IMAGES = [
    ("zero bytes", b"", r"zero-byte file"),
    ("truncated JPEG", _GOOD[: len(_GOOD) // 2], r"OSError: image file is truncated"),
    ("text file named .jpg", b"this is not an image\n", r"UnidentifiedImageError: not an image format PIL can "
     r"identify"),
    ("header only", _GOOD[:20], r"UnidentifiedImageError: not an image format PIL can identify"),
]


@pytest.mark.parametrize(("case", "data", "reason"), BAD_IMAGES, ids=[c[0] for c in BAD_IMAGES])
def test_bad_image_is_skipped_with_a_warning_naming_it(tmp_path: Path, case: str, data: bytes, reason: str) -> None:
    root = market_tree(tmp_path / "m")
    bad = root / "bounding_box_train" / MARKET_TRAIN[1]
    bad.write_bytes(data)
    with pytest.warns(UserWarning, match=rf"skipping 1 unreadable image\(s\) of 4:\n  {re.escape(str(bad))}: {reason}"):
        dataset = build_domain(_spec(root), "skip")
    assert len(dataset.train) == 3 and str(bad) not in {s.path for s in dataset.train}


@pytest.mark.parametrize(("case", "data", "reason"), BAD_IMAGES, ids=[c[0] for c in BAD_IMAGES])
def test_bad_image_raises_naming_it(tmp_path: Path, case: str, data: bytes, reason: str) -> None:
    root = market_tree(tmp_path / "m")
    bad = root / "bounding_box_train" / MARKET_TRAIN[2]
    bad.write_bytes(data)
    with pytest.raises(UnreadableImageError, match=rf"cannot read image {re.escape(str(bad))}: {reason}"):
        build_domain(_spec(root), "raise")


def test_all_training_images_unreadable_is_an_error(tmp_path: Path) -> None:
    root = market_tree(tmp_path / "m", data=b"")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=r"every training image is unreadable"):
            build_domain(_spec(root), "skip")


def test_train_command_reports_a_bad_image_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = market_tree(tmp_path / "m")
    bad = root / "bounding_box_train" / MARKET_TRAIN[0]
    bad.write_bytes(b"")
    spec = f"{{name: market1501, root: {root}}}"
    code = cli.main(["train", "--config", str(DEMO), "--cpu", "--quiet", f"output_dir={tmp_path / 'run'}",
                     f"data.source={spec}", f"data.target={spec}", "data.on_bad_image=raise"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith(f"streamlabel train: error: cannot read image {bad}: zero-byte file"), err


def test_missing_dataset_root_through_the_train_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = f"{{name: market1501, root: {tmp_path / 'nowhere'}}}"
    code = cli.main(["train", "--config", str(DEMO), "--cpu", "--quiet", f"output_dir={tmp_path / 'run'}",
                     f"data.source={spec}", f"data.target={spec}"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"dataset root {tmp_path / 'nowhere'} does not exist or is not a folder\nExpected layout:" in err


# (PIL mode, file format) of images that must load as RGB
COLOUR_MODES = [("L", "JPEG"), ("CMYK", "JPEG"), ("P", "PNG"), ("RGBA", "PNG"), ("LA", "PNG"), ("1", "PNG"),
                ("I;16", "PNG"), ("F", "TIFF")]


@pytest.mark.parametrize(("mode", "fmt"), COLOUR_MODES, ids=[m for m, _ in COLOUR_MODES])
def test_colour_modes_load_as_rgb_and_train(tmp_path: Path, mode: str, fmt: str) -> None:
    path = tmp_path / f"0001_c1s1_000001_00.{fmt.lower()}"
    path.write_bytes(image_bytes(mode, fmt))
    assert Image.open(path).mode == mode
    assert load_image(str(path)).mode == "RGB"
    dataset = ReidImageDataset([ReidSample(str(path), 0, 0)], build_transforms(True, 32, 16))
    img = dataset[0]["img"]
    assert img.shape == (3, 32, 16) and bool(torch.isfinite(img).all())


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    """convert("RGB") clips 16-bit values at 255 (an all-white person); load_image scales them."""
    ramp = (np.arange(32 * 16).reshape(32, 16) * 128).astype(np.uint16)
    path = tmp_path / "ramp16.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode == "I;16"
    rgb = np.asarray(load_image(str(path)))
    assert rgb.min() == 0 and rgb.max() == 255 and 100 < rgb.mean() < 155
    assert np.asarray(Image.open(path).convert("RGB")).mean() > 250  # what plain PIL gives

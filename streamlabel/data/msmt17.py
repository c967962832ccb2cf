"""MSMT17 (V1 / V2): list files ``list_{train,val,query,gallery}.txt`` with lines ``relative/path pid``."""

from __future__ import annotations

from pathlib import Path

from .layout import IMAGE_EXTENSIONS, camera_index, layout_error, missing_root_error
from .registry import register_dataset
from .samples import ReidDataset, ReidSample, relabel

MSMT17_LAYOUT = """\
<root>/                  (or <root>/MSMT17_V1/, <root>/MSMT17_V2/, <root>/MSMT17/)
  train/                 (V2: mask_train_v2/)  0000/0000_000_01_0303morning_0015_0.jpg ...
  test/                  (V2: mask_test_v2/)   0000/0000_000_01_0303morning_0008_0.jpg ...
  list_train.txt         lines "0000/0000_000_01_0303morning_0015_0.jpg 0"
  list_val.txt           same format, more train images
  list_query.txt         same format, paths under test/
  list_gallery.txt       same format, paths under test/
"""

_LISTS = ("list_train.txt", "list_val.txt", "list_query.txt", "list_gallery.txt")
_FOLDERS = {"train": ("train", "mask_train_v2"), "test": ("test", "mask_test_v2")}
_CANDIDATES = ("MSMT17_V1", "MSMT17_V2", "MSMT17")


def msmt17_camid(file_name: str) -> int:
    """0-based camera from an MSMT17 name ``PPPP_III_CC_date_frame_n.jpg`` (CC = camera 01-15).

    The camera is the third ``_`` field (the second after the pid); the field before it is a running index.
    """
    fields = Path(file_name).name.split("_")
    if len(fields) < 4 or not fields[2].isdigit():
        raise ValueError(f"expected PPPP_III_CC_... with a numeric camera CC, got {file_name!r}")
    return camera_index(fields[2], base=1)


def _locate(root: Path) -> Path:
    if not root.is_dir():
        raise missing_root_error(root, MSMT17_LAYOUT)
    for base in [root, *(root / c for c in _CANDIDATES)]:
        if (base / "list_train.txt").is_file():
            return base
    raise layout_error(f"{root / 'list_train.txt'} is missing", MSMT17_LAYOUT)


def _image_folder(base: Path, kind: str) -> Path:
    for name in _FOLDERS[kind]:
        if (base / name).is_dir():
            return base / name
    names = " or ".join(f"{base / n}" for n in _FOLDERS[kind])
    raise layout_error(f"image folder {names} is missing", MSMT17_LAYOUT)


def read_list_file(list_path: Path, image_dir: Path, check_files: bool = True) -> list[ReidSample]:
    """Samples of one MSMT17 list file; malformed lines raise naming the file and line number."""
    if not list_path.is_file():
        raise layout_error(f"{list_path} is missing", MSMT17_LAYOUT)
    image_dir = image_dir.resolve()
    samples: list[ReidSample] = []
    missing: list[str] = []
    for lineno, line in enumerate(list_path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        where = f"{list_path}:{lineno}"
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise layout_error(f"{where}: malformed line {line!r}, expected '<relative/path.jpg> <pid>'",
                               MSMT17_LAYOUT)
        rel, pid = parts[0], int(parts[1])
        if Path(rel).suffix.lower() not in IMAGE_EXTENSIONS or pid < 0:
            raise layout_error(f"{where}: malformed line {line!r} (not an image path or negative pid)",
                               MSMT17_LAYOUT)
        try:
            camid = msmt17_camid(rel)
        except ValueError as exc:
            raise layout_error(f"{where}: {exc}", MSMT17_LAYOUT) from None
        path = image_dir / rel
        if check_files and not path.is_file():
            missing.append(str(path))
        samples.append(ReidSample(str(path), pid, camid))
    if missing:
        raise layout_error(
            f"{len(missing)} images listed in {list_path} do not exist, e.g. {missing[0]}", MSMT17_LAYOUT
        )
    if not samples:
        raise layout_error(f"{list_path} lists no images", MSMT17_LAYOUT)
    return sorted(samples, key=lambda s: s.path)


@register_dataset("msmt17")
def msmt17(root: str | Path, include_val: bool = True, check_files: bool = True) -> ReidDataset:
    """MSMT17, 15 cameras; train = list_train + list_val (32,621 images, 1,041 ids) or list_train only."""
    base = _locate(Path(root).expanduser())
    for name in _LISTS:
        if not (base / name).is_file():
            raise layout_error(f"{base / name} is missing", MSMT17_LAYOUT)
    train_dir, test_dir = _image_folder(base, "train"), _image_folder(base, "test")
    train = read_list_file(base / "list_train.txt", train_dir, check_files)
    if include_val:
        seen = {s.path for s in train}
        val = read_list_file(base / "list_val.txt", train_dir, check_files)
        train = sorted(train + [s for s in val if s.path not in seen], key=lambda s: s.path)
    query = read_list_file(base / "list_query.txt", test_dir, check_files)
    gallery = read_list_file(base / "list_gallery.txt", test_dir, check_files)
    return ReidDataset(name="msmt17", train=relabel(train), query=query, gallery=gallery)

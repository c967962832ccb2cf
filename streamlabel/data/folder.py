"""Generic folder datasets (pid/camid from a file-name regex) and the ``cuhk03_p1`` preset."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

from .layout import find_root, layout_error, list_images, missing_root_error, parse_file_names
from .registry import register_dataset
from .samples import ReidDataset, ReidSample, relabel

CamidMap = Callable[[dict[str, str]], int] | Mapping[str, int]

DEFAULT_PATTERN = r"(?P<pid>-?\d+)_c(?P<camid>\d+).*"

FOLDER_LAYOUT = """\
<root>/
  <train>/      images named so that `pattern` gives groups pid and camid (or camid_map does)
  <query>/      (optional)
  <gallery>/    (optional)
"""

CUHK03_P1_LAYOUT = """\
<root>/                  (cuhk03_p1, or a folder holding cuhk03_p1/)
  train/                 PPPP_NN.jpg, NN = shot 00-09: 00-04 camera A (camid 0), 05-09 camera B (camid 1)
  val/                   PPPP_NN.jpg, ids numbered from 0000 again
"""
CUHK03_P1_PATTERN = r"(?P<pid>\d{4})_(?P<shot>\d{2})\.(?i:jpe?g)"


def _make_parser(
    pattern: re.Pattern[str], camid_map: CamidMap | None, camid_base: int
) -> Callable[[re.Match[str]], tuple[int, int]]:
    if "pid" not in pattern.groupindex:
        raise ValueError(f"pattern {pattern.pattern!r} needs a named group 'pid'")
    if camid_map is None and "camid" not in pattern.groupindex:
        raise ValueError(f"pattern {pattern.pattern!r} needs a named group 'camid' or a camid_map")

    def parse(match: re.Match[str]) -> tuple[int, int]:
        groups = match.groupdict()
        if camid_map is None:
            camid = int(groups["camid"]) - camid_base
        elif callable(camid_map):
            camid = int(camid_map(groups))
        else:
            raw = groups.get("camid")
            if raw not in camid_map:
                raise ValueError(f"camera {raw!r} is not in camid_map")
            camid = int(camid_map[raw])
        if camid < 0:
            raise ValueError(f"camera id {camid} is negative")
        return int(groups["pid"]), camid

    return parse


def parse_folder(
    folder: Path,
    pattern: str | re.Pattern[str] = DEFAULT_PATTERN,
    camid_map: CamidMap | None = None,
    camid_base: int = 0,
    recursive: bool = False,
    strict: bool = True,
    layout: str = FOLDER_LAYOUT,
) -> list[ReidSample]:
    """Samples of one folder, sorted by path; pid and camid come from the file name via ``pattern``.

    ``camid_map`` is a callable on the match's named groups, or a mapping from the ``camid`` group's text;
    without it camid = int(camid group) - ``camid_base``.
    """
    regex = re.compile(pattern)
    files = list_images(folder, layout, recursive=recursive)
    return parse_file_names(files, regex, _make_parser(regex, camid_map, camid_base), layout, folder, strict)


@register_dataset("folder")
def folder_dataset(
    root: str | Path,
    train: str | None = "train",
    query: str | None = "query",
    gallery: str | None = "gallery",
    pattern: str = DEFAULT_PATTERN,
    camid_map: CamidMap | None = None,
    camid_base: int = 0,
    recursive: bool = False,
    strict: bool = True,
    name: str = "folder",
) -> ReidDataset:
    """A dataset from up to three sub-folders of ``root`` (None = empty split).

    Train drops pid < 0 and is relabelled to 0..P-1; query drops pid < 0; gallery keeps pid -1 as junk.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise missing_root_error(root, FOLDER_LAYOUT)

    def split(sub: str | None) -> list[ReidSample]:
        if sub is None:
            return []
        return parse_folder(root / sub, pattern, camid_map, camid_base, recursive, strict)

    train_samples = [s for s in split(train) if s.pid >= 0]
    if train is not None and not train_samples:
        raise layout_error(f"{root / train} holds only junk (pid < 0) images", FOLDER_LAYOUT)
    return ReidDataset(
        name=name,
        train=relabel(train_samples),
        query=[s for s in split(query) if s.pid >= 0],
        gallery=split(gallery),
    )


def cuhk03_p1_camid(groups: dict[str, str]) -> int:
    """Camera of a cuhk03_p1 shot: 00-04 -> 0 (camera A), 05-09 -> 1 (camera B)."""
    shot = int(groups["shot"])
    if shot > 9:
        raise ValueError(f"shot {shot:02d} is outside 00-09")
    return 0 if shot < 5 else 1


def split_by_camera(samples: list[ReidSample], query_camid: int) -> tuple[list[ReidSample], list[ReidSample]]:
    """(samples of camera ``query_camid``, all other samples): a cross-camera query/gallery split."""
    query = [s for s in samples if s.camid == query_camid]
    gallery = [s for s in samples if s.camid != query_camid]
    return query, gallery


@register_dataset("cuhk03_p1")
def cuhk03_p1(
    root: str | Path, eval_split: str = "val", query_camera: str = "A", train_ids: int = 0
) -> ReidDataset:
    """CUHK03 camera pair 1: train = all of train/; query/gallery = camera A/B of ``eval_split``.

    ``eval_split="train"`` is the transductive check (retrieval on the unlabeled train crops);
    ``query_camera="B"`` gives the reverse direction. Query/gallery keep the raw ids of the file names.
    ``train_ids`` > 0 keeps the train crops of the first that many identities (by raw id) only: a smaller
    target for quick end-to-end checks (the evaluation split is unchanged).
    """
    if eval_split not in ("val", "train"):
        raise ValueError(f"eval_split must be 'val' or 'train', got {eval_split!r}")
    if query_camera not in ("A", "B"):
        raise ValueError(f"query_camera must be 'A' or 'B', got {query_camera!r}")
    if not isinstance(train_ids, int) or train_ids < 0:
        raise ValueError(f"train_ids must be an integer >= 0 (0 = all), got {train_ids!r}")
    base = find_root(root, ("train", "val"), CUHK03_P1_LAYOUT, candidates=("cuhk03_p1",))

    def parse(sub: str) -> list[ReidSample]:
        return parse_folder(base / sub, CUHK03_P1_PATTERN, cuhk03_p1_camid, layout=CUHK03_P1_LAYOUT)

    train_raw = parse("train")
    evaluated = train_raw if eval_split == "train" else parse("val")
    if train_ids:
        kept = set(sorted({s.pid for s in train_raw})[:train_ids])
        train_raw = [s for s in train_raw if s.pid in kept]
    query, gallery = split_by_camera(evaluated, 0 if query_camera == "A" else 1)
    other = "B" if query_camera == "A" else "A"
    suffix = "" if (eval_split, query_camera) == ("val", "A") else f"_{eval_split}_{query_camera}to{other}"
    return ReidDataset(name=f"cuhk03_p1{suffix}", train=relabel(train_raw), query=query, gallery=gallery)


def cuhk03_p1_transductive(root: str | Path, query_camera: str = "A") -> ReidDataset:
    """The transductive split: query = train camera A, gallery = train camera B (or the reverse)."""
    return cuhk03_p1(root, eval_split="train", query_camera=query_camera)

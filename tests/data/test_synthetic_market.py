"""The synthetic domains on disk: Market-1501 layout, parser round trip, registry and CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from streamlabel.data import build_dataset
from streamlabel.data.synthetic import SyntheticReid, write_synthetic_market
from streamlabel.launch.cli import main

SIZES = {"num_train_ids": 5, "num_test_ids": 3}
NAME = re.compile(r"(\d{4})_c(\d)s([1-6])_(\d{6})_(\d{2})\.jpg")
FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


def _names(root: Path, folder: str) -> list[str]:
    return sorted(p.name for p in (root / folder).iterdir())


def test_market_layout_and_names(tmp_path: Path) -> None:
    summary = write_synthetic_market(tmp_path, seed=0, domain="source", **SIZES)
    train_pids, test_pids = set(), set()
    for split, folder in FOLDERS.items():
        names = _names(tmp_path, folder)
        assert len(names) == summary[split] > 0
        for name in names:
            match = NAME.fullmatch(name)
            assert match, name
            assert 1 <= int(match[2]) <= 4  # 1-based cameras in the file name
            (train_pids if split == "train" else test_pids).add(int(match[1]))
    assert not train_pids & test_pids
    assert (len(train_pids), len(test_pids)) == (summary["train_ids"], summary["test_ids"]) == (5, 3)
    assert json.loads((tmp_path / "synthetic.json").read_text())["domain"] == "source"


def test_market_parser_round_trip(tmp_path: Path) -> None:
    write_synthetic_market(tmp_path, seed=1, domain="target", **SIZES)
    data = build_dataset("market1501", tmp_path)
    memory = SyntheticReid("target", seed=1, **SIZES)
    for split in FOLDERS:
        parsed, expected = getattr(data, split), memory.subset(split)
        assert len(parsed) == len(expected)
        assert sorted(s.camid for s in parsed) == sorted(expected.camids.tolist())  # 0-based after parsing
    assert sorted({s.pid for s in data.train}) == list(range(5))  # relabelled by the parser
    assert sorted(s.pid for s in data.query) == sorted(memory.query.pids.tolist())
    # JPEG on disk is the in-memory image up to compression.
    first = data.query[0]
    index = memory.names.index(Path(first.path).name)
    on_disk = np.asarray(Image.open(first.path), dtype=np.float32)
    in_memory = memory.images[index].permute(1, 2, 0).numpy().astype(np.float32)
    assert np.abs(on_disk - in_memory).mean() < 6.0


def test_written_bytes_are_deterministic(tmp_path: Path) -> None:
    write_synthetic_market(tmp_path / "a", seed=4, **SIZES)
    write_synthetic_market(tmp_path / "b", seed=4, **SIZES)
    write_synthetic_market(tmp_path / "c", seed=5, **SIZES)
    for folder in FOLDERS.values():
        names = _names(tmp_path / "a", folder)
        assert names == _names(tmp_path / "b", folder)
        for name in names:
            assert (tmp_path / "a" / folder / name).read_bytes() == (
                tmp_path / "b" / folder / name
            ).read_bytes()
    a = b"".join((tmp_path / "a" / "query" / n).read_bytes() for n in _names(tmp_path / "a", "query"))
    c = b"".join((tmp_path / "c" / "query" / n).read_bytes() for n in _names(tmp_path / "c", "query"))
    assert a != c


def test_refuses_to_mix_with_existing_images(tmp_path: Path) -> None:
    write_synthetic_market(tmp_path, seed=0, **SIZES)
    with pytest.raises(FileExistsError, match="overwrite"):
        write_synthetic_market(tmp_path, seed=1, **SIZES)
    summary = write_synthetic_market(tmp_path, seed=1, overwrite=True, num_train_ids=2, num_test_ids=1)
    assert len(_names(tmp_path, "bounding_box_train")) == summary["train"]


def test_registry_builds_on_an_empty_folder_and_reuses_it(tmp_path: Path) -> None:
    root = tmp_path / "synthetic_target"
    data = build_dataset("synthetic", root, domain="target", seed=2, **SIZES)
    assert data.name == "synthetic_target" and data.num_train_pids == 5 and data.query and data.gallery
    stamp = (root / "synthetic.json").stat().st_mtime_ns
    again = build_dataset("synthetic", root, domain="target", seed=2, **SIZES)
    assert (root / "synthetic.json").stat().st_mtime_ns == stamp  # not regenerated
    assert [s.path for s in again.gallery] == [s.path for s in data.gallery]
    other = build_dataset("synthetic", root, domain="target", seed=3, **SIZES)
    assert (root / "synthetic.json").stat().st_mtime_ns != stamp  # other arguments: rewritten
    assert other.num_train_pids == 5


def test_cli_preview_and_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "preview.png"
    assert main(["synth", "--preview", str(png), "--ids", "3", "--shots", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size == (
            result["preview"]["width"],
            result["preview"]["height"],
        )
        assert image.height == 16 + 3 * 128  # rows = identities at the preview size
    out = tmp_path / "market"
    args = ["synth", "--out", str(out), "--train-ids", "3", "--test-ids", "2", "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["datasets"]) == {"source", "target"}
    assert build_dataset("market1501", out / "target").num_train_pids == 3
    assert main(args) == 2  # refuses to overwrite without --overwrite
    assert "overwrite" in capsys.readouterr().err
    assert main(["synth"]) == 2

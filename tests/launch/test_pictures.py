"""evaluate --show and labels --montage (evaluation/pictures.py): the PNG's size follows the layout, the
borders say right (green) / wrong (red), and bad picture inputs are refused before any work.
Mutants killed: colours swapped, the protocol's same-camera removal skipped, rows not drawn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from streamlabel.evaluation.pictures import BLUE, BORDER, CELL, GAP, GREEN, LABEL_W, RED, TEXT_H
from streamlabel.launch.cli import main

TILE_W, TILE_H = CELL[0] + 2 * BORDER, CELL[1] + 2 * BORDER + TEXT_H


def _images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.new("RGB", (32, 64), (10 * i % 255, 40, 90)).save(folder / name)


def _dump(path: Path, feats: np.ndarray, pids: list[int], cams: list[int], names: list[str]) -> Path:
    np.savez(path, feats=feats.astype("float32"), pids=np.array(pids), camids=np.array(cams), names=np.array(names))
    return path


def _pixel(png: Path, row: int, column: int) -> tuple[int, int, int]:
    """The top-left border pixel of tile ``column`` (0 = the query / first member) of row ``row``."""
    with Image.open(png) as img:
        return img.convert("RGB").getpixel((LABEL_W + column * (TILE_W + GAP) + 1, GAP + row * (TILE_H + GAP) + 1))


def test_retrieval_grid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # query 7 (camera 0) ; gallery: g0 id 7 cam 0 (removed: same id and camera), g1 id 7 cam 1 (right),
    # g2 id 3 cam 1 (wrong), g3 junk -1 (removed). Nearest first: g0, g3, g2, g1 by cosine.
    e = np.eye(4)
    query = _dump(tmp_path / "q.npz", e[[0]], [7], [0], ["q0.png"])
    gallery = _dump(tmp_path / "g.npz", np.stack([e[0], 0.2 * e[0] + e[1], 0.8 * e[0] + e[2], 0.9 * e[0] + e[3]]),
                    [7, 7, 3, -1], [0, 1, 1, 1], ["g0.png", "g1.png", "g2.png", "g3.png"])
    _images(tmp_path / "img", ["q0.png", "g0.png", "g1.png", "g2.png", "g3.png"])
    png = tmp_path / "grid.png"
    assert main(["evaluate", "--query", str(query), "--gallery", str(gallery), "--show", str(png),
                 "--images", str(tmp_path / "img")]) == 0
    with Image.open(png) as img:
        assert img.size == (LABEL_W + 3 * (TILE_W + GAP), GAP + TILE_H + GAP)  # query + the 2 scorable images
    assert (_pixel(png, 0, 0), _pixel(png, 0, 1), _pixel(png, 0, 2)) == (BLUE, RED, GREEN)  # g2 then g1
    capsys.readouterr()
    # refused before any work: no image folder, a name not found, a folder as output
    assert main(["evaluate", "--query", str(query), "--gallery", str(gallery), "--show", str(png)]) == 2
    assert "--images" in capsys.readouterr().err
    (tmp_path / "img" / "g2.png").unlink()
    assert main(["evaluate", "--query", str(query), "--gallery", str(gallery), "--show", str(png),
                 "--images", str(tmp_path / "img")]) == 2
    assert "g2.png" in capsys.readouterr().err
    assert main(["evaluate", "--query", str(query), "--gallery", str(gallery), "--show", str(tmp_path),
                 "--images", str(tmp_path / "img")]) == 2


def test_cluster_montage(tmp_path: Path) -> None:
    # ids 0 (4 images) and 1 (4 images) far apart, plus one id-2 image next to id 1: clusters {0} and {1, 2}
    rng = np.random.default_rng(0)
    centres = np.eye(8)[:2] * 5
    feats = np.concatenate([centres[0] + 0.01 * rng.normal(size=(4, 8)), centres[1] + 0.01 * rng.normal(size=(5, 8))])
    pids = [0, 0, 0, 0, 1, 1, 1, 1, 2]
    names = [f"i{i}.png" for i in range(9)]
    dump = _dump(tmp_path / "f.npz", feats, pids, [0, 1] * 4 + [0], names)
    _images(tmp_path / "img", names)
    png = tmp_path / "montage.png"
    assert main(["labels", "--features", str(dump), "--policy", "spcl", "eps=0.6", "min_samples=2", "k1=4", "k2=2",
                 "--montage", str(png), "--images", str(tmp_path / "img"), "--quiet"]) == 0
    with Image.open(png) as img:
        assert img.size == (LABEL_W + 5 * (TILE_W + GAP), GAP + 2 * (TILE_H + GAP))
    # the larger cluster first: ids 1 1 1 1 2 -> four green, the id-2 member red; then id 0: all green
    assert [_pixel(png, 0, c) for c in range(5)] == [GREEN] * 4 + [RED]
    assert [_pixel(png, 1, c) for c in range(4)] == [GREEN] * 4
    assert main(["labels", "--features", str(dump), "--montage", str(png)]) == 2  # no --images

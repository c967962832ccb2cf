"""`streamlabel evaluate` through the CLI dispatcher."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamlabel.evaluation import evaluate_retrieval
from streamlabel.launch.cli import main
from tests.helpers.shared_data import shared_file


def _dump(path: Path, rng: np.random.Generator, n: int, **overrides) -> Path:
    data = {
        "feats": rng.normal(size=(n, 8)).astype(np.float32),
        "pids": rng.integers(0, 5, n),
        "camids": rng.integers(0, 2, n),
    }
    data.update(overrides)
    np.savez(path, **{k: v for k, v in data.items() if v is not None})
    return path


def _last_json(capsys) -> dict:
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) >= 2  # a human-readable line, then the JSON object
    return json.loads(out[-1])


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    return _dump(tmp_path / "q.npz", rng, 30), _dump(tmp_path / "g.npz", rng, 120)


def test_query_gallery_json(files, capsys):
    q, g = files
    assert main(["evaluate", "--query", str(q), "--gallery", str(g), "--json"]) == 0
    res = _last_json(capsys)
    qd, gd = np.load(q), np.load(g)
    ref = evaluate_retrieval(
        qd["feats"], qd["pids"], qd["camids"], gd["feats"], gd["pids"], gd["camids"]
    )
    for key in ("mAP", "rank1", "rank5", "rank10", "num_valid_queries"):
        assert res[key] == pytest.approx(ref[key])
    assert res["rerank"] is False and res["num_gallery"] == 120


def test_rerank_and_ranks(files, capsys):
    q, g = files
    argv = [
        "evaluate",
        "--query",
        str(q),
        "--gallery",
        str(g),
        "--rerank",
        "--k1",
        "8",
        "--ranks",
        "1,3",
    ]
    assert main([*argv, "--json"]) == 0
    res = _last_json(capsys)
    assert res["rerank"] is True and {"rank1", "rank3"} <= res.keys() and 0 <= res["mAP"] <= 1


def test_split_by_camera(tmp_path, capsys):
    rng = np.random.default_rng(1)
    f = _dump(tmp_path / "all.npz", rng, 80)
    assert main(["evaluate", "--split-by-camera", str(f), "--query-cam", "1", "--json"]) == 0
    res = _last_json(capsys)
    d = np.load(f)
    qm = d["camids"] == 1
    assert res["num_queries"] == int(qm.sum()) and res["num_gallery"] == int((~qm).sum())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"pids": None}, "missing key"),
        ({"feats": np.full((30, 8), np.nan, dtype=np.float32)}, "NaN"),
        ({"camids": np.zeros(29, dtype=np.int64)}, "camids has shape"),
        ({"feats": np.ones((30, 5), dtype=np.float32)}, "feature dims differ"),
    ],
)
def test_bad_inputs(tmp_path, capsys, overrides, message):
    rng = np.random.default_rng(2)
    q = _dump(tmp_path / "q.npz", rng, 30, **overrides)
    g = _dump(tmp_path / "g.npz", rng, 40)
    assert main(["evaluate", "--query", str(q), "--gallery", str(g)]) == 2
    assert message in capsys.readouterr().err


def test_usage_errors(files, tmp_path, capsys):
    q, g = files
    assert main(["evaluate", "--query", str(tmp_path / "missing.npz"), "--gallery", str(g)]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["evaluate", "--query", str(q)]) == 2
    assert "--gallery" in capsys.readouterr().err
    assert main(["evaluate", "--split-by-camera", str(q), "--query-cam", "7"]) == 2
    assert "--query-cam 7" in capsys.readouterr().err
    np.save(tmp_path / "plain.npy", np.zeros(3))
    assert main(["evaluate", "--split-by-camera", str(tmp_path / "plain.npy")]) == 2
    assert "npz" in capsys.readouterr().err


@pytest.mark.shared
def test_real_cuhk03_val(capsys):
    # OSNet-x0.25 (MSMT17) embeddings of CUHK03 pair-1 val: camera A query -> camera B gallery.
    VAL = shared_file("embeddings", "cuhk03p1_val_osnet_x0_25_msmt17.npz")  # noqa: N806
    assert main(["evaluate", "--split-by-camera", str(VAL), "--query-cam", "0", "--json"]) == 0
    res = _last_json(capsys)
    assert res["rank1"] == pytest.approx(0.532, abs=0.005)
    assert res["mAP"] == pytest.approx(0.523, abs=0.005)
    assert (
        main(["evaluate", "--split-by-camera", str(VAL), "--query-cam", "0", "--rerank", "--json"])
        == 0
    )
    assert _last_json(capsys)["mAP"] > res["mAP"]

"""`streamlabel extract`: a dataset split embedded by a config's or a checkpoint's model, in the .npz that
`labels` and `evaluate` read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamlabel.launch import cli
from tests.reliability.fs_snapshot import tree_digest
from tests.reliability.reliability_inputs import DEMO, tiny_train_overrides


def _last_json(capsys: pytest.CaptureFixture[str]) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_checkpoint_dumps_score_as_evaluate_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The query and gallery dumps of a trained checkpoint give evaluate --checkpoint's mAP, and the train dump
    feeds labels. Mutant killed: extract ignoring the checkpoint's weights (the config's fresh model)."""
    run = tmp_path / "run"
    tiny = tiny_train_overrides(run, tmp_path / "data", iterations=2)
    assert cli.main(["train", "--quiet", *tiny]) == 0
    capsys.readouterr()
    ckpt = run / "checkpoints"
    for split in ("query", "gallery", "train"):
        out = tmp_path / f"{split}.npz"
        code = cli.main(["extract", "--checkpoint", str(ckpt), "--split", split, "--out", str(out), "--quiet",
                         "--json"])
        assert code == 0
        summary = _last_json(capsys)
        dump = np.load(tmp_path / f"{split}.npz")
        assert set(dump.files) == {"feats", "pids", "camids", "names"}
        assert dump["feats"].shape == (summary["images"], summary["feat_dim"]) and dump["feats"].dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(dump["feats"], axis=1), 1.0, atol=1e-5)
        assert len(dump["names"]) == summary["images"] and str(dump["names"][0]).endswith(".jpg")
    assert cli.main(["evaluate", "--query", str(tmp_path / "query.npz"), "--gallery", str(tmp_path / "gallery.npz"),
                     "--json"]) == 0
    from_dumps = _last_json(capsys)
    assert cli.main(["evaluate", "--checkpoint", str(ckpt), "--quiet", "--json"]) == 0
    from_checkpoint = _last_json(capsys)
    assert from_dumps["mAP"] == pytest.approx(from_checkpoint["mAP"], abs=1e-6)
    fresh = tmp_path / "fresh_query.npz"
    config_run = [a for a in tiny if not a.startswith(("train.", "log.", "cpu_threads", "eval."))]
    assert cli.main(["extract", "--config", str(DEMO), *config_run, "--split", "query", "--out", str(fresh),
                     "--quiet"]) == 0
    assert not np.allclose(np.load(fresh)["feats"], np.load(tmp_path / "query.npz")["feats"], atol=1e-3)
    assert cli.main(["labels", "--features", str(tmp_path / "train.npz"), "k=5", "--quiet"]) == 0


@pytest.mark.parametrize(("extra", "message"), [
    (["--dataset", "market1501"], "give --dataset and --root together"),
    (["--out", "{config}"], "must end in .npz"),
    (["--out", "{data}/x.npz", "--dataset", "market1501", "--root", "{data}/x.npz"], "also an input of this command"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
])
def test_bad_extract_arguments(extra: list[str], message: str, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    """Refused before any image is read, nothing written."""
    (tmp_path / "data").mkdir()
    extra = [e.format(config=DEMO, data=tmp_path / "data") for e in extra]
    argv = ["extract", "--config", str(DEMO), "--out", str(tmp_path / "o.npz"), *extra]
    before = tree_digest(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert tree_digest(tmp_path) == before

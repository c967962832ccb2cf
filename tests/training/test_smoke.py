"""train.smoke (engine/smoke.py): the schedule and every split are cut, and a real-data config runs end to
end in seconds. Mutants killed: smoke ignored (the full schedule runs), datasets not cut."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from streamlabel.data.samples import ReidDataset, ReidSample
from streamlabel.engine.checkpoint import load_checkpoint
from streamlabel.engine.smoke import SMOKE_EXTRA, smoke_dataset
from streamlabel.launch import train as train_entry
from tests.helpers.shared_data import shared_file
from tests.training.tiny_runs import REPO


def test_smoke_dataset_keeps_the_first_identities():
    train = [ReidSample(f"t{i}", i // 3, i % 2) for i in range(60)]  # 20 ids, 3 images each
    query = [ReidSample(f"q{i}", 100 + i, 0) for i in range(20)]
    gallery = ([ReidSample(f"g{i}", 100 + i, 1) for i in range(20)]
               + [ReidSample(f"d{i}", 0, 1) for i in range(40)] + [ReidSample("junk", -1, 1)])
    cut = smoke_dataset(ReidDataset("toy", train, query, gallery), num_ids=4)
    assert [s.pid for s in cut.train] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert [s.pid for s in cut.query] == [100, 101, 102, 103]
    assert [s.pid for s in cut.gallery[:4]] == [100, 101, 102, 103]
    assert len(cut.gallery) == 4 + SMOKE_EXTRA  # distractors and junk, at most SMOKE_EXTRA of them


def _smoke(config: Path, out: Path, *extra: str) -> dict:
    return train_entry.run(argparse.Namespace(config=config, overrides=[f"output_dir={out}", "train.smoke=true",
                                                                         "log.tensorboard=false", *extra],
                                              resume=False, cpu=True, quiet=True))


def test_demo_smoke_cuts_every_phase(tmp_path: Path, synthetic_root: Path) -> None:
    overrides = [f"data.source={{name: synthetic, root: {synthetic_root}/source, kwargs: {{domain: source}}}}",
                 f"data.target={{name: synthetic, root: {synthetic_root}/target, kwargs: {{domain: target}}}}",
                 "data.num_workers=0", "cpu_threads=1"]
    results = _smoke(REPO / "configs" / "demo.yaml", tmp_path / "run", *overrides)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert (saved["train"]["iterations"], saved["train"]["pretrain_iterations"]) == (4, 2)
    assert len(results["history"]) == 3 and "adapted_mAP" in results and "source_mAP" not in results  # -1, 0, 1


@pytest.mark.shared
@pytest.mark.parametrize("config", ["cpu_cuhk03.yaml"])  # cpu_market.yaml: tests/test_readme_commands.py
def test_real_data_configs_run_end_to_end(config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared_file("models", "osnet_x0_25_msmt17.onnx")
    shared_file("data", "market1501" if "market" in config else "cuhk03_p1")
    monkeypatch.chdir(REPO)  # the configs' data and model paths are relative to the repository root
    results = _smoke(REPO / "configs" / config, tmp_path / "run", "data.num_workers=0", "cpu_threads=1")
    assert len(results["history"]) == 3 and 0.0 <= results["adapted_mAP"] <= 1.0
    bank = load_checkpoint(tmp_path / "run" / "checkpoints", fingerprint=None)["policy"]["bank"]["features"]
    assert 16 * 4 <= bank.shape[0] <= 16 * 30  # the images of 16 identities, not the 7,239 / 12,936 of train

"""train.smoke (engine/smoke.py): the schedule and every split are cut, and a real-data config runs end to
end in seconds. Mutants killed: smoke ignored (the full schedule runs), datasets not cut."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from streamlabel.data.samples import ReidDataset, ReidSample
from streamlabel.engine.smoke import SMOKE_EXTRA, smoke_dataset
from streamlabel.launch import train as train_entry
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


# a real-data config under train.smoke: tests/test_readme_commands.py runs configs/cpu_market.yaml that way

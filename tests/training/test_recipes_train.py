"""Every method's CPU recipe (configs/<method>_cuhk03.yaml) trains end to end: here on the tiny synthetic data
with a small OSNet in place of the ONNX model, so the policy, its losses, the sample selection and the
refresh schedule of the recipe all run (the real-data numbers come from benchmarks/train_runs.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from conftest import REPO, tiny_overrides

from streamlabel.launch import train as train_entry

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("method", ["spcl", "lbg", "nplp", "dcml", "inclr"])
def test_cpu_recipe_trains(method: str, tmp_path: Path, synthetic_root: Path) -> None:
    overrides = [*tiny_overrides(tmp_path / "run", synthetic_root), "train.iterations=4", "train.iters_per_epoch=2"]
    args = argparse.Namespace(config=REPO / "configs" / f"{method}_cuhk03.yaml", overrides=overrides, resume=False,
                              cpu=True, quiet=True)
    results = train_entry.run(args)
    assert results["skipped_steps"] == 0 and len(results["history"]) == 3  # first labels + 2 epochs
    assert 0.0 <= results["adapted_mAP"] <= 1.0

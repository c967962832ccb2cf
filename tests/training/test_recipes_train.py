"""Every method's CPU recipe (configs/<method>_cuhk03.yaml) trains end to end: here on the tiny synthetic data
with a small OSNet in place of the ONNX model, so the policy, its losses, the sample selection and the
refresh schedule of the recipe all run (the real-data numbers come from benchmarks/train_runs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.training.tiny_runs import REPO, train_tiny

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("method", ["spcl", "lbg", "nplp", "dcml", "inclr"])
def test_cpu_recipe_trains(method: str, tmp_path: Path, synthetic_root: Path) -> None:
    results = train_tiny(tmp_path / "run", synthetic_root, config=REPO / "configs" / f"{method}_cuhk03.yaml")
    assert results["skipped_steps"] == 0 and len(results["history"]) == 3  # first labels + 2 epochs
    assert 0.0 <= results["adapted_mAP"] <= 1.0

"""Every method's recipe trains end to end, in its CPU CUHK03 form (configs/<method>_cuhk03.yaml) and its demo
form (configs/<method>_demo.yaml): here on the tiny synthetic data with a small OSNet, so the policy, its
losses, the sample selection and the refresh schedule of the recipe all run (the numbers of full-length
runs come from benchmarks/train_runs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.training.tiny_runs import REPO, train_tiny

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("setting", ["cuhk03", "demo"])
@pytest.mark.parametrize("method", ["spcl", "lbg", "nplp", "dcml", "inclr"])
def test_recipe_trains(method: str, setting: str, tmp_path: Path, synthetic_root: Path) -> None:
    # the tiny model replaces the demo's, and with it its keyword arguments: inclr's demo asks for parts again
    extra = ["model.kwargs={parts: 3}", "policy.k1=10", "policy.k2=3"] if (method, setting) == ("inclr", "demo") else []
    results = train_tiny(tmp_path / "run", synthetic_root, *extra,
                         config=REPO / "configs" / f"{method}_{setting}.yaml")
    assert results["skipped_steps"] == 0 and len(results["history"]) == 3  # first labels + 2 epochs
    assert 0.0 <= results["adapted_mAP"] <= 1.0

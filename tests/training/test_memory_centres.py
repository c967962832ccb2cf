"""``loss.centres``: the target cluster entries of the hybrid memory are the plain mean of the cluster's
bank rows (default, as SpCL and HCD) or unit length; the choice reaches the loss of a real run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.training.tiny_runs import train_tiny

pytestmark = pytest.mark.usefixtures("single_thread")


def _loss_trace(out: Path, synthetic_root: Path, centres: str) -> list[float]:
    return train_tiny(out, synthetic_root, "train.pretrain_iterations=0", f"loss.centres={centres}")["loss_trace"]


def test_mean_centres_change_the_loss(tmp_path: Path, synthetic_root: Path) -> None:
    unit = _loss_trace(tmp_path / "normalised", synthetic_root, "normalised")
    mean = _loss_trace(tmp_path / "mean", synthetic_root, "mean")
    # same model, data and labels at the first step: only the centre entries differ (mean: norm < 1)
    assert len(unit) == len(mean) == 4 and unit[0] != pytest.approx(mean[0], rel=1e-6)

"""``refresh_source``: an offline policy's epoch-end refresh clusters freshly extracted features ("extract",
as the papers) or the momentum bank ("bank")."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from streamlabel.methods.offline import OfflineClusteringPolicy
from tests.training.tiny_runs import record_refreshes, train_tiny


def _run(out: Path, synthetic_root: Path, source: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A tiny spcl run (2 adaptation epochs, refresh every epoch); records each reload and its extraction."""
    seen = record_refreshes(monkeypatch, OfflineClusteringPolicy)
    train_tiny(out, synthetic_root, f"policy={{name: spcl, refresh_every: 1, k1: 10, refresh_source: {source}}}")
    return seen


def test_extract_clusters_fresh_features_at_every_refresh(tmp_path: Path, synthetic_root: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _run(tmp_path / "extract", synthetic_root, "extract", monkeypatch)
    assert seen["passes"] == 3 and len(seen["reloads"]) == 2  # the first labels + one pass per refresh
    # each epoch-end clustering read exactly the fresh pass (unit rows), not a momentum blend
    for fresh, clustered in zip(seen["reloads"], seen["refreshed"][1:], strict=True):
        torch.testing.assert_close(clustered, torch.nn.functional.normalize(fresh, dim=1))


def test_bank_clusters_the_momentum_bank(tmp_path: Path, synthetic_root: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _run(tmp_path / "bank", synthetic_root, "bank", monkeypatch)
    assert seen["passes"] == 1 and seen["reloads"] == [] and len(seen["refreshed"]) == 3

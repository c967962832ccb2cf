"""``refresh_source``: an offline policy's epoch-end refresh clusters freshly extracted features ("extract",
as the papers) or the momentum bank ("bank")."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from streamlabel.engine.trainer import Trainer
from streamlabel.methods.offline import OfflineClusteringPolicy
from tests.training.tiny_runs import train_tiny


def _run(out: Path, synthetic_root: Path, source: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A tiny spcl run (2 adaptation epochs, refresh every epoch); records each reload and its extraction."""
    seen: dict = {"passes": 0, "reloads": [], "clustered": []}
    target_pass, reload_bank, refresh = Trainer._target_pass, OfflineClusteringPolicy.reload_bank, \
        OfflineClusteringPolicy.refresh

    def counting_pass(self: Trainer):
        seen["passes"] += 1
        return target_pass(self)

    def recording_reload(self: OfflineClusteringPolicy, features: torch.Tensor, **extra: torch.Tensor) -> None:
        seen["reloads"].append(features.clone())
        reload_bank(self, features, **extra)

    def recording_refresh(self: OfflineClusteringPolicy) -> None:
        seen["clustered"].append(self.bank.features.clone())
        refresh(self)

    monkeypatch.setattr(Trainer, "_target_pass", counting_pass)
    monkeypatch.setattr(OfflineClusteringPolicy, "reload_bank", recording_reload)
    monkeypatch.setattr(OfflineClusteringPolicy, "refresh", recording_refresh)
    train_tiny(out, synthetic_root, f"policy={{name: spcl, refresh_every: 1, k1: 10, refresh_source: {source}}}")
    return seen


def test_extract_clusters_fresh_features_at_every_refresh(tmp_path: Path, synthetic_root: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _run(tmp_path / "extract", synthetic_root, "extract", monkeypatch)
    assert seen["passes"] == 3 and len(seen["reloads"]) == 2  # the first labels + one pass per refresh
    # each epoch-end clustering read exactly the fresh pass (unit rows), not a momentum blend
    for fresh, clustered in zip(seen["reloads"], seen["clustered"][1:], strict=True):
        torch.testing.assert_close(clustered, torch.nn.functional.normalize(fresh, dim=1))


def test_bank_clusters_the_momentum_bank(tmp_path: Path, synthetic_root: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _run(tmp_path / "bank", synthetic_root, "bank", monkeypatch)
    assert seen["passes"] == 1 and seen["reloads"] == [] and len(seen["clustered"]) == 3

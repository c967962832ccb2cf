"""Online hcd with ``policy.refresh_source: extract``: at every epoch end the trainer reloads the
bank from a fresh pass of the current model and the labels start anew from it (re-anchoring)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from streamlabel.engine.trainer import Trainer
from streamlabel.methods.hcd import HCDPolicy
from tests.training.tiny_runs import train_tiny


def test_online_hcd_reanchors_on_a_fresh_pass_every_epoch(tmp_path: Path, synthetic_root: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict = {"passes": 0, "reloads": [], "refreshed": []}
    target_pass, reload_bank, refresh = (
        Trainer._target_pass,
        HCDPolicy.reload_bank,
        HCDPolicy.refresh,
    )

    def counting_pass(self: Trainer):
        seen["passes"] += 1
        return target_pass(self)

    def recording_reload(self: HCDPolicy, features: torch.Tensor, **extra: torch.Tensor) -> None:
        seen["reloads"].append(features.clone())
        reload_bank(self, features, **extra)

    def recording_refresh(self: HCDPolicy) -> None:
        seen["refreshed"].append(self.bank.features.clone())
        refresh(self)

    monkeypatch.setattr(Trainer, "_target_pass", counting_pass)
    monkeypatch.setattr(HCDPolicy, "reload_bank", recording_reload)
    monkeypatch.setattr(HCDPolicy, "refresh", recording_refresh)
    results = train_tiny(tmp_path / "run", synthetic_root, "policy.refresh_source=extract")
    # the first labels, then one pass per epoch end
    assert seen["passes"] == 3 and len(seen["reloads"]) == 2
    for fresh, clustered in zip(seen["reloads"], seen["refreshed"], strict=True):
        torch.testing.assert_close(clustered, torch.nn.functional.normalize(fresh, dim=1))
    assert [stats["epoch"] for stats in results["history"]] == [-1, 0, 1]

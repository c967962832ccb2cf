"""Online hcd with ``policy.refresh_source: extract``: at every epoch end the trainer reloads the
bank from a fresh pass of the current model and the labels start anew from it (re-anchoring)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from streamlabel.methods.hcd import HCDPolicy
from tests.training.tiny_runs import record_refreshes, train_tiny


def test_online_hcd_reanchors_on_a_fresh_pass_every_epoch(tmp_path: Path, synthetic_root: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    seen = record_refreshes(monkeypatch, HCDPolicy)
    results = train_tiny(tmp_path / "run", synthetic_root, "policy.refresh_source=extract")
    # the first labels, then one pass per epoch end
    assert seen["passes"] == 3 and len(seen["reloads"]) == 2
    for fresh, clustered in zip(seen["reloads"], seen["refreshed"], strict=True):
        torch.testing.assert_close(clustered, torch.nn.functional.normalize(fresh, dim=1))
    assert [stats["epoch"] for stats in results["history"]] == [-1, 0, 1]

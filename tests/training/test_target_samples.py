"""Training set control: samples a policy rejects (-1) stay out of the target batches and the hybrid memory
(``train.target_samples``), and ``loss.hybrid_memory: false`` leaves the training to ``loss.terms``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from streamlabel.banks.hybrid_memory import HybridMemory
from streamlabel.config.errors import ConfigError
from streamlabel.methods import base as policy_base
from streamlabel.methods.offline import OfflineClusteringPolicy
from tests.training.tiny_runs import train_tiny


class HalvesPolicy(OfflineClusteringPolicy):
    """Pairs of consecutive samples in the first half are clusters; the second half is rejected (-1)."""

    train_outliers = False
    size = 0  # the number of target samples it last clustered

    def cluster(self, features: torch.Tensor, cameras: torch.Tensor) -> torch.Tensor:
        n = HalvesPolicy.size = features.shape[0]
        return torch.where(torch.arange(n) < n // 2, torch.arange(n) // 2, -1)


def _run(out: Path, synthetic_root: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> list[tuple]:
    """A tiny run with HalvesPolicy registered for this test only; returns what each memory loss saw."""
    monkeypatch.setitem(policy_base.POLICIES._entries, "halves-test", HalvesPolicy)
    monkeypatch.setattr(HalvesPolicy, "name", "halves-test")
    seen: list[tuple] = []
    original = HybridMemory.loss

    def spy(self, source_feats, source_labels, target_feats, target_indices, target_entries, target_positive):
        if target_indices is not None:
            seen.append((target_indices.clone(), target_entries.shape[0]))
        return original(self, source_feats, source_labels, target_feats, target_indices, target_entries,
                        target_positive)

    monkeypatch.setattr(HybridMemory, "loss", spy)
    train_tiny(out, synthetic_root, "policy={name: halves-test, refresh_every: 1}", *extra)
    return seen


def test_rejected_samples_never_reach_a_batch_or_the_memory(tmp_path: Path, synthetic_root: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _run(tmp_path / "labelled", synthetic_root, monkeypatch)
    half = HalvesPolicy.size // 2
    assert seen and all(int(idx.max()) < half for idx, _ in seen)
    assert {entries for _, entries in seen} == {half // 2}  # the clusters only, no instance entry


def test_all_trains_the_rejected_samples_as_instances(tmp_path: Path, synthetic_root: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _run(tmp_path / "all", synthetic_root, monkeypatch, "train.target_samples=all")
    num, half = HalvesPolicy.size, HalvesPolicy.size // 2
    assert any(int(idx.max()) >= half for idx, _ in seen)
    assert {entries for _, entries in seen} == {half // 2 + num - half}  # clusters + one entry per outlier


def test_without_the_hybrid_memory_only_the_terms_train(tmp_path: Path, synthetic_root: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _run(tmp_path / "terms", synthetic_root, monkeypatch, "loss.hybrid_memory=false",
                "loss.terms={triplet: {weight: 1.0, domains: both}}")
    assert seen == []  # the memory loss never ran, yet the run trained (the triplet term)
    with pytest.raises(ConfigError, match="nothing would train the model"):
        _run(tmp_path / "nothing", synthetic_root, monkeypatch, "loss.hybrid_memory=false")

"""Degenerate clusterings (all outliers, one giant cluster, singletons, one camera): loss, samplers and the hcd
policy keep working (finite values, no empty batch) and the trainer's log says what happened."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from streamlabel.banks.hybrid_memory import HybridMemory, memory_entries
from streamlabel.data.samplers import IdentityBatchSampler
from streamlabel.engine.hooks import label_statistics
from streamlabel.engine.label_health import degenerate_labels, degenerate_message
from streamlabel.engine.trainer import Trainer
from streamlabel.methods import build_policy

N, D = 24, 8
# (case, labels) of the degenerate clusterings
DEGENERATE = {
    "all outliers": torch.full((N,), -1),
    "one giant cluster": torch.zeros(N, dtype=torch.long),
    "all singletons": torch.arange(N),
    "giant plus outliers": torch.where(torch.arange(N) < 20, 0, -1),
    "one cluster of one": torch.cat([torch.tensor([0]), torch.full((N - 1,), -1)]),
}


def _feats(seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(N, D, generator=torch.Generator().manual_seed(seed)), dim=1)


@pytest.mark.parametrize("case", list(DEGENERATE))
@pytest.mark.parametrize("num_source", [0, 5], ids=["unsupervised", "with source"])
def test_hybrid_memory_loss_is_finite_with_finite_gradients(case: str, num_source: int) -> None:
    labels = DEGENERATE[case]
    entries, positive = memory_entries(_feats(), labels)
    assert entries.shape[0] >= 1 and bool(torch.isfinite(entries).all())
    memory = HybridMemory(num_source, D)
    if num_source:
        memory.init_source(_feats(1)[:10], torch.arange(10) % num_source)
    batch = torch.randn(8, D, requires_grad=True)
    source = torch.randn(4, D) if num_source else None
    source_labels = torch.arange(4) % num_source if num_source else None
    losses = memory.loss(source, source_labels, batch, torch.arange(8), entries, positive)
    losses["loss"].backward()
    assert bool(torch.isfinite(losses["loss"])) and bool(torch.isfinite(batch.grad).all()), case


@pytest.mark.parametrize("case", list(DEGENERATE))
@pytest.mark.parametrize("outliers", ["singleton", "exclude"])
def test_identity_sampler_never_yields_an_empty_or_short_batch(case: str, outliers: str) -> None:
    labels = DEGENERATE[case]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sampler = IdentityBatchSampler(labels, batch_size=8, num_instances=2, outliers=outliers, seed=0)
    if outliers == "exclude" and case == "all outliers":
        assert any("every label is an outlier" in str(w.message) for w in caught)  # said, then singletons
    batches = list(sampler)
    assert len(batches) >= 1
    for batch in batches:
        assert len(batch) == 8 and all(0 <= i < N for i in batch)
        if outliers == "exclude" and case != "all outliers":
            assert all(int(labels[i]) >= 0 for i in batch)


def test_sampler_with_fewer_images_than_one_batch() -> None:
    sampler = IdentityBatchSampler(torch.tensor([0, 0, 1]), batch_size=16, num_instances=4)
    batches = list(sampler)
    assert batches and all(len(b) == 16 for b in batches)


def _degenerate_features(case: str) -> torch.Tensor:
    if case == "orthogonal (all outliers)":
        return torch.eye(N, D * 3)[:, :D * 3]
    if case == "identical (one cluster)":
        return torch.ones(N, D * 3) + 1e-4 * torch.randn(N, D * 3, generator=torch.Generator().manual_seed(0))
    return F.normalize(torch.randn(N, D * 3, generator=torch.Generator().manual_seed(0)), dim=1)


@pytest.mark.parametrize("case", ["orthogonal (all outliers)", "identical (one cluster)", "random"])
def test_hcd_keeps_working_on_degenerate_features_from_one_camera(case: str) -> None:
    feats = _degenerate_features(case)
    cams = torch.zeros(N, dtype=torch.long)
    policy = build_policy("hcd", num_samples=N, feat_dim=feats.shape[1], k=5)
    policy.initialize(feats, cameras=cams)
    gen = torch.Generator().manual_seed(1)
    memory = HybridMemory(0, feats.shape[1])
    for _ in range(12):
        rows = torch.randperm(N, generator=gen)[:6]
        policy.step(rows, feats[rows], cams[rows])
        policy.label_bank.check_invariant()
        entries, positive = policy.memory_entries()
        loss = memory.loss(None, None, feats[rows], rows, entries, positive)["loss"]
        assert bool(torch.isfinite(loss)) and bool(torch.isfinite(entries).all())
    policy.epoch_end(0)
    labels = policy.labels()
    assert labels.shape == (N,) and int(labels.min()) >= -1
    assert "every sample comes from one camera" in degenerate_message(labels, cams)
    if case == "orthogonal (all outliers)":
        assert bool((labels == -1).all())
        assert "every one of the 24 samples is an outlier" in degenerate_message(labels)


@pytest.mark.parametrize(("labels", "expected"), [
    (torch.full((10,), -1), ["every one of the 10 samples is an outlier: the loss uses instance entries only"]),
    (torch.tensor([0, 0] + [-1] * 18), []),  # 90% outliers is the limit, not above it
    (torch.tensor([0, 0] + [-1] * 19), ["19 of 21 samples (90.5%) are outliers"]),
    (torch.zeros(10, dtype=torch.long), ["all 10 samples are in a single cluster: the target loss has one entry"]),
    (torch.tensor([0] * 6 + [1, 1, 2, 2]), ["one cluster holds 6 of 10 samples (60.0%)"]),
    (torch.tensor([0] * 5 + [1] * 5), []),
    (torch.arange(10), []),  # singletons: many small clusters, nothing degenerate in itself
], ids=["all outliers", "90% outliers", "above 90% outliers", "one cluster", "giant cluster",
        "two halves", "singletons"])
def test_degenerate_label_notes(labels: torch.Tensor, expected: list[str]) -> None:
    assert degenerate_labels(labels) == expected
    assert degenerate_message(labels) == (f"degenerate pseudo labels: {'; '.join(expected)}" if expected else None)


class _Labels:
    def __init__(self, labels: torch.Tensor) -> None:
        self._labels = labels

    def labels(self) -> torch.Tensor:
        return self._labels


class _MainProcess:
    is_main_process = True


@pytest.mark.parametrize(("labels", "cams", "line"), [
    (torch.full((8,), -1), torch.tensor([0, 1] * 4),
     "[streamlabel] warning: epoch 3: degenerate pseudo labels: every one of the 8 samples is an outlier"),
    (torch.zeros(8, dtype=torch.long), torch.zeros(8, dtype=torch.long),
     "[streamlabel] warning: epoch 3: degenerate pseudo labels: all 8 samples are in a single cluster: "
     "the target loss has one entry; every sample comes from one "
     "camera"),
], ids=["all outliers", "one cluster, one camera"])
def test_trainer_logs_degenerate_labels(labels: torch.Tensor, cams: torch.Tensor, line: str,
                                        capsys: pytest.CaptureFixture) -> None:
    trainer = Trainer.__new__(Trainer)  # only what label_statistics reads
    trainer.policy, trainer.history, trainer.acc = _Labels(labels), [], _MainProcess()
    trainer.target_pids, trainer.target_cams = torch.tensor(np.arange(8) // 2), cams
    stats = label_statistics(trainer, 3)
    assert line in capsys.readouterr().out
    assert stats["outlier_frac"] == float((labels < 0).float().mean())


def test_trainer_is_quiet_about_healthy_labels(capsys: pytest.CaptureFixture) -> None:
    trainer = Trainer.__new__(Trainer)
    trainer.policy, trainer.history, trainer.acc = _Labels(torch.arange(8) // 2), [], _MainProcess()
    trainer.target_pids, trainer.target_cams = torch.arange(8) // 2, torch.tensor([0, 1] * 4)
    label_statistics(trainer, 0)
    assert "degenerate" not in capsys.readouterr().out

"""IdentityBatchSampler: P x K structure, determinism, resume, distributed slices, degenerate labels."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from streamlabel.data import IdentityBatchSampler


def _labels(seed: int = 0, n: int = 500, ids: int = 40, outlier_frac: float = 0.2) -> torch.Tensor:
    g = np.random.default_rng(seed)
    lab = g.integers(0, ids, n)
    lab[g.random(n) < outlier_frac] = -1
    return torch.from_numpy(lab)


def _check_pk(batch: list[int], labels: np.ndarray, p: int, k: int, distinct: bool = True) -> None:
    assert len(batch) == p * k
    groups = np.asarray(batch).reshape(p, k)
    ids = labels[groups]
    assert (ids == ids[:, :1]).all()  # each chunk of K is one identity
    if distinct:
        assert len(set(ids[:, 0].tolist())) == p


def test_pk_structure_and_exclusion() -> None:
    labels = _labels()
    sampler = IdentityBatchSampler(labels, batch_size=32, num_instances=4)
    batches = list(sampler)
    assert len(batches) == len(sampler) > 0
    lab = labels.numpy()
    for b in batches:
        _check_pk(b, lab, 8, 4)
        assert (lab[b] >= 0).all()
    seen = {i for b in batches for i in b}
    assert len(seen) / (lab >= 0).sum() > 0.8  # an epoch covers most labelled images


def test_deterministic_and_epochs_differ() -> None:
    labels = _labels()
    a = IdentityBatchSampler(labels, 32, 4, seed=3)
    b = IdentityBatchSampler(labels.numpy(), 32, 4, seed=3)
    first = list(a)
    assert first == list(b)
    second = list(a)  # auto-advances to epoch 1
    assert second != first and a.epoch == 2
    b.set_epoch(1)
    assert list(b) == second
    c = IdentityBatchSampler(labels, 32, 4, seed=4)
    assert list(c) != first


def test_resume_continues_sequence() -> None:
    labels = _labels()
    ref = IdentityBatchSampler(labels, 32, 4, seed=1)
    ref.set_epoch(2)
    full = list(ref)
    run = IdentityBatchSampler(labels, 32, 4, seed=1)
    run.set_epoch(2)
    it = iter(run)
    head = [next(it) for _ in range(5)]
    state = run.state_dict()
    assert state["epoch"] == 2 and state["position"] == 5
    resumed = IdentityBatchSampler([0], 32, 4)  # other labels/seed: restored from the state
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # a loop calling set_epoch with the same epoch keeps the position
    assert head + list(resumed) == full
    assert resumed.epoch == 3
    consumed = run.state_dict(position=3)  # a loader prefetched ahead: save what was consumed
    resumed.load_state_dict(consumed)
    assert list(resumed) == full[3:]
    with pytest.raises(ValueError, match="batch_size=32"):
        IdentityBatchSampler([0], 16, 4).load_state_dict(state)


def test_distributed_slices_are_disjoint_and_cover_global_batch() -> None:
    labels = _labels()
    world = 4
    glob = list(IdentityBatchSampler(labels, 64, 4, seed=7))
    ranks = [list(IdentityBatchSampler(labels, 64, 4, seed=7, num_replicas=world, rank=r))
             for r in range(world)]
    assert all(len(r) == len(glob) for r in ranks)
    lab = labels.numpy()
    for i, g in enumerate(glob):
        parts = [r[i] for r in ranks]
        assert sum(parts, []) == g
        assert all(len(p) == 16 for p in parts)
        ids = [set(lab[p].tolist()) for p in parts]
        assert all(ids[a].isdisjoint(ids[b]) for a in range(world) for b in range(a + 1, world))
    with pytest.raises(ValueError, match="divisible by num_replicas"):
        IdentityBatchSampler(labels, 64, 4, num_replicas=3)


def test_all_outliers_single_identity_and_big_k() -> None:
    with pytest.warns(UserWarning, match="every label is an outlier"):
        s = IdentityBatchSampler(torch.full((10,), -1), 16, 4)
    batches = list(s)
    assert batches and all(len(b) == 16 for b in batches)
    single = IdentityBatchSampler(torch.zeros(3, dtype=torch.long), 16, 4)
    batches = list(single)
    assert len(batches) >= 1 and all(len(b) == 16 and set(b) <= {0, 1, 2} for b in batches)
    assert {i for b in batches for i in b} == {0, 1, 2}
    big_k = IdentityBatchSampler(torch.tensor([0, 0, 1, 2, 2, 2]), 24, 8)
    lab = np.array([0, 0, 1, 2, 2, 2])
    for b in big_k:
        _check_pk(b, lab, 3, 8)


def test_few_identities_repeat_but_never_empty() -> None:
    lab = np.repeat(np.arange(3), 5)
    batches = list(IdentityBatchSampler(lab, 32, 4))
    assert batches
    for b in batches:
        _check_pk(b, lab, 8, 4, distinct=False)


def test_singleton_outliers() -> None:
    lab = np.array([0, 0, 0, 0, -1, -1, -1, 1, 1, 1, 1, -1])
    s = IdentityBatchSampler(lab, 6, 2, outliers="singleton", num_rounds=1)
    assert s.num_groups == 6 and len(s) == 2
    used = {i for b in s for i in b}
    assert {4, 5, 6, 11} <= used
    for b in IdentityBatchSampler(lab, 8, 2, outliers="singleton"):
        chunks = np.asarray(b).reshape(4, 2)
        for c in chunks:
            assert c[0] == c[1] or lab[c[0]] == lab[c[1]] >= 0


def test_set_labels_changes_sequence() -> None:
    s = IdentityBatchSampler(_labels(0), 32, 4, seed=0)
    before = s.epoch_batches(0)
    s.set_labels(_labels(1))
    after = s.epoch_batches(0)
    lab = _labels(1).numpy()
    assert not np.array_equal(before, after)
    for b in after:
        _check_pk(b.tolist(), lab, 8, 4)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="multiple of num_instances"):
        IdentityBatchSampler([0, 1], 30, 4)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        IdentityBatchSampler([], 8, 4)
    with pytest.raises(ValueError, match="integers"):
        IdentityBatchSampler([0.5, 1.0], 8, 4)
    with pytest.raises(ValueError, match="outliers"):
        IdentityBatchSampler([0, 1], 8, 4, outliers="drop")  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(
    labels=st.lists(st.integers(-1, 12), min_size=1, max_size=120),
    k=st.integers(1, 5),
    p=st.integers(1, 6),
    singleton=st.booleans(),
)
def test_property_pk_batches(labels: list[int], k: int, p: int, singleton: bool) -> None:
    lab = np.array(labels)
    with pytest.warns(UserWarning) if (not singleton and (lab < 0).all()) else contextlib.nullcontext():
        s = IdentityBatchSampler(lab, p * k, k, outliers="singleton" if singleton else "exclude", seed=1)
    batches = list(s)
    assert len(batches) == len(s) >= 1
    key = lab.copy()
    key[key < 0] = -1 - np.flatnonzero(key < 0)  # outliers are distinct singletons
    for b in batches:
        chunks = key[np.asarray(b).reshape(p, k)]
        assert (chunks == chunks[:, :1]).all()
        if s.num_groups >= p:
            assert len(set(chunks[:, 0].tolist())) == p
        if not singleton and (lab >= 0).any():
            assert (lab[b] >= 0).all()


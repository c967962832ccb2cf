"""Label-quality metrics: hand-computed cases and an O(N^2) brute-force reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from streamlabel.evaluation import ari, bcubed, label_quality_report, nmi, pairwise_f

# ----------------------------------------------------------------------------- brute-force references


def _singletons(pred: np.ndarray) -> np.ndarray:
    pred = pred.copy()
    out = pred < 0
    pred[out] = pred.max(initial=-1) + 1 + np.arange(out.sum())
    return pred


def brute_bcubed(pred, true):
    pred = _singletons(np.asarray(pred))
    true = np.asarray(true)
    same_p = pred[:, None] == pred[None, :]
    same_t = true[:, None] == true[None, :]
    both = (same_p & same_t).sum(1)
    p = np.mean(both / same_p.sum(1))
    r = np.mean(both / same_t.sum(1))
    return p, r, 2 * p * r / (p + r)


def brute_pairwise(pred, true):
    pred = _singletons(np.asarray(pred))
    true = np.asarray(true)
    iu = np.triu_indices(len(pred), k=1)
    same_p = (pred[:, None] == pred[None, :])[iu]
    same_t = (true[:, None] == true[None, :])[iu]
    tp = np.sum(same_p & same_t)
    p = tp / same_p.sum() if same_p.sum() else 1.0
    r = tp / same_t.sum() if same_t.sum() else 1.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def dense_table(pred, true):
    pred = _singletons(np.asarray(pred))
    true = np.asarray(true)
    up, ut = sorted(set(pred.tolist())), sorted(set(true.tolist()))
    table = np.zeros((len(up), len(ut)))
    for x, y in zip(pred, true, strict=True):
        table[up.index(x), ut.index(y)] += 1
    return table


def brute_nmi(pred, true):
    table = dense_table(pred, true)
    n = table.sum()
    a, b = table.sum(1), table.sum(0)
    if len(a) == len(b) == 1:
        return 1.0
    mi = 0.0
    for i in range(len(a)):
        for j in range(len(b)):
            if table[i, j]:
                mi += table[i, j] / n * math.log(n * table[i, j] / (a[i] * b[j]))
    ha = -sum(x / n * math.log(x / n) for x in a)
    hb = -sum(x / n * math.log(x / n) for x in b)
    if mi <= 1e-15:
        return 0.0
    return mi / ((ha + hb) / 2)


def brute_ari(pred, true):
    # Pair-confusion form: count agreeing / disagreeing pairs directly.
    pred = _singletons(np.asarray(pred))
    true = np.asarray(true)
    iu = np.triu_indices(len(pred), k=1)
    sp = (pred[:, None] == pred[None, :])[iu]
    stt = (true[:, None] == true[None, :])[iu]
    tp = float(np.sum(sp & stt))
    fp = float(np.sum(sp & ~stt))
    fn = float(np.sum(~sp & stt))
    tn = float(np.sum(~sp & ~stt))
    if fp == 0 and fn == 0:
        return 1.0
    return 2 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))


# ----------------------------------------------------------------------------- hand-computed cases


def test_hand_computed_with_outlier():
    pred = np.array([0, 0, 1, 1, -1])
    true = np.array([0, 0, 0, 1, 1])
    # Cells (pred cluster, true class): (0,A)=2, (1,A)=1, (1,B)=1, (outlier,B)=1.
    # Predicted sizes a = 2, 2, 1 (outlier singleton); true sizes b = 3 (A), 2 (B).
    # BCubed P = (2/2 + 2/2 + 1/2 + 1/2 + 1/1) / 5 = 4/5
    # BCubed R = (2/3 + 2/3 + 1/3 + 1/2 + 1/2) / 5 = (8/3) / 5 = 8/15
    p, r, f = bcubed(pred, true)
    assert p == pytest.approx(4 / 5)
    assert r == pytest.approx(8 / 15)
    assert f == pytest.approx(2 * (4 / 5) * (8 / 15) / (4 / 5 + 8 / 15))
    # Pairs: predicted together {01, 23} = 2; truly together {01, 02, 12, 34} = 4; both: {01} = 1.
    # Pairwise P = 1/2, R = 1/4, F = 2 * 1/8 / (3/4) = 1/3
    assert pairwise_f(pred, true) == pytest.approx((0.5, 0.25, 1 / 3))
    # ARI: index = 1, expected = 2 * 4 / C(5,2) = 0.8, max = (2 + 4) / 2 = 3 -> (1 - 0.8) / (3 - 0.8)
    assert ari(pred, true) == pytest.approx(0.2 / 2.2)
    # NMI: MI = sum n_ij/N log(N n_ij / (a_i b_j))
    #   = 2/5 log(5*2/(2*3)) + 1/5 log(5/(2*3)) + 1/5 log(5/(2*2)) + 1/5 log(5/(1*2))
    # H(pred) = -(2/5 log 2/5 * 2 + 1/5 log 1/5), H(true) = -(3/5 log 3/5 + 2/5 log 2/5)
    mi = 0.4 * math.log(10 / 6) + 0.2 * math.log(5 / 6) + 0.2 * math.log(5 / 4) + 0.2 * math.log(5 / 2)
    hp = -(2 * 0.4 * math.log(0.4) + 0.2 * math.log(0.2))
    ht = -(0.6 * math.log(0.6) + 0.4 * math.log(0.4))
    assert nmi(pred, true) == pytest.approx(mi / ((hp + ht) / 2))


def test_outliers_are_not_one_cluster():
    # Two outliers of the same true class: as singletons BCubed P stays 1, R = 1/2 each.
    p, r, _ = bcubed([-1, -1], [7, 7])
    assert (p, r) == (pytest.approx(1.0), pytest.approx(0.5))
    # If -1 were a real cluster the pairwise recall would be 1; as singletons it is 0.
    assert pairwise_f([-1, -1], [7, 7])[1] == 0.0


def test_perfect_labels():
    true = np.array([3, 3, 5, 5, 5, 9])
    pred = np.array([1, 1, 0, 0, 0, 2])  # same partition, different ids
    rep = label_quality_report(pred, true)
    for key in ("bcubed_p", "bcubed_r", "bcubed_f", "pairwise_p", "pairwise_r", "pairwise_f", "nmi", "ari"):
        assert rep[key] == pytest.approx(1.0), key
    assert rep["clusters"] == 3
    assert rep["outlier_frac"] == 0.0


def test_all_singletons():
    true = np.array([0, 0, 0, 1, 1, 2])  # class sizes 3, 2, 1
    pred = -np.ones(6, dtype=np.int64)
    rep = label_quality_report(pred, true)
    # BCubed P = 1; R = (3 * 1/3 + 2 * 1/2 + 1) / 6 = 3/6
    assert rep["bcubed_p"] == pytest.approx(1.0)
    assert rep["bcubed_r"] == pytest.approx(0.5)
    # No predicted pairs: precision is vacuously 1, recall 0 of 4 true pairs.
    assert rep["pairwise_p"] == 1.0 and rep["pairwise_r"] == 0.0 and rep["pairwise_f"] == 0.0
    # index 0, expected 0 (no predicted pairs), max = 4/2 = 2 -> ARI 0.
    assert rep["ari"] == pytest.approx(0.0)
    assert rep["clusters"] == 0
    assert rep["outlier_frac"] == 1.0
    # All singletons against all singletons is a perfect match.
    assert label_quality_report(pred, np.arange(6))["nmi"] == pytest.approx(1.0)
    assert label_quality_report(pred, np.arange(6))["ari"] == pytest.approx(1.0)


def test_single_cluster_edge_cases():
    assert nmi([0, 0, 0], [4, 4, 4]) == 1.0
    assert ari([0, 0, 0], [4, 4, 4]) == 1.0
    assert nmi([0, 0, 0], [1, 2, 3]) == 0.0
    assert ari([0], [0]) == 1.0


def test_torch_input_and_validation():
    pred = torch.tensor([0, 0, 1, -1])
    true = torch.tensor([1, 1, 2, 2])
    assert label_quality_report(pred, true) == label_quality_report(pred.numpy(), true.numpy())
    with pytest.raises(ValueError, match="same length"):
        bcubed([0, 1], [0])
    with pytest.raises(ValueError, match="at least one"):
        bcubed([], [])
    with pytest.raises(ValueError, match="integer"):
        bcubed(np.array([0.5, 1.0]), np.array([0, 1]))


def test_large_input_is_fast_and_sparse():
    # 200k samples: an N x N matrix would need 40 G entries; this must run in well under a second.
    rng = np.random.default_rng(0)
    true = rng.integers(0, 5000, 200_000)
    pred = np.where(rng.random(200_000) < 0.1, -1, true // 2)
    rep = label_quality_report(pred, true)
    assert 0 < rep["bcubed_f"] < 1 and 0 < rep["ari"] < 1
    assert rep["outlier_frac"] == pytest.approx(0.1, abs=0.01)


# ----------------------------------------------------------------------------- property tests

labels = st.integers(min_value=1, max_value=60).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(-1, 6), min_size=n, max_size=n),
        st.lists(st.integers(0, 6), min_size=n, max_size=n),
    )
)


@settings(max_examples=150, deadline=None)
@given(labels)
def test_matches_bruteforce(pair):
    pred, true = (np.array(x, dtype=np.int64) for x in pair)
    assert bcubed(pred, true) == pytest.approx(brute_bcubed(pred, true), abs=1e-12)
    assert pairwise_f(pred, true) == pytest.approx(brute_pairwise(pred, true), abs=1e-12)
    assert nmi(pred, true) == pytest.approx(brute_nmi(pred, true), abs=1e-9)
    assert ari(pred, true) == pytest.approx(brute_ari(pred, true), abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(labels, st.randoms(use_true_random=False))
def test_label_permutation_invariance(pair, rnd):
    pred, true = (np.array(x, dtype=np.int64) for x in pair)
    perm_p = np.array(rnd.sample(range(100, 107), 7))  # relabel non-outliers 0..6 -> distinct ids
    perm_t = np.array(rnd.sample(range(7), 7))
    pred2 = np.where(pred >= 0, perm_p[np.clip(pred, 0, None)], -1)
    true2 = perm_t[true]
    order = np.array(rnd.sample(range(len(pred)), len(pred)))  # and shuffle the samples
    a = label_quality_report(pred, true)
    b = label_quality_report(pred2[order], true2[order])
    assert a == pytest.approx(b, abs=1e-12)

"""Retrieval metrics: a hand-computed case and a per-query brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from streamlabel.evaluation import evaluate_from_distances, evaluate_retrieval


def brute_force(dist, qp, qc, gp, gc, max_rank=50):
    """One query at a time, straight from the protocol's definition."""
    aps, cmcs = [], []
    for i in range(dist.shape[0]):
        order = np.argsort(dist[i], kind="stable")  # ties: lower gallery index first
        ranked = [j for j in order if gp[j] != -1 and not (gp[j] == qp[i] and gc[j] == qc[i])]
        match = np.array([gp[j] == qp[i] for j in ranked], dtype=bool)
        if not match.any():
            continue
        hit_ranks = np.flatnonzero(match) + 1  # 1-based
        aps.append(np.mean(np.arange(1, len(hit_ranks) + 1) / hit_ranks))
        cmcs.append((np.arange(1, max_rank + 1) >= hit_ranks[0]).astype(float))
    if not aps:
        return float("nan"), None, 0
    return float(np.mean(aps)), np.mean(cmcs, axis=0), len(aps)


# Gallery: g0 pid1 cam1, g1 pid2 cam1, g2 pid1 cam0, g3 junk (pid -1), g4 pid1 cam1.
GP = np.array([1, 2, 1, -1, 1])
GC = np.array([1, 1, 0, 1, 1])
QP = np.array([1, 2, 3])
QC = np.array([0, 0, 0])
DIST = np.array(
    [
        [0.5, 0.1, 0.05, 0.2, 0.9],
        [0.3, 0.3, 0.1, 0.0, 0.3],
        [0.1, 0.2, 0.3, 0.4, 0.5],
    ]
)


def test_hand_computed():
    # q0 (pid 1, cam 0): by distance g2 (same pid+cam: removed), g1 (wrong), g3 (junk: removed),
    #   g0 (match), g4 (match). Kept ranking g1, g0, g4 -> hits at ranks 2 and 3:
    #   AP = (1/2 + 2/3) / 2 = 7/12, first hit at rank 2.
    # q1 (pid 2): g3 (junk), g2, then a three-way tie at 0.3 broken by index: g0, g1, g4.
    #   Kept ranking g2, g0, g1, g4 -> single hit at rank 3: AP = 1/3, first hit at rank 3.
    # q2 (pid 3): no match in the gallery -> skipped.
    # mAP = (7/12 + 4/12) / 2 = 11/24; CMC = [0, 1/2, 1, 1, 1, ...]
    res = evaluate_from_distances(DIST, QP, QC, GP, GC, ranks=(1, 2, 3, 5), max_rank=5)
    assert res["mAP"] == pytest.approx(11 / 24)
    assert res["rank1"] == 0.0 and res["rank2"] == 0.5 and res["rank3"] == 1.0 and res["rank5"] == 1.0
    assert res["cmc"] == pytest.approx([0.0, 0.5, 1.0, 1.0, 1.0])
    assert res["num_valid_queries"] == 2 and res["num_queries"] == 3


def test_filters_are_applied():
    # Without the same-camera filter g2 would be q0's first hit; with it rank-1 must be a miss.
    res = evaluate_from_distances(DIST[:1], QP[:1], QC[:1], GP, GC)
    assert res["rank1"] == 0.0
    # Changing g2's camera makes it a valid rank-1 match (and g3 junk still does not count).
    res = evaluate_from_distances(DIST[:1], QP[:1], QC[:1], GP, np.array([1, 1, 1, 1, 1]))
    assert res["rank1"] == 1.0
    # Giving the junk entry a real other pid pushes the hits one place down.
    gp = GP.copy()
    gp[3] = 7
    res = evaluate_from_distances(DIST[:1], QP[:1], QC[:1], gp, GC)
    # kept ranking g1, g3, g0, g4: hits at 3, 4 -> AP = (1/3 + 2/4) / 2
    assert res["mAP"] == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_default_keys_and_cmc_length():
    res = evaluate_from_distances(DIST, QP, QC, GP, GC)
    assert {"mAP", "rank1", "rank5", "rank10", "cmc", "num_valid_queries"} <= res.keys()
    assert len(res["cmc"]) == 50
    assert res["rank10"] == 1.0  # beyond the gallery size CMC stays saturated


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 12),
    st.integers(1, 30),
    st.integers(0, 2**31 - 1),
    st.sampled_from([1, 2, 5, 1000]),
)
def test_matches_bruteforce_with_ties(nq, ng, seed, chunk):
    rng = np.random.default_rng(seed)
    dist = rng.integers(0, 4, (nq, ng)).astype(np.float64)  # many exact ties
    qp, gp = rng.integers(0, 4, nq), rng.integers(-1, 4, ng)
    qc, gc = rng.integers(0, 2, nq), rng.integers(0, 2, ng)
    _, _, n_valid = brute_force(dist, qp, qc, gp, gc)
    if n_valid == 0:
        with pytest.raises(ValueError, match="no query"):
            evaluate_from_distances(dist, qp, qc, gp, gc, chunk_size=chunk)
        return
    ref_map, ref_cmc, _ = brute_force(dist, qp, qc, gp, gc)
    res = evaluate_from_distances(dist, qp, qc, gp, gc, chunk_size=chunk)
    assert res["mAP"] == pytest.approx(ref_map, abs=1e-12)
    assert res["cmc"] == pytest.approx(ref_cmc.tolist(), abs=1e-12)
    assert res["num_valid_queries"] == n_valid


def test_features_match_bruteforce_and_chunk_invariance():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 16))
    qp, gp = rng.integers(0, 20, 70), rng.integers(0, 20, 300)
    qf = centres[qp] + rng.normal(scale=1.0, size=(70, 16))
    gf = centres[gp] + rng.normal(scale=1.0, size=(300, 16))
    qc, gc = rng.integers(0, 3, 70), rng.integers(0, 3, 300)
    gp[::17] = -1
    qn = qf / np.linalg.norm(qf, axis=1, keepdims=True)
    gn = gf / np.linalg.norm(gf, axis=1, keepdims=True)
    ref_map, ref_cmc, n_valid = brute_force(1 - qn @ gn.T, qp, qc, gp, gc)
    results = [evaluate_retrieval(qf, qp, qc, gf, gp, gc, chunk_size=c) for c in (1, 7, 64, 1024)]
    for res in results:
        assert res["mAP"] == pytest.approx(ref_map, abs=1e-9)
        assert res["cmc"] == pytest.approx(ref_cmc.tolist(), abs=1e-9)
        assert res["num_valid_queries"] == n_valid
        assert res == results[0]
    eu = np.sqrt(((qf[:, None] - gf[None]) ** 2).sum(-1))
    ref_map, ref_cmc, _ = brute_force(eu, qp, qc, gp, gc)
    res = evaluate_retrieval(
        torch.from_numpy(qf), qp, qc, torch.from_numpy(gf), gp, gc, metric="euclidean", chunk_size=9
    )
    assert res["mAP"] == pytest.approx(ref_map, abs=1e-9)


def test_iterable_of_blocks():
    blocks = [torch.from_numpy(DIST[:2]), torch.from_numpy(DIST[2:])]
    assert evaluate_from_distances(iter(blocks), QP, QC, GP, GC) == evaluate_from_distances(
        DIST, QP, QC, GP, GC
    )
    with pytest.raises(ValueError, match="cover"):
        evaluate_from_distances(iter(blocks[:1]), QP, QC, GP, GC)


def test_input_validation():
    f = np.ones((3, 4), dtype=np.float32)
    ids = np.zeros(3, dtype=np.int64)
    bad = f.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluate_retrieval(bad, ids, ids, f, ids, ids + 1)
    with pytest.raises(ValueError, match="dims differ"):
        evaluate_retrieval(f, ids, ids, np.ones((3, 5)), ids, ids + 1)
    with pytest.raises(ValueError, match="3 entries"):
        evaluate_retrieval(f, ids[:2], ids, f, ids, ids + 1)
    with pytest.raises(ValueError, match="metric"):
        evaluate_retrieval(f, ids, ids, f, ids, ids + 1, metric="manhattan")
    with pytest.raises(ValueError, match="expected"):
        evaluate_from_distances(DIST[:, :4], QP, QC, GP, GC)
    with pytest.raises(ValueError, match="no query"):
        evaluate_retrieval(f, ids, ids, f, ids, ids)  # every match shares the query camera

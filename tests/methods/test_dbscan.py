"""Sparse DBSCAN against a brute-force reference and hand-worked cases."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from streamlabel.methods.dbscan import dbscan_knn, dbscan_pairs, dense_relabel


def reference_dbscan(dist: torch.Tensor, eps: float, min_samples: int) -> torch.Tensor:
    """Dense DBSCAN by breadth-first expansion; border points join their nearest core point."""
    n = dist.shape[0]
    near = dist <= eps
    core = near.sum(1) >= min_samples  # diagonal is 0, so the point counts itself
    labels = [-1] * n
    cluster = 0
    for seed in range(n):
        if not core[seed] or labels[seed] >= 0:
            continue
        stack = [seed]
        labels[seed] = cluster
        while stack:
            p = stack.pop()
            for q in torch.nonzero(near[p] & core).flatten().tolist():
                if labels[q] < 0:
                    labels[q] = cluster
                    stack.append(q)
        cluster += 1
    out = torch.tensor(labels)
    for p in range(n):
        if not core[p]:
            cand = torch.nonzero(near[p] & core).flatten()
            cand = cand[cand != p]
            if cand.numel():
                best = cand[torch.argmin(dist[p, cand])]
                out[p] = out[best]
    return dense_relabel(out)


def _pairs(dist: torch.Tensor):
    n = dist.shape[0]
    r, c = torch.triu_indices(n, n, 1)
    return r, c, dist[r, c]


def test_hand_worked_line():
    # points on a line at 0, 1, 2, 10, 11, 30 with eps 1.5, min_samples 2 (self included)
    x = torch.tensor([0.0, 1.0, 2.0, 10.0, 11.0, 30.0])
    dist = (x[:, None] - x[None, :]).abs()
    labels = dbscan_pairs(*_pairs(dist), 6, eps=1.5, min_samples=2)
    assert labels.tolist() == [0, 0, 0, 1, 1, -1]
    # min_samples 3: 1 is core (0, 1, 2), 0 and 2 are border, the pair 10/11 is noise
    labels = dbscan_pairs(*_pairs(dist), 6, eps=1.5, min_samples=3)
    assert labels.tolist() == [0, 0, 0, -1, -1, -1]


def test_border_joins_nearest_core():
    # cores at 0 (with 0.1) and at 3 (with 3.1); point 1.9 is within eps 1.2 of 3.1 only... and 1.0 of 3
    x = torch.tensor([0.0, 0.1, 1.0, 1.9, 3.0, 3.1])
    dist = (x[:, None] - x[None, :]).abs()
    labels = dbscan_pairs(*_pairs(dist), 6, eps=0.95, min_samples=3)
    assert labels.tolist() == reference_dbscan(dist, 0.95, 3).tolist()


def test_candidates_restrict():
    x = torch.tensor([0.0, 0.1, 0.2, 5.0, 5.1, 5.2])
    dist = (x[:, None] - x[None, :]).abs()
    cand = torch.tensor([True, True, True, False, True, True])
    labels = dbscan_pairs(*_pairs(dist), 6, eps=0.5, min_samples=2, candidates=cand)
    assert labels.tolist() == [0, 0, 0, -1, 1, 1]


def test_validation():
    r = torch.zeros(1, dtype=torch.long)
    import pytest

    with pytest.raises(ValueError, match="eps"):
        dbscan_pairs(r, r, torch.zeros(1), 2, eps=0.0, min_samples=2)
    with pytest.raises(ValueError, match="min_samples"):
        dbscan_pairs(r, r, torch.zeros(1), 2, eps=0.5, min_samples=0)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 40), eps=st.floats(0.2, 1.5), ms=st.integers(1, 5))
def test_equals_reference_on_random_points(seed, n, eps, ms):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=torch.float64) * 1.5
    dist = torch.cdist(x, x)
    expected = reference_dbscan(dist, eps, ms)
    assert dbscan_pairs(*_pairs(dist), n, eps=eps, min_samples=ms).tolist() == expected.tolist()
    # a full k-NN table (k = n - 1) is the same input
    d_sorted, idx = dist.fill_diagonal_(float("inf")).sort(1)
    got = dbscan_knn(idx[:, : n - 1], d_sorted[:, : n - 1], eps=eps, min_samples=ms)
    assert got.tolist() == expected.tolist()

"""Sparse k-reciprocal re-ranking against a dense reference written from the paper's equations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamlabel.banks.knn import faiss_available
from streamlabel.evaluation import evaluate_from_distances, evaluate_retrieval, reranking
from streamlabel.evaluation.reranking import (
    SparseJaccard,
    _pair_sqdist,
    expanded_k_reciprocal,
    iter_rerank,
    k_reciprocal_neighbors,
    knn_sqeuclidean,
    local_query_expansion,
    lookup_pair_sqdist,
    reciprocal_encoding,
    rerank,
    resolve_knn_backend,
    sparse_jaccard,
)

needs_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss not installed")


def dense_rerank(q, g, k1, k2, lam):
    """Zhong et al. 2017, dense N x N, one sample at a time."""
    x = np.concatenate([q, g])
    n, nq = len(x), len(q)
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    d = d / d.max(1, keepdims=True)  # each row over its maximum
    rank = np.argsort(d, axis=1, kind="stable")  # N(p, k) = rank[p, :k+1], p itself first

    def recip(p, k):  # Eq. 4: R(p, k) = {g in N(p, k) : p in N(g, k)}
        return {int(j) for j in rank[p, : k + 1] if p in rank[j, : k + 1]}

    kh = round(k1 / 2)
    v = np.zeros((n, n))
    for p in range(n):
        rp = recip(p, k1)
        star = set(rp)
        for other in rp:  # Eq. 6: add R(q, k/2) when more than 2/3 of it is inside R(p, k)
            rq = recip(other, kh)
            if 3 * len(rp & rq) > 2 * len(rq):
                star |= rq
        idx = sorted(star)
        w = np.exp(-d[p, idx])  # Eq. 9 (rows scaled to sum 1)
        v[p, idx] = w / w.sum()
    if k2 > 1:  # Eq. 10: local query expansion over the k2 nearest, p included
        v = np.stack([v[rank[p, :k2]].mean(0) for p in range(n)])
    vq, vg = v[:nq, None], v[None, nq:]
    jac = 1 - np.minimum(vq, vg).sum(-1) / np.maximum(vq, vg).sum(-1)  # Eq. 11
    return (1 - lam) * jac + lam * d[:nq, nq:]  # Eq. 12


def clustered(rng, n_ids, n, dim, noise):
    centres = rng.normal(size=(n_ids, dim))
    pids = rng.integers(0, n_ids, n)
    return centres[pids] + rng.normal(scale=noise, size=(n, dim)), pids


@pytest.mark.parametrize(("k1", "k2", "lam"), [(20, 6, 0.3), (5, 3, 0.3), (7, 1, 0.0), (4, 6, 1.0)])
def test_matches_dense_reference(k1, k2, lam):
    rng = np.random.default_rng(k1 * 10 + k2)
    x, _ = clustered(rng, 10, 90, 8, 0.7)
    q, g = x[:25], x[25:]
    ref = dense_rerank(q, g, k1, k2, lam)
    out = rerank(
        torch.from_numpy(q), torch.from_numpy(g), k1=k1, k2=k2, lambda_value=lam, chunk_size=7, block_size=13
    )
    assert out.dtype == torch.float64 and out.shape == (25, 65)
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-10)
    out32 = rerank(q.astype(np.float32), g.astype(np.float32), k1=k1, k2=k2, lambda_value=lam)
    np.testing.assert_allclose(out32.numpy(), ref, atol=1e-5)


def test_rerank_improves_map_on_clustered_toy():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(40, 32))
    gp = np.repeat(np.arange(40), 8)  # 8 gallery shots per identity
    qp = np.arange(40)
    gf = centres[gp] + rng.normal(scale=0.9, size=(len(gp), 32))
    qf = centres[qp] + rng.normal(scale=0.9, size=(40, 32))
    qc, gc = np.zeros(40, dtype=np.int64), np.ones(len(gp), dtype=np.int64)
    qf = qf / np.linalg.norm(qf, axis=1, keepdims=True)
    gf = gf / np.linalg.norm(gf, axis=1, keepdims=True)
    base = evaluate_retrieval(qf, qp, qc, gf, gp, gc)
    rr = evaluate_from_distances(iter_rerank(qf, gf, chunk_size=16), qp, qc, gp, gc)
    assert rr["mAP"] > base["mAP"] + 0.05
    assert rr["rank1"] >= base["rank1"]


def test_knn_and_reciprocal_sets_by_hand():
    # Points on a line: 0, 1, 3, 7. Squared distances from 0: 0, 1, 9, 49.
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    dist, idx, row_max = knn_sqeuclidean(x, 3, block_size=2)
    assert idx.tolist() == [[0, 1, 2], [1, 0, 2], [2, 1, 0], [3, 2, 1]]
    assert dist[0].tolist() == [0.0, 1.0, 9.0]
    assert row_max.tolist() == [49.0, 36.0, 16.0, 49.0]
    # k = 1: N(p, 1) = {p, nearest}. 0<->1 mutual; 2's nearest is 1 but 1's is 0;
    # 3's nearest is 2, whose nearest is 1 (not mutual).
    r = k_reciprocal_neighbors(idx, 1)
    assert r.tolist() == [[0, 1], [1, 0], [2, -1], [3, -1]]
    # k = 2: N(2, 2) = {2, 1, 0}; N(1, 2) = {1, 0, 2} and N(0, 2) = {0, 1, 2} both hold 2.
    assert k_reciprocal_neighbors(idx, 2)[2].tolist() == [2, 1, 0]


@needs_faiss
def test_faiss_knn_equals_torch():
    """Same lists (order: distance, then index), distances and row maxima on both backends."""
    rng = np.random.default_rng(3)
    x = torch.from_numpy(clustered(rng, 6, 90, 8, 0.5)[0]).float()
    for k in (1, 7, 90, 200):
        dt, it, mt = knn_sqeuclidean(x, k, block_size=16, backend="torch")
        df, i_f, mf = knn_sqeuclidean(x, k, backend="faiss")
        assert torch.equal(it, i_f)
        torch.testing.assert_close(df, dt, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(mf, mt, atol=1e-5, rtol=1e-5)
    assert bool((i_f[:, 0] == torch.arange(90)).all()) and bool((df[:, 0] == 0).all())
    assert knn_sqeuclidean(x, 7, backend="faiss", with_row_max=False)[2] is None
    # exact duplicates: faiss alone may drop self from a list of twins; self is put back at distance 0
    twins = torch.cat([x[:1].repeat(6, 1), x[1:30]])
    df, i_f, _ = knn_sqeuclidean(twins, 3, backend="faiss")
    assert bool((i_f == torch.arange(35)[:, None]).any(1).all())
    assert bool((df[:6] == 0).all()) and bool((i_f[:6] < 6).all())


def test_knn_backend_choice(monkeypatch):
    assert resolve_knn_backend("torch", torch.device("cpu")) == "torch"
    assert resolve_knn_backend("auto", torch.device("meta")) == "torch"  # faiss is CPU only
    with pytest.raises(ValueError, match="unknown k-NN backend"):
        resolve_knn_backend("annoy", torch.device("cpu"))
    monkeypatch.setattr(reranking, "faiss_available", lambda: False)
    assert resolve_knn_backend("auto", torch.device("cpu")) == "torch"  # the torch path always works
    with pytest.raises(ImportError, match="faiss"):
        resolve_knn_backend("faiss", torch.device("cpu"))
    x = torch.randn(20, 3)
    assert torch.equal(knn_sqeuclidean(x, 4, backend="auto")[1], knn_sqeuclidean(x, 4)[1])


def test_pair_distances_from_knn_lists():
    """Listed pairs are read from the table, the others computed from the features: same values."""
    rng = np.random.default_rng(4)
    x = torch.from_numpy(clustered(rng, 4, 50, 6, 0.5)[0]).float()
    dist, idx, _ = knn_sqeuclidean(x, 6)
    rows = torch.tensor([0, 0, 3, 7, 7, 49, 12])
    cols = torch.tensor([0, int(idx[0, 3]), 40, 7, 2, int(idx[49, 5]), 33])
    got = lookup_pair_sqdist(x, rows, cols, dist, idx)
    torch.testing.assert_close(got, _pair_sqdist(x, rows, cols), atol=1e-5, rtol=1e-5)
    assert got[0] == 0 and got[3] == 0
    assert got[1] == dist[0, 3] and got[5] == dist[49, 5]  # read, not recomputed


def test_expanded_set_contains_reciprocal_set():
    rng = np.random.default_rng(0)
    x, _ = clustered(rng, 6, 60, 4, 0.5)
    _, idx, _ = knn_sqeuclidean(torch.from_numpy(x), 11)
    rows, cols = expanded_k_reciprocal(idx, 10, block_size=7)
    keys = (rows * 60 + cols).tolist()
    assert keys == sorted(set(keys))  # sorted and duplicate-free
    r = k_reciprocal_neighbors(idx, 10)
    for p in range(60):
        assert {int(j) for j in r[p] if j >= 0} <= set(cols[rows == p].tolist())
        assert p in cols[rows == p].tolist()


def test_sparse_jaccard_pairs_match_dense():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(clustered(rng, 5, 40, 4, 0.6)[0])
    _, idx, row_max = knn_sqeuclidean(x, 9)
    rows, cols = expanded_k_reciprocal(idx, 8)
    v = local_query_expansion(reciprocal_encoding(x, rows, cols, row_max), idx[:, :3])
    dense_v = v.to_dense().numpy()
    np.testing.assert_allclose(dense_v.sum(1), 1.0)
    ref = 1 - np.minimum(dense_v[:, None], dense_v[None]).sum(-1) / np.maximum(
        dense_v[:, None], dense_v[None]
    ).sum(-1)
    p, g, d = sparse_jaccard(v)
    full = np.ones((40, 40))
    full[p.numpy(), g.numpy()] = d.numpy()
    np.testing.assert_allclose(full, ref, atol=1e-12)
    # dense blocks against a subset of targets agree with the triplets
    targets = torch.arange(10, 40)
    block = SparseJaccard(v, targets).dense(torch.tensor([3, 0, 39]))
    np.testing.assert_allclose(block.numpy(), ref[[3, 0, 39]][:, 10:], atol=1e-12)


def test_input_validation():
    with pytest.raises(ValueError, match="NaN"):
        rerank(np.array([[np.nan, 1.0]]), np.ones((3, 2)))
    with pytest.raises(ValueError, match="dims differ"):
        rerank(np.ones((2, 2)), np.ones((3, 3)))

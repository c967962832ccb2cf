"""SpCL policy (methods/spcl.py, methods/jaccard_pairs.py): reliability set arithmetic by hand, sparse
Jaccard = dense Jaccard, the encoding = a brute-force one from the definitions and = the former
feature-gather path (both k-NN backends), DBSCAN on the sparse pairs = DBSCAN on the dense matrix,
mixture recovery, state round trip and bad parameters."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from streamlabel.banks.knn import faiss_available
from streamlabel.evaluation import bcubed
from streamlabel.evaluation.reranking import (
    expanded_k_reciprocal,
    knn_sqeuclidean,
    local_query_expansion,
    reciprocal_encoding,
)
from streamlabel.methods import build_policy
from streamlabel.methods.dbscan import dbscan_pairs, dense_relabel
from streamlabel.methods.jaccard_pairs import close_pairs, jaccard_encoding, jaccard_pairs
from streamlabel.methods.spcl import independence_threshold, reliability_scores, reliable_labels

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: one thread is faster
BACKENDS = ["torch", pytest.param("faiss", marks=pytest.mark.skipif(not faiss_available(), reason="no faiss"))]


def _mixture(num_ids: int, per_id: int, dim: int, noise: float, seed: int = 0):
    """Unit-norm Gaussian clusters: (features [N, D], ids [N])."""
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(num_ids, dim, generator=g), dim=1)
    ids = torch.arange(num_ids).repeat_interleave(per_id)
    feats = F.normalize(centres[ids] + noise * torch.randn(ids.numel(), dim, generator=g), dim=1)
    return feats, ids


# ---------------------------------------------------------------- reliability by hand
LABELS = torch.tensor([0, 0, 0, 1, 1, -1])
LOOSE = torch.tensor([0, 0, 0, 0, 0, -1])  # cluster 1 joins cluster 0 when eps grows
TIGHT = torch.tensor([0, 0, -1, 1, 1, -1])  # sample 2 leaves cluster 0 when eps shrinks


def test_reliability_scores_by_hand():
    r_indep, r_comp = reliability_scores(LABELS, TIGHT, LOOSE)
    # R_indep: f in {0,1,2}: I = {0,1,2}, I_loose = {0..4}: |&| = 3, |u| = 5 -> 3/5
    #          f in {3,4}:   I = {3,4},   I_loose = {0..4}: 2/5
    #          f = 5 (outlier = singleton {5}), I_loose = {5}: 1/1
    torch.testing.assert_close(r_indep, torch.tensor([0.6, 0.6, 0.6, 0.4, 0.4, 1.0]))
    # R_comp: f in {0,1}: I = {0,1,2}, I_tight = {0,1}: 2/3;  f = 2: I_tight = {2}: 1/3
    #         f in {3,4}: {3,4} both: 1;  f = 5: {5} both: 1
    torch.testing.assert_close(r_comp, torch.tensor([2 / 3, 2 / 3, 1 / 3, 1.0, 1.0, 1.0]))


def test_reliable_labels_by_hand():
    r_indep, r_comp = reliability_scores(LABELS, TIGHT, LOOSE)
    # alpha 0.5: cluster 0 (max R_indep 0.6) passes, cluster 1 (0.4) fails -> 3, 4 become outliers;
    # beta per cluster = max R_comp of cluster 0 = 2/3: sample 2 (1/3) becomes an outlier
    out = reliable_labels(LABELS, r_indep, r_comp, alpha=0.5)
    assert out.tolist() == [0, 0, -1, -1, -1, -1]
    # alpha 0.3 lets both clusters pass; a global beta 0.3 keeps every member (all R_comp >= 1/3)
    out = reliable_labels(LABELS, r_indep, r_comp, alpha=0.3, beta=0.3)
    assert out.tolist() == LABELS.tolist()
    # global beta 0.5 drops sample 2 only
    assert reliable_labels(LABELS, r_indep, r_comp, alpha=0.3, beta=0.5).tolist() == [0, 0, -1, 1, 1, -1]


def test_independence_threshold_by_hand():
    r_indep, _ = reliability_scores(LABELS, TIGHT, LOOSE)
    # non-singleton clusters' scores, descending: [0.6 (cluster 0), 0.4 (cluster 1)], m = 2
    # share 0.9: position min(1, round(1.8) = 2) = 1 -> 0.4 (both pass)
    assert independence_threshold(LABELS, r_indep, 0.9) == pytest.approx(0.4)
    # share 0.2: position round(0.4) = 0 -> 0.6 (only cluster 0 passes)
    assert independence_threshold(LABELS, r_indep, 0.2) == pytest.approx(0.6)
    assert independence_threshold(torch.full((4,), -1), torch.ones(4), 0.9) is None
    with pytest.raises(ValueError, match="share"):
        independence_threshold(LABELS, r_indep, 0.0)


# ---------------------------------------------------------------- sparse Jaccard = dense Jaccard
def _dense_jaccard(v_dense: torch.Tensor) -> torch.Tensor:
    """1 - sum min / sum max between every two rows of a dense V."""
    smin = torch.minimum(v_dense[:, None, :], v_dense[None, :, :]).sum(-1)
    smax = torch.maximum(v_dense[:, None, :], v_dense[None, :, :]).sum(-1)
    return 1.0 - smin / smax


@pytest.mark.parametrize("budget", [1 << 23, 500])  # one block, and many small blocks
def test_sparse_jaccard_equals_dense(budget):
    x, _ = _mixture(8, 9, 6, noise=0.6, seed=1)
    v = jaccard_encoding(x, k1=8, k2=3)
    dense = _dense_jaccard(v.to_dense().double()).float()
    n = x.shape[0]
    r, c, d = close_pairs(v, max_distance=1.0, work_budget=budget)
    assert bool((r < c).all())
    got = torch.ones(n, n)
    got[r, c] = d
    got[c, r] = d
    got.fill_diagonal_(0.0)
    torch.testing.assert_close(got, dense.fill_diagonal_(0.0), atol=1e-5, rtol=0)
    assert bool((dense[r, c] < 1).all())  # only overlapping pairs are listed
    # a cut keeps exactly the pairs within it
    r6, c6, d6 = close_pairs(v, max_distance=0.6, work_budget=budget)
    upper = torch.triu(dense <= 0.6, diagonal=1)
    assert r6.numel() == int(upper.sum()) and bool(upper[r6, c6].all())


def _brute_force_encoding(x: torch.Tensor, k1: int, k2: int) -> torch.Tensor:
    """Dense V after query expansion, one sample and one set at a time from the definitions (float64)."""
    n = x.shape[0]
    d = torch.cdist(x.double(), x.double()).pow(2)
    rank = torch.argsort(d, dim=1, stable=True).tolist()  # N(p, k) = rank[p][:k + 1], p first

    def recip(p: int, k: int) -> set[int]:
        return {g for g in rank[p][: k + 1] if p in rank[g][: k + 1]}

    v = torch.zeros(n, n, dtype=torch.float64)
    for p in range(n):
        r_star = set(recip(p, k1))
        for q in recip(p, k1):
            half = recip(q, round(k1 / 2))
            if len(half & recip(p, k1)) > 2 / 3 * len(half):
                r_star |= half
        members = sorted(r_star)
        v[p, members] = torch.softmax(-d[p, members], 0)
    return torch.stack([v[rank[p][:k2]].mean(0) for p in range(n)])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("lookup_k", [None, 9])  # 9 = k1 + 1: many R* distances are not listed
def test_encoding_equals_brute_force(backend, lookup_k):
    """V (R*, weights, query expansion) and the close pairs equal a set-by-set dense computation."""
    x, _ = _mixture(5, 8, 6, noise=0.5, seed=5)
    v = jaccard_encoding(x, k1=8, k2=3, knn_backend=backend, lookup_k=lookup_k)
    expected = _brute_force_encoding(x, 8, 3)
    torch.testing.assert_close(v.to_dense().double(), expected, atol=1e-6, rtol=1e-5)
    dense = _dense_jaccard(expected)
    r, c, d = jaccard_pairs(x, k1=8, k2=3, max_distance=0.62, knn_backend=backend)
    upper = torch.triu(dense <= 0.62, diagonal=1)
    assert r.numel() == int(upper.sum()) and bool(upper[r, c].all())
    torch.testing.assert_close(d.double(), dense[r, c], atol=1e-6, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("lookup_k", [None, 31])
def test_encoding_equals_feature_gather_path(backend, lookup_k):
    """The k-NN lookups give the former encoding (k-NN of k1 + 1, R* distances from feature rows)."""
    x, _ = _mixture(30, 10, 16, noise=0.6, seed=6)
    n = x.shape[0]
    _, idx, _ = knn_sqeuclidean(x, 31, backend="torch")
    rows, cols = expanded_k_reciprocal(idx, 30)
    old = local_query_expansion(reciprocal_encoding(x, rows, cols, torch.ones(n)), idx[:, :6])
    new = jaccard_encoding(x, k1=30, k2=6, knn_backend=backend, lookup_k=lookup_k)
    assert torch.equal(new.crow, old.crow) and torch.equal(new.col, old.col)
    torch.testing.assert_close(new.val, old.val, atol=1e-7, rtol=1e-5)
    r0, c0, d0 = close_pairs(old, max_distance=0.62)
    r1, c1, d1 = close_pairs(new, max_distance=0.62)
    assert r0.numel() > n and torch.equal(r0, r1) and torch.equal(c0, c1)
    torch.testing.assert_close(d1, d0, atol=1e-6, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("row_max_scaling", [False, True])
def test_encoding_weights_are_spcl_softmax(row_max_scaling, backend):
    """Without query expansion (k2 = 1), V_p on R*(p) is softmax(-||x_p - x_g||^2) (SpCL), or of the
    distance over the row's largest one (the re-ranking paper)."""
    x, _ = _mixture(4, 6, 5, noise=0.5, seed=2)
    v = jaccard_encoding(x, k1=5, k2=1, row_max_scaling=row_max_scaling, knn_backend=backend).to_dense()
    dist = torch.cdist(x, x).pow(2)
    if row_max_scaling:
        dist = dist / dist.amax(1, keepdim=True)
    support = v > 0
    expected = torch.where(support, torch.exp(-dist), torch.zeros_like(dist))
    expected = expected / expected.sum(1, keepdim=True)
    torch.testing.assert_close(v, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(v.sum(1), torch.ones(x.shape[0]))


def test_dbscan_on_sparse_pairs_equals_dense():
    x, _ = _mixture(10, 8, 8, noise=0.15, seed=3)
    n = x.shape[0]
    dense = _dense_jaccard(jaccard_encoding(x, k1=10, k2=4).to_dense().double()).float()
    iu = torch.triu_indices(n, n, offset=1)
    for eps in (0.4, 0.6, 0.8):
        r, c, d = jaccard_pairs(x, k1=10, k2=4, max_distance=eps)
        sparse = dbscan_pairs(r, c, d, n, eps=eps, min_samples=4)
        reference = dbscan_pairs(iu[0], iu[1], dense[iu[0], iu[1]], n, eps=eps, min_samples=4)
        assert torch.equal(sparse, reference)
        assert int(sparse.max()) >= 1  # non-trivial: at least two clusters


# ---------------------------------------------------------------- the policy
def test_policy_recovers_mixture_and_round_trips():
    x, ids = _mixture(12, 10, 16, noise=0.05, seed=4)
    n, d = x.shape
    policy = build_policy("spcl", num_samples=n, feat_dim=d, k1=8, k2=3)
    policy.initialize(x, cameras=torch.arange(n) % 2)
    labels = policy.labels()
    p, r, f = bcubed(labels.numpy(), ids.numpy())
    assert f > 0.95 and policy.alpha == pytest.approx(1.0)  # separated clusters: nothing joins when loosened
    assert int(labels.max()) + 1 == 12
    other = build_policy("spcl", num_samples=n, feat_dim=d, k1=8, k2=3)
    other.load_state_dict(policy.state_dict())
    assert torch.equal(other.labels(), labels) and other.alpha == policy.alpha
    other.refresh()
    assert torch.equal(other.labels(), labels)
    with pytest.raises(ValueError, match="different configuration"):
        build_policy("spcl", num_samples=n, feat_dim=d, k1=8, k2=3, eps=0.5).load_state_dict(policy.state_dict())


def test_policy_is_dbscan_then_reliability_filter():
    """The refresh = three DBSCANs on one pair list (eps, eps -+ gap) + reliable_labels with the
    first-round alpha; on overlapping clusters the filter turns some clustered samples into outliers."""
    x, _ = _mixture(15, 8, 12, noise=0.3, seed=0)
    n, d = x.shape
    policy = build_policy("spcl", num_samples=n, feat_dim=d, k1=8, k2=3)
    policy.initialize(x)
    r, c, dist = jaccard_pairs(x, k1=8, k2=3, max_distance=0.62)
    labels, tight, loose = (dbscan_pairs(r, c, dist, n, eps=e, min_samples=4) for e in (0.6, 0.58, 0.62))
    r_indep, r_comp = reliability_scores(labels, tight, loose)
    alpha = independence_threshold(labels, r_indep, 0.9)
    expected = dense_relabel(reliable_labels(labels, r_indep, r_comp, alpha=alpha))
    assert policy.alpha == alpha and torch.equal(policy.labels(), expected)
    assert policy.stats["clusters_dbscan"] == int(labels.max()) + 1
    assert policy.stats["kept_share"] == pytest.approx(float((expected >= 0).float().mean()))
    assert int((expected < 0).sum()) > int((labels < 0).sum())  # the filter did something
    plain = build_policy("spcl", num_samples=n, feat_dim=d, k1=8, k2=3, self_paced=False)
    plain.initialize(x)
    assert torch.equal(plain.labels(), labels)


def test_bad_parameters():
    with pytest.raises(ValueError, match="eps_gap"):
        build_policy("spcl", num_samples=50, feat_dim=4, eps=0.99, eps_gap=0.02)
    with pytest.raises(ValueError, match="indep_threshold"):
        build_policy("spcl", num_samples=50, feat_dim=4, indep_threshold=1.5)
    with pytest.raises(ValueError, match="reliability_percentile"):
        build_policy("spcl", num_samples=50, feat_dim=4, reliability_percentile=0.0)
    with pytest.raises(ValueError, match="k1"):
        build_policy("spcl", num_samples=20, feat_dim=4)  # k1 = 30 neighbours of 20 samples
    with pytest.raises(ValueError, match="knn_backend"):
        build_policy("spcl", num_samples=50, feat_dim=4, knn_backend="annoy")

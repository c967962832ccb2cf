"""NPLP policy (methods/nplp.py, methods/silhouette.py): the Eq. 4 eps rule and its exactness condition by
hand and against brute force, the silhouette (Eq. 6-8) by hand on 1-D points, the correcting stage,
stage switching by rounds, state round trip, bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from streamlabel.methods import build_policy
from streamlabel.methods.nplp import _knn_euclidean, cross_camera_eps
from streamlabel.methods.silhouette import cluster_silhouette

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: one thread is faster


def _on_circle(angles):
    a = torch.tensor(angles, dtype=torch.float32)
    return torch.stack([a.cos(), a.sin()], dim=1)  # unit vectors: |x_i - x_j| = 2 sin(|a_i - a_j| / 2)


def chord(angle):
    return 2 * math.sin(angle / 2)


def test_eps_rule_by_hand():
    # angles 0, 0.1 (camera 0) and 0.35, 0.75 (camera 1)
    # cross-camera pairs (angle): (0,2) .35, (0,3) .75, (1,2) .25, (1,3) .65 -> 4 = (4^2 - 2^2 - 2^2) / 2
    x, cams = _on_circle([0.0, 0.1, 0.35, 0.75]), torch.tensor([0, 0, 1, 1])
    # alpha 0.25 -> m = 1: eps = chord(.25)
    #   k=1: lists 0->1, 1->0, 2->1, 3->2; listed cross pairs {(1,2)}: T = chord(.25);
    #        k-th distances chord(.1, .1, .25, .4): second smallest chord(.1) <= T -> not proven: scan d <= T
    eps, k, _, _, scanned = cross_camera_eps(x, cams, alpha=0.25, k=1)
    assert (k, scanned) == (1, True) and eps == pytest.approx(chord(0.25), abs=1e-6)
    #   k=2: T = chord(.25); k-th distances chord(.35, .25, .35, .65): second smallest chord(.35) > T -> exact
    eps, k, _, _, scanned = cross_camera_eps(x, cams, alpha=0.25, k=2)
    assert (k, scanned) == (2, False) and eps == pytest.approx(chord(0.25), abs=1e-6)
    # alpha 0.5 -> m = 2: mean of chord(.25) and chord(.35)
    #   k=1 lists one cross pair < m -> k = 2: T = chord(.35) is not < chord(.35) -> scan
    eps, k, _, _, scanned = cross_camera_eps(x, cams, alpha=0.5, k=1)
    assert (k, scanned) == (2, True) and eps == pytest.approx((chord(0.25) + chord(0.35)) / 2, abs=1e-6)


def test_eps_rule_matches_brute_force():
    g = torch.Generator().manual_seed(3)
    x = F.normalize(torch.randn(60, 8, generator=g), dim=1)
    x[:20] = F.normalize(x[:20] + 2 * x[0], dim=1)  # one dense region: forces k to grow
    cams = torch.randint(0, 3, (60,), generator=g)
    d = torch.cdist(x.double(), x.double())
    cross = (cams[:, None] != cams[None, :]) & torch.triu(torch.ones(60, 60, dtype=torch.bool), 1)
    pairs = d[cross].sort().values
    paths = set()
    for alpha in (0.001, 0.01, 0.05, 0.3):
        for k in (2, 8, 30):
            m = max(1, round(alpha * pairs.numel()))
            eps, k_used, _, _, scanned = cross_camera_eps(x, cams, alpha=alpha, k=k)
            assert eps == pytest.approx(float(pairs[:m].mean()), abs=1e-5)
            assert k <= k_used <= 59
            paths.add(scanned)
    assert paths == {True, False}  # both the proven-from-lists and the scan path were checked


def test_silhouette_by_hand_on_1d_points():
    # x = 0, 1 | 4, 5, 7 | 20, 21 | 100 (outlier)
    x = torch.tensor([[0.0], [1.0], [4.0], [5.0], [7.0], [20.0], [21.0], [100.0]])
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, -1])
    # Eq. 7 (b = mean distance to all clustered non-members):
    #   x=0: a = 1, b = (4+5+7+20+21)/5 = 11.4 -> s = 10.4/11.4;  x=1: a = 1, b = (3+4+6+19+20)/5 = 10.4 -> 9.4/10.4
    s_all = cluster_silhouette(x, labels, b="all", block_size=3)
    assert float(s_all[0]) == pytest.approx((10.4 / 11.4 + 9.4 / 10.4) / 2, abs=1e-6)
    # nearest other cluster: x=0: b = (4+5+7)/3 = 16/3 -> 13/16; x=1: b = 13/3 -> 10/13
    # cluster 2: x=20: a = 1, b = (16+15+13)/3 = 44/3 -> 41/44; x=21: b = 47/3 -> 44/47
    s_near = cluster_silhouette(x, labels, b="nearest", block_size=3)
    assert float(s_near[0]) == pytest.approx((13 / 16 + 10 / 13) / 2, abs=1e-6)
    assert float(s_near[2]) == pytest.approx((41 / 44 + 44 / 47) / 2, abs=1e-6)
    # cluster 1 = {4, 5, 7}: x=4: a = (1+3)/2 = 2, b_all = (4+3+16+17)/4 = 10 -> 8/10;
    #   x=5: a = 1.5, b_all = (5+4+15+16)/4 = 10 -> 8.5/10; x=7: a = 2.5, b_all = (7+6+13+14)/4 = 10 -> 7.5/10
    assert float(s_all[1]) == pytest.approx((0.8 + 0.85 + 0.75) / 3, abs=1e-6)
    # one cluster only or singletons: s = 0
    assert cluster_silhouette(x[:3], torch.tensor([0, 0, 0])).tolist() == [0.0]
    assert cluster_silhouette(x[:2], torch.tensor([0, 1])).tolist() == [0.0, 0.0]


def _identities(num_ids: int, per_cam: int, spread: float, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(num_ids, 32, generator=g), dim=1)
    ids = torch.arange(num_ids).repeat_interleave(2 * per_cam)
    cams = torch.arange(2).repeat_interleave(per_cam).repeat(num_ids)
    x = F.normalize(centres[ids] + spread * torch.randn(ids.numel(), 32, generator=g), dim=1)
    return x, cams, ids, g


def test_correcting_stage_splits_the_worst_cluster():
    x, cams, ids, g = _identities(11, 3, 0.02)
    # identity 10 is moved next to identity 0: a "mixed" startup cluster {0, 10}
    x[ids == 10] = F.normalize(x[ids == 0] + 0.6 * F.normalize(torch.randn(32, generator=g), dim=0), dim=1)
    labels = torch.where(ids == 10, torch.zeros_like(ids), ids)  # 10 clusters, cluster 0 mixed
    policy = build_policy("nplp", num_samples=x.shape[0], feat_dim=32, k=10, worst_share=0.1, beta=0.5)
    idx, dist = _knn_euclidean(x, 10)
    policy.eps_e = 0.5  # eps_c = 0.25: inside an identity (spread 0.02 -> distances ~0.16), not across (~0.5)
    out = policy._correct(x, labels, 10, idx, dist)
    assert policy._round_stats["worst_clusters"] == 1  # ceil(0.1 * 10)
    for i in range(1, 10):
        assert torch.equal(out[ids == i], labels[ids == i])  # good clusters untouched
    a, b = out[ids == 0], out[ids == 10]
    assert bool((a == a[0]).all()) and bool((b == b[0]).all()) and int(a[0]) != int(b[0])
    assert int(a[0]) >= 10 and int(b[0]) >= 10  # new ids after the kept clusters


def test_stages_by_round_and_state_round_trip():
    x, cams, ids, _ = _identities(6, 4, 0.05)
    params = {"k": 8, "startup_rounds": 1, "alpha": 0.16}
    policy = build_policy("nplp", num_samples=x.shape[0], feat_dim=32, **params)
    policy.initialize(x, cameras=cams)
    assert policy.stats["stage"] == 0.0 and "worst_clusters" not in policy.stats
    # eps_e = mean of the smallest 16 % of cross-camera distances: nearly all 96 same-identity ones of 576
    d = torch.cdist(x, x)
    cross = (cams[:, None] != cams[None, :]) & torch.triu(torch.ones_like(d, dtype=torch.bool), 1)
    m = round(0.16 * int(cross.sum()))
    assert policy.eps_e == pytest.approx(float(d[cross].sort().values[:m].mean()), abs=1e-5)
    labels = policy.labels()
    kept = labels >= 0
    assert labels.max() == 5 and torch.equal(labels[kept], ids[kept]) and int((~kept).sum()) <= 2  # 6 identities
    assert policy.epoch_end(0)
    assert policy.stats["stage"] == 1.0 and policy.stats["worst_clusters"] == 1
    state = policy.state_dict()
    other = build_policy("nplp", num_samples=x.shape[0], feat_dim=32, **params)
    other.load_state_dict(state)
    assert other.k_eps == policy.k_eps and other.eps_e == policy.eps_e and other.rounds == 2
    other.refresh(), policy.refresh()
    assert torch.equal(other.labels(), policy.labels())
    with pytest.raises(ValueError, match="different configuration"):
        build_policy("nplp", num_samples=x.shape[0], feat_dim=32, k=8, startup_rounds=2).load_state_dict(state)


def test_errors():
    for bad in ({"alpha": 0.0}, {"beta": 1.5}, {"worst_share": 2.0}, {"silhouette": "mean"}, {"k": 0}):
        with pytest.raises(ValueError):
            build_policy("nplp", num_samples=8, feat_dim=4, **bad)
    with pytest.raises(ValueError, match="b must be"):
        cluster_silhouette(torch.zeros(2, 1), torch.tensor([0, 1]), b="max")
    x, _, _, _ = _identities(2, 2, 0.05)
    policy = build_policy("nplp", num_samples=8, feat_dim=32, k=4)
    with pytest.raises(ValueError, match="cameras"):
        policy.initialize(x)  # one camera: no cross-camera pairs

"""DCML policy: credibility scores (Eq. 4-5), progressive share (Eq. 6), selection, refresh, state."""

from __future__ import annotations

import math

import pytest
import torch

from streamlabel.methods import build_policy
from streamlabel.methods.credibility import (
    credible_share,
    keep_most_credible,
    knn_credibility,
    prototype_credibility,
)
from streamlabel.methods.dbscan import drop_small_clusters
from streamlabel.methods.dcml import DCMLPolicy, smallest_share_mean

# four points on a line: 0, 1, 3, 7
LINE = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [7.0, 0.0]])


def test_knn_credibility_by_hand() -> None:
    # distances: p0 -> 1, 3, 7; p1 -> 1, 2, 6; p2 -> 3, 2, 4; p3 -> 7, 6, 4
    # k = 2: farthest of the 2 nearest: p0 max(1, 3) = 3; p1 max(1, 2) = 2; p2 max(2, 3) = 3; p3 max(4, 6) = 6
    torch.testing.assert_close(knn_credibility(LINE, 2), torch.tensor([-3.0, -2.0, -3.0, -6.0]))
    # k = 1: the nearest other point: 1, 1, 2, 4
    torch.testing.assert_close(knn_credibility(LINE, 1), torch.tensor([-1.0, -1.0, -2.0, -4.0]))
    # k larger than N - 1 uses every other point: the farthest one (7, 6, 4, 7)
    torch.testing.assert_close(knn_credibility(LINE, 10), torch.tensor([-7.0, -6.0, -4.0, -7.0]))
    assert knn_credibility(LINE[:1], 3).tolist() == [0.0]


def test_prototype_credibility_by_hand() -> None:
    # cluster 0 = {0, 1}: prototype (0.5, 0) -> distances 0.5, 0.5; cluster 1 = {3}: prototype (3, 0) -> 0
    # sample 3 is an outlier: never credible (-inf)
    scores = prototype_credibility(LINE, torch.tensor([0, 0, 1, -1]))
    assert scores[:3].tolist() == [-0.5, -0.5, 0.0] and scores[3] == -math.inf
    # 2-D: cluster {(0,0), (2,0), (1,3)} has prototype (1, 1): distances sqrt(2), sqrt(2), 2
    tri = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 3.0]])
    torch.testing.assert_close(prototype_credibility(tri, torch.zeros(3, dtype=torch.long)),
                               -torch.tensor([math.sqrt(2), math.sqrt(2), 2.0]))
    assert prototype_credibility(LINE, torch.full((4,), -1)).eq(-math.inf).all()


def test_progressive_share_by_hand() -> None:
    assert credible_share(0) == 0.75  # 0.75 + 0 * 0.05
    assert credible_share(1) == pytest.approx(0.80)  # 0.75 + 1 * 0.05
    assert credible_share(6) == 1.0  # 0.75 + 6 * 0.05 = 1.05, capped at 1
    assert credible_share(2, gamma0=0.5, dgamma=0.1) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="round_index"):
        credible_share(-1)


def test_keep_most_credible_global_and_per_cluster() -> None:
    labels = torch.tensor([0, 0, 0, 1, 1, 1, -1, -1])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.3, 0.2, 0.1, 5.0, 5.0])  # outliers score high but are never kept
    # global, share 0.5 of N = 8 -> 4 slots: best members 0.9, 0.8, 0.7, 0.3
    assert keep_most_credible(scores, labels, 0.5).nonzero().flatten().tolist() == [0, 1, 2, 3]
    # per cluster, ceil(0.5 * 3) = 2 each: {0, 1} and {3, 4}
    kept = keep_most_credible(scores, labels, 0.5, scope="cluster")
    assert kept.nonzero().flatten().tolist() == [0, 1, 3, 4]
    # share 0.75 of 8 = 6 slots: every member fits; share 1 keeps all members, never the outliers
    assert keep_most_credible(scores, labels, 0.75).tolist() == [True] * 6 + [False] * 2
    assert keep_most_credible(scores, labels, 1.0, scope="cluster").tolist() == [True] * 6 + [False] * 2
    # gamma = 0.75 + 0.05 = 0.8 of N = 10 is exactly 8 slots (not 9 from float noise)
    many = torch.arange(10, dtype=torch.float)
    assert int(keep_most_credible(many, torch.zeros(10, dtype=torch.long), credible_share(1)).sum()) == 8
    # ties go to the smaller index; unsorted, non-dense labels per cluster
    tied = keep_most_credible(torch.zeros(4), torch.tensor([7, 2, 7, 2]), 0.5, scope="cluster")
    assert tied.tolist() == [True, True, False, False]
    assert not keep_most_credible(scores, torch.full((8,), -1), 1.0).any()
    with pytest.raises(ValueError, match="scope"):
        keep_most_credible(scores, labels, 0.5, scope="camera")


def test_eps_rule_and_small_clusters_by_hand() -> None:
    # N = 4 -> 6 pairs; 3 listed (0.1, 0.2, 0.5), the other 3 are at distance 1
    d = torch.tensor([0.5, 0.1, 0.2])
    assert smallest_share_mean(d, 4, 0.5) == pytest.approx((0.1 + 0.2 + 0.5) / 3)  # 3 smallest of 6
    assert smallest_share_mean(d, 4, 1 / 6) == pytest.approx(0.1)  # the single smallest
    assert smallest_share_mean(d, 4, 1.0) == pytest.approx((0.8 + 3 * 1.0) / 6)  # unlisted count as 1
    labels = torch.tensor([0, 0, 0, 1, 1, 2, -1])
    assert drop_small_clusters(labels, 3).tolist() == [0, 0, 0, -1, -1, -1, -1]
    assert drop_small_clusters(labels, 2).tolist() == [0, 0, 0, 1, 1, -1, -1]


def _blobs(seed: int = 0) -> torch.Tensor:
    """Four tight blobs of 8 unit vectors in 16-D plus 4 scattered points (36 rows)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(4, 16, generator=g), dim=1)
    spread = torch.rand(4, 8, 1, generator=g) * 0.3  # samples at different distances from their centre
    blobs = centres[:, None, :] + spread * torch.randn(4, 8, 16, generator=g) / 4
    noise = torch.randn(4, 16, generator=g)
    return torch.nn.functional.normalize(torch.cat([blobs.reshape(32, 16), noise]), dim=1)


@pytest.mark.parametrize("credibility", ["knn", "prototype"])
def test_policy_keeps_the_progressive_share(credibility: str) -> None:
    x = _blobs()
    policy = build_policy("dcml", num_samples=36, feat_dim=16, k1=6, k2=2, eps=0.6, k=3,
                          credibility=credibility)
    policy.initialize(x)
    labels = policy.labels()
    clustered = policy.stats["clustered_frac"] * 36
    # round 0: at most ceil(0.75 * 36) = 27 credible samples, fewer only when clustering left fewer
    assert int((labels >= 0).sum()) == min(27, int(clustered))
    assert policy.stats["share"] == 0.75 and policy.rounds == 1
    # every kept cluster has a positive for each member; kept samples are the most credible clustered ones
    sizes = torch.bincount(labels[labels >= 0])
    assert bool((sizes >= 2).all())
    policy.epoch_end(0)  # refresh_every = 1: round 1 keeps ceil(0.8 * 36) = 29
    assert policy.stats["share"] == pytest.approx(0.8)
    assert int((policy.labels() >= 0).sum()) == min(29, int(policy.stats["clustered_frac"] * 36))


def test_mining_keeps_the_densest_clustered_samples() -> None:
    x = _blobs()
    labels = torch.arange(4).repeat_interleave(8)
    labels = torch.cat([labels, torch.full((4,), -1)])  # the 4 scattered points are outliers
    policy = DCMLPolicy(36, 16, k=3, gamma0=0.5)
    mined = policy.mine(x, labels)  # round 0: ceil(0.5 * 36) = 18 slots for the 32 clustered samples
    scores = knn_credibility(x, 3)[:32]
    best = torch.argsort(scores, descending=True, stable=True)[:18]
    expected = torch.zeros(36, dtype=torch.bool)
    expected[best] = True
    expected &= drop_small_clusters(torch.where(expected, labels, -1), 2) >= 0  # a lone survivor has no positive
    assert torch.equal(mined >= 0, expected)
    assert policy.mining["credible_frac"] == pytest.approx(int(expected.sum()) / 36)


def test_data_driven_eps_is_fixed_and_state_round_trips() -> None:
    x = _blobs()
    policy = DCMLPolicy(36, 16, k1=6, k2=2, k=3, rho=0.05)
    policy.initialize(x)
    eps = policy.eps_used
    assert eps is not None and 0 < eps < 1 and policy.stats["eps"] == eps
    policy.step(torch.arange(4), _blobs(1)[:4])
    policy.epoch_end(0)
    assert policy.eps_used == eps  # computed once, at the first refresh
    other = DCMLPolicy(36, 16, k1=6, k2=2, k=3, rho=0.05)
    other.load_state_dict(policy.state_dict())
    assert other.eps_used == eps and other.rounds == 2 and torch.equal(other.labels(), policy.labels())
    other.epoch_end(0)
    policy.epoch_end(0)
    assert torch.equal(other.labels(), policy.labels())
    with pytest.raises(ValueError, match="different configuration"):
        DCMLPolicy(36, 16, k1=6, k2=2, k=3, rho=0.05, credibility="prototype").load_state_dict(policy.state_dict())


def test_parameter_errors() -> None:
    with pytest.raises(ValueError, match="credibility"):
        DCMLPolicy(10, 4, credibility="density")
    with pytest.raises(ValueError, match="scope"):
        DCMLPolicy(10, 4, scope="camera")
    with pytest.raises(ValueError, match="gamma0"):
        DCMLPolicy(10, 4, gamma0=1.5)
    with pytest.raises(ValueError, match="eps"):
        DCMLPolicy(10, 4, eps=-0.1)
    with pytest.raises(ValueError, match="rho"):
        DCMLPolicy(10, 4, rho=0.0)
    with pytest.raises(KeyError, match="gamma0"):
        build_policy("dcml", num_samples=10, feat_dim=4, gama0=0.5)

"""INCLR policy (methods/inclr.py): the LGMR consistency rule by hand, part clusterings splitting a merged
global cluster, part bank momentum, global-only fallback, state round trip and bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from streamlabel.methods import build_policy
from streamlabel.methods.dbscan import dbscan_pairs
from streamlabel.methods.inclr import part_consistency, refine_with_parts
from streamlabel.methods.jaccard_pairs import jaccard_pairs

SMALL = {"k1": 8, "k2": 2, "eps": 0.6, "part_eps": 0.6, "min_samples": 3, "min_consistency": 0.5}


pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: one thread is faster


def test_consistency_by_hand() -> None:
    g = torch.tensor([0, 0, 0, 0, 1, 1, -1])
    parts = torch.tensor([
        [5, 5, 5, 6, 7, 7, 5],    # part 1: sample 6 is a global outlier, must not count in (0, 5)
        [5, 5, -1, 5, 7, 8, 5],   # part 2: sample 2 is a part outlier (shares with nobody)
    ])
    s = part_consistency(g, parts)
    # global cluster 0 has 4 members:
    #   i=0: part1 {0,1,2} -> 3/4, part2 {0,1,3} -> 3/4; mean 0.75 (same for i=1)
    #   i=2: part1 3/4, part2 outlier 1/4; mean 0.5
    #   i=3: part1 {3} 1/4, part2 {0,1,3} 3/4; mean 0.5
    # global cluster 1 (2 members): i=4: part1 2/2, part2 1/2 -> 0.75; i=5 the same
    # global outlier i=6 -> 0
    torch.testing.assert_close(s, torch.tensor([0.75, 0.75, 0.5, 0.5, 0.75, 0.75, 0.0]))
    assert refine_with_parts(g, parts, 0.5).tolist() == [0, 0, 0, 0, 1, 1, -1]
    # threshold 0.6 drops samples 2 and 3 of cluster 0; cluster 1 keeps both
    assert refine_with_parts(g, parts, 0.6).tolist() == [0, 0, -1, -1, 1, 1, -1]
    # threshold 0.8 drops everyone of clusters 0 and 1
    assert refine_with_parts(g, parts, 0.8).tolist() == [-1] * 7


def test_singletons_after_refinement_become_outliers() -> None:
    g = torch.tensor([0, 0, 0, 1, 1])
    parts = torch.tensor([[0, 0, 1, 2, 3]])  # cluster 0: i=0,1 share 2/3, i=2 1/3; cluster 1: 1/2 each
    assert refine_with_parts(g, parts, 0.5).tolist() == [0, 0, -1, 1, 1]
    # at 0.6 cluster 1 loses both (1/2 < 0.6) and cluster 0 keeps i=0,1 (2/3)
    assert refine_with_parts(g, parts, 0.6).tolist() == [0, 0, -1, -1, -1]
    parts = torch.tensor([[0, 1, 1, 2, 2]])  # i=0 shares 1/3 -> dropped; i=1,2 keep 2/3 -> a pair survives
    assert refine_with_parts(g, parts, 0.6).tolist() == [-1, 0, 0, 1, 1]
    single = torch.tensor([[0, 1, 2, 2, 2]])  # cluster 0 all at 1/3 dropped
    assert refine_with_parts(g, single, 0.5).tolist() == [-1, -1, -1, 1, 1]


def _scene(seed: int = 0):
    """20 samples: identity A (8) and B (4) look alike globally but differ in every part; C (8) is clean."""
    g = torch.Generator().manual_seed(seed)
    d = 16
    centres = F.normalize(torch.randn(3, d, generator=g), dim=1)
    ids = torch.tensor([0] * 8 + [1] * 4 + [2] * 8)
    global_centre = centres[torch.tensor([0, 0, 1])[ids]]  # A and B share a global centre
    feats = F.normalize(global_centre + 0.02 * torch.randn(20, d, generator=g), dim=1)
    part_centres = F.normalize(torch.randn(3, 3, d, generator=g), dim=2)  # [identity, part, D]
    parts = F.normalize(part_centres[ids] + 0.02 * torch.randn(20, 3, d, generator=g), dim=2)
    return feats, parts, ids


def _plain_dbscan(x: torch.Tensor) -> torch.Tensor:
    rows, cols, dist = jaccard_pairs(x, k1=8, k2=2, max_distance=0.6)
    return dbscan_pairs(rows, cols, dist, x.shape[0], eps=0.6, min_samples=3)


@pytest.mark.parametrize("seed", [0, 1])
def test_parts_split_off_the_minority_of_a_merged_global_cluster(seed: int) -> None:
    feats, parts, _ = _scene(seed)
    assert _plain_dbscan(feats).tolist() == [0] * 12 + [1] * 8  # global space merges A and B
    for p in range(3):  # every part space separates A, B and C
        assert _plain_dbscan(parts[:, p]).tolist() == [0] * 8 + [1] * 4 + [2] * 8
    policy = build_policy("inclr", num_samples=20, feat_dim=16, **SMALL)
    policy.initialize(feats, parts=parts)
    # A's members share their part clusters with 8/12 of the merged cluster (>= 0.5): kept;
    # B's with 4/12 (< 0.5): outliers; C is consistent everywhere
    assert policy.labels().tolist() == [0] * 8 + [-1] * 4 + [1] * 8
    assert policy.refine_stats["part_clusters"] == [3, 3, 3]
    assert policy.refine_stats["dropped_share"] == pytest.approx(4 / 20)


def test_without_parts_is_an_error_unless_global_only() -> None:
    feats, parts, _ = _scene()
    policy = build_policy("inclr", num_samples=20, feat_dim=16, **SMALL)
    with pytest.raises(ValueError, match="got no part features.*global_only=true"):
        policy.initialize(feats)
    policy = build_policy("inclr", num_samples=20, feat_dim=16, global_only=True, **SMALL)
    policy.initialize(feats, parts=parts)  # parts are ignored when asked for the global clustering alone
    assert torch.equal(policy.labels(), _plain_dbscan(feats))
    assert policy.part_features() is None and policy.config["global_only"] is True
    policy.step(torch.tensor([0]), feats[:1])  # no parts needed


def test_part_bank_momentum_and_state_round_trip() -> None:
    feats, parts, _ = _scene()
    policy = build_policy("inclr", num_samples=20, feat_dim=16, momentum=0.5, **SMALL)
    policy.initialize(feats, parts=parts)
    new = torch.zeros(1, 3, 16)
    new[0, :, 0] = 1.0  # every part of sample 3 moves towards e_0
    old = policy.part_features()[3].clone()
    policy.step(torch.tensor([3]), feats[3:4], parts=new)
    # v = normalise(0.5 * v_old + 0.5 * e_0), per part row
    expected = F.normalize(0.5 * old + 0.5 * new[0], dim=1)
    torch.testing.assert_close(policy.part_features()[3], expected)
    torch.testing.assert_close(policy.part_features()[4], F.normalize(parts[4], dim=1))
    with pytest.raises(ValueError, match="parts="):
        policy.step(torch.tensor([3]), feats[3:4])
    with pytest.raises(ValueError, match=r"\[1, 3, 16\]"):
        policy.step(torch.tensor([3]), feats[3:4], parts=torch.zeros(1, 2, 16))
    state = policy.state_dict()
    other = build_policy("inclr", num_samples=20, feat_dim=16, momentum=0.5, **SMALL)
    other.load_state_dict(state)
    assert torch.equal(other.part_features(), policy.part_features())
    assert torch.equal(other.labels(), policy.labels())
    other.refresh()
    policy.refresh()
    assert torch.equal(other.labels(), policy.labels())
    with pytest.raises(ValueError, match="different configuration"):
        build_policy("inclr", num_samples=20, feat_dim=16, momentum=0.5, **{**SMALL, "min_consistency": 0.7}
                     ).load_state_dict(state)


@pytest.mark.parametrize("bad", [{"eps": 1.0}, {"part_eps": 0.0}, {"min_consistency": 1.5}, {"num_parts": 0},
                                 {"min_samples": 0}, {"k1": 0}])
def test_bad_parameters(bad: dict) -> None:
    with pytest.raises(ValueError):
        build_policy("inclr", num_samples=20, feat_dim=16, **bad)

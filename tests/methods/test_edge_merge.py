"""The edge-share merge and the camera centring of the tracking dynamics (methods/edge_merge.py), on
cases small enough to score by hand, and the hcd policy's use of them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from streamlabel.methods import build_policy
from streamlabel.methods.edge_merge import camera_centred, camera_means, edge_share_parents

pytestmark = pytest.mark.usefixtures("single_thread")

# Units (smallest member = id): u0 = {0, 1}, u2 = {2}, u3 = {3, 4}, u5 = {5}, u6 = {6}; two list slots.
UNIT_OF = torch.tensor([0, 0, 2, 3, 3, 5, 6])
SIZES = torch.bincount(UNIT_OF, minlength=7)
LISTS = torch.tensor([[2, 3], [2, -1], [0, 5], [5, 0], [5, 1], [3, 4], [5, -1]])
# edges between units, both directions: u0-u2: 0->2, 1->2, 2->0 = 3; u0-u3: 0->3, 3->0, 4->1 = 3;
# u2-u5: 2->5 = 1; u3-u5: 3->5, 4->5, 5->3, 5->4 = 4; u5-u6: 6->5 = 1.
# share = edges / (2 slots x smaller size): u0-u2 3/2 = 1.5, u0-u3 3/4 = 0.75, u2-u5 1/2 = 0.5,
# u3-u5 4/2 = 2.0, u5-u6 1/2 = 0.5. Best partner (most edges): u0 -> u2 and u3 (3, a tie), u2 -> u0 (3),
# u3 -> u5 (4), u5 -> u3 (4), u6 -> u5 (1).


def test_units_link_to_the_partner_with_most_edges_above_the_share():
    parent = edge_share_parents(UNIT_OF, SIZES, LISTS, share=0.55)
    # u0-u2, u0-u3 (tied best of u0, shares 1.5 and 0.75) and u3-u5 link; u2-u5 is nobody's best; u6's best
    # has share 0.5, below 0.55; free ids are -1. (Chosen by share, u0's best would be u2 alone.)
    assert parent.tolist() == [0, -1, 0, 0, -1, 0, 6]


def test_a_link_from_one_end_is_enough():
    # share 0.45: u6's best partner is u5 (share 0.5), although u5's best is u3: u6 joins the component;
    # u2-u5 (0.5) is the best of neither end, but both are in it already through u0-u3-u5
    parent = edge_share_parents(UNIT_OF, SIZES, LISTS, share=0.45)
    assert parent.tolist() == [0, -1, 0, 0, -1, 0, 0]


def test_a_share_above_every_pair_links_nothing_but_the_best():
    parent = edge_share_parents(UNIT_OF, SIZES, LISTS, share=1.6)
    assert parent.tolist() == [0, -1, 2, 3, -1, 3, 6]  # only u3-u5 (2.0) is left


def test_units_seen_by_the_same_cameras_never_link():
    # u0 and u2 both seen by camera 0 only, u5 and u6 by camera 2 only: u0-u2 and u5-u6 are out, so u0's
    # best is u3 alone (share 0.75, above 0.55) and u2's best, u5, has share 0.5, below it
    sets = torch.tensor([1, 0, 1, 2, 0, 4, 4])
    parent = edge_share_parents(UNIT_OF, SIZES, LISTS, share=0.55, camera_sets=sets)
    assert parent.tolist() == [0, -1, 2, 0, -1, 0, 6]


def test_camera_centring_by_hand():
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    cams = torch.tensor([0, 0, 1])
    means = camera_means(feats, cams)
    assert torch.allclose(means, torch.tensor([[0.5, 0.5], [1.0, 1.0]]))
    half = 2**-0.5
    expected = torch.tensor([[half, -half], [-half, half], [0.0, 0.0]])  # a lone camera's row: zero
    assert torch.allclose(camera_centred(feats, cams, means), expected)


def two_cameras_one_bias(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """8 identities x 2 cameras x 6 images. Every camera adds its own strong offset (without centring the
    nearest neighbours of a sample are the other identities of its camera), and every identity looks a
    little different in each camera (a viewpoint term), so its images form one tight group per camera."""
    g = torch.Generator().manual_seed(seed)
    dim, ids = 64, 8
    identity = F.normalize(torch.randn(ids, dim, generator=g), dim=1)
    offset = F.normalize(torch.randn(2, dim, generator=g), dim=1)
    view = 0.6 * F.normalize(torch.randn(ids, 2, dim, generator=g), dim=2)
    pid = torch.arange(ids).repeat_interleave(12)
    cam = torch.arange(2).repeat_interleave(6).repeat(ids)
    noise = 0.1 * torch.randn(pid.numel(), dim, generator=g) / dim**0.5
    feats = F.normalize(identity[pid] + 1.6 * offset[cam] + view[pid, cam] + noise, dim=1)
    return feats, cam, pid


def test_centring_and_cross_camera_edges_join_an_identity_across_cameras():
    feats, cam, pid = two_cameras_one_bias()
    # edge_k 5: fewer slots than an identity has images in the other camera
    policy = build_policy("hcd", num_samples=feats.shape[0], feat_dim=feats.shape[1], edge_k=5)
    policy.initialize(feats, cam)
    level0 = policy.labels(0)  # one group per identity and camera: the merges above do the joining
    assert all(torch.unique(cam[level0 == c]).numel() == 1 for c in torch.unique(level0[level0 >= 0]))
    top = policy.labels()
    # every identity is one cluster and no cluster holds two identities
    assert all(torch.unique(top[pid == i]).numel() == 1 for i in range(8))
    assert all(torch.unique(pid[top == c]).numel() == 1 for c in torch.unique(top[top >= 0]))
    raw = build_policy("hcd", num_samples=feats.shape[0], feat_dim=feats.shape[1], camera_centring=False)
    raw.initialize(feats, cam)  # the camera offset dominates the level-0 links: clusters mix identities
    assert any(torch.unique(pid[raw.labels(0) == c]).numel() > 1 for c in torch.unique(raw.labels(0)))


@pytest.mark.parametrize("key, value", [("edge_k", 5), ("edge_share", 0.4)])
def test_edge_keys_need_merge_edges(key, value):
    with pytest.raises(ValueError, match="belong.*merge: edges"):
        build_policy("hcd", num_samples=10, feat_dim=4, merge="centroid", **{key: value})


@pytest.mark.parametrize("key, value", [("cross_camera_from", 1), ("merge_floor", 0.5), ("criterion", "centroid")])
def test_centroid_keys_need_merge_centroid(key, value):
    with pytest.raises(ValueError, match="belong.*merge: centroid"):
        build_policy("hcd", num_samples=10, feat_dim=4, **{key: value})


@pytest.mark.parametrize("params, message", [
    ({"merge": "nearest"}, "merge must be one of"),
    ({"edge_share": 0.0}, "edge_share must be in"),
    ({"edge_share": 2.5}, "edge_share must be in"),
    ({"edge_k": 0}, "edge_k must be >= 1"),
    ({"camera_centring": "yes"}, "camera_centring must be true or false"),
])
def test_bad_edge_parameters_are_refused(params, message):
    with pytest.raises(ValueError, match=message):
        build_policy("hcd", num_samples=10, feat_dim=4, **params)


def test_two_identities_seen_by_the_same_cameras_stay_apart_in_the_policy():
    """Two identities, 4 images in each of 2 cameras; every sample's edge list (edge_k 6) is filled past its own
    identity's 4 images in the other camera, so the two identities share a third of their edges. Each
    identity is complete (both cameras): the camera-set rule keeps them apart at every level; without it the
    shared edges would merge them (the mutant 'camera sets ignored' of benchmarks/mutants.py)."""
    g = torch.Generator().manual_seed(0)
    p, q, a, b = torch.eye(16)[:4]
    ids = torch.arange(2).repeat_interleave(8)
    cams = torch.arange(2).repeat_interleave(4).repeat(2)
    centre = torch.stack([p, q])[ids] + 0.8 * torch.stack([a, b])[cams]
    feats = F.normalize(centre + 0.02 * torch.randn(16, 16, generator=g), dim=1)
    # no centring: each (identity, camera) group is one tight level-0 cluster (centred, the two cameras of an
    # identity coincide and level 0 becomes a random mutual-3-NN graph of 8 near-copies)
    policy = build_policy("hcd", num_samples=16, feat_dim=16, edge_k=6, k=5, camera_centring=False)
    policy.initialize(feats, cams)
    assert policy.labels(0).unique().numel() == 4  # P-A, P-B, Q-A, Q-B
    for level in range(1, policy.num_levels):
        labels = policy.labels(level)
        assert labels[:8].unique().numel() == 1 and labels[8:].unique().numel() == 1, level
        assert int(labels[0]) != int(labels[8]), level

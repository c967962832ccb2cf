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
# u3-u5 4/2 = 2.0, u5-u6 1/2 = 0.5. Best share: u0 1.5, u2 1.5, u3 2.0, u5 2.0, u6 0.5.


def test_units_link_to_their_best_partner_above_the_share():
    parent = edge_share_parents(UNIT_OF, SIZES, LISTS, share=0.55)
    # u0-u2 and u3-u5 are best pairs; u0-u3 (0.75) is above the share but nobody's best; u6's best (0.5)
    # is below it; free ids are -1
    assert parent.tolist() == [0, -1, 0, 3, -1, 3, 6]


def test_a_link_from_one_end_is_enough():
    # share 0.45: u6's best partner is u5 (0.5), although u5's best is u3: u6 joins u3's component;
    # u2-u5 (0.5) is the best of neither end and stays apart
    parent = edge_share_parents(UNIT_OF, SIZES, LISTS, share=0.45)
    assert parent.tolist() == [0, -1, 0, 3, -1, 3, 3]


def test_a_share_above_every_pair_links_nothing_but_the_best():
    parent = edge_share_parents(UNIT_OF, SIZES, LISTS, share=1.6)
    assert parent.tolist() == [0, -1, 2, 3, -1, 3, 6]  # only u3-u5 (2.0) is left


def test_camera_centring_by_hand():
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    cams = torch.tensor([0, 0, 1])
    means = camera_means(feats, cams)
    assert torch.allclose(means, torch.tensor([[0.5, 0.5], [1.0, 1.0]]))
    half = 2**-0.5
    expected = torch.tensor([[half, -half], [-half, half], [0.0, 0.0]])  # a lone camera's row: zero
    assert torch.allclose(camera_centred(feats, cams, means), expected)


def two_cameras_one_bias(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """8 identities x 2 cameras x 6 images; every camera adds its own strong offset (cosine 0.6 of the
    images of one camera come from the offset alone), so without centring the nearest neighbours of a
    sample are the other identities of its camera."""
    g = torch.Generator().manual_seed(seed)
    dim, ids = 64, 8
    identity = F.normalize(torch.randn(ids, dim, generator=g), dim=1)
    offset = F.normalize(torch.randn(2, dim, generator=g), dim=1)
    pid = torch.arange(ids).repeat_interleave(12)
    cam = torch.arange(2).repeat_interleave(6).repeat(ids)
    noise = 0.25 * torch.randn(pid.numel(), dim, generator=g) / dim**0.5
    feats = F.normalize(identity[pid] + 1.6 * offset[cam] + noise, dim=1)
    return feats, cam, pid


def test_centring_and_cross_camera_edges_join_an_identity_across_cameras():
    feats, cam, pid = two_cameras_one_bias()
    # edge_k 5: fewer slots than an identity has images in the other camera
    policy = build_policy("hcd", num_samples=feats.shape[0], feat_dim=feats.shape[1], edge_k=5)
    policy.initialize(feats, cam)
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

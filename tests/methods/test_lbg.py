"""LbG policy (methods/lbg.py): Eq. 4 camera normalisation and cluster selection by hand, the pipeline on
two well separated identities seen by two cameras, progressive rounds, state round trip, bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from streamlabel.methods import build_policy
from streamlabel.methods.lbg import camera_normalize, select_clusters

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: one thread is faster


def test_camera_normalisation_by_hand():
    # camera 7: rows (1, 0), (3, 4)  -> mean (2, 2), population std (1, 2)
    #   normalised: ((1-2)/1, (0-2)/2) = (-1, -1);  ((3-2)/1, (4-2)/2) = (1, 1)
    # camera 2: rows (0, 10), (0, 10), (0, 16) -> mean (0, 12), std (0 -> clamp, sqrt((4+4+16)/3) = sqrt(8))
    #   dim 0 is constant: 0 / clamp = 0; dim 1: -2/sqrt(8), -2/sqrt(8), 4/sqrt(8)
    f = torch.tensor([[1.0, 0.0], [0.0, 10.0], [3.0, 4.0], [0.0, 10.0], [0.0, 16.0]])
    cams = torch.tensor([7, 2, 7, 2, 2])
    out = camera_normalize(f, cams)
    r8 = 8 ** 0.5
    expected = torch.tensor([[-1.0, -1.0], [0.0, -2 / r8], [1.0, 1.0], [0.0, -2 / r8], [0.0, 4 / r8]])
    torch.testing.assert_close(out, expected)


def test_cluster_selection_by_hand():
    # cluster 0: 4 members, cameras {0, 1}      -> kept
    # cluster 1: 4 members, cameras {0}         -> dropped (one camera)
    # cluster 2: 3 members, cameras {0, 1}      -> dropped (3 < K = 4)
    # -1 stays -1
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, -1])
    cams = torch.tensor([0, 1, 0, 0, 0, 0, 0, 0, 5, 1, 1, 1])
    out = select_clusters(labels, cams, min_size=4, min_cameras=2)
    assert out.tolist() == [0, 0, 0, 0, -1, -1, -1, -1, -1, -1, -1, -1]
    # K = 3: cluster 2 passes; one camera allowed: cluster 1 passes too
    assert select_clusters(labels, cams, min_size=3, min_cameras=2).tolist()[8:11] == [2, 2, 2]
    assert select_clusters(labels, cams, min_size=4, min_cameras=1).tolist()[4:8] == [1, 1, 1, 1]


def _two_camera_data(seed: int = 0):
    """3 identities x (4 images in camera 0 + 4 in camera 1) plus a camera offset; 2 loners in camera 0."""
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(3, 16, generator=g), dim=1) * 3
    offset = torch.randn(16, generator=g)  # what each camera adds: removed by Eq. 4
    ids = torch.arange(3).repeat_interleave(8)
    cams = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1] * 3)
    x = centres[ids] + 0.05 * torch.randn(24, 16, generator=g) + offset * cams.unsqueeze(1)
    loners = 3 * torch.randn(2, 16, generator=g)
    feats = torch.cat([x, loners])
    return F.normalize(feats, dim=1), torch.cat([cams, torch.zeros(2, dtype=torch.long)]), ids


def test_pipeline_finds_cross_camera_identities():
    feats, cams, ids = _two_camera_data()
    policy = build_policy("lbg", num_samples=26, feat_dim=16, k=10, eps=0.3)
    policy.initialize(feats, cameras=cams)
    labels = policy.labels()
    assert labels[24:].tolist() == [-1, -1]
    for i in range(3):
        members = labels[:24][ids == i]
        assert int(members.min()) >= 0 and bool((members == members[0]).all())
    assert len(set(labels[:24].tolist())) == 3
    assert policy.stats["clusters_kept"] == 3 and policy.stats["round"] == 1
    # without Eq. 4 the camera offset splits every identity by camera: no cluster spans two cameras
    plain = build_policy("lbg", num_samples=26, feat_dim=16, k=10, eps=0.3, camera_norm=False)
    plain.initialize(feats, cameras=cams)
    assert plain.stats["clusters_dbscan"] >= 3 and plain.stats["clusters_kept"] == 0


def test_progressive_rounds_and_state_round_trip():
    feats, cams, _ = _two_camera_data()
    policy = build_policy("lbg", num_samples=26, feat_dim=16, k=10, eps=0.3)
    policy.initialize(feats, cameras=cams)
    policy.step(torch.tensor([0, 1]), feats[[24, 25]])  # two rows move: the next round sees it
    assert policy.epoch_end(0) and policy.rounds == 2
    state = policy.state_dict()
    other = build_policy("lbg", num_samples=26, feat_dim=16, k=10, eps=0.3)
    other.load_state_dict(state)
    assert torch.equal(other.labels(), policy.labels()) and other.rounds == 2
    other.refresh(), policy.refresh()
    assert torch.equal(other.labels(), policy.labels())
    with pytest.raises(ValueError, match="different configuration"):
        build_policy("lbg", num_samples=26, feat_dim=16, k=10, eps=0.4).load_state_dict(state)


def test_errors():
    with pytest.raises(ValueError, match="eps"):
        build_policy("lbg", num_samples=8, feat_dim=4, eps=0.0)
    with pytest.raises(ValueError, match="min_cameras"):
        build_policy("lbg", num_samples=8, feat_dim=4, min_cameras=0)
    feats, _, _ = _two_camera_data()
    policy = build_policy("lbg", num_samples=26, feat_dim=16, k=10)
    with pytest.raises(ValueError, match="camera"):
        policy.initialize(feats)  # no camera ids: every sample in camera 0

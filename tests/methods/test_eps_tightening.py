"""The giant-cluster guard of the data-driven eps (methods/eps_tightening.py) by hand, and in nplp and lbg:
with the paper's loose share one cluster swallows the data; the default halves alpha until it does not.
Mutants killed: no halving (the policies' giant cluster stays), halving past the limit, max_share ignored."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from streamlabel.methods import build_policy
from streamlabel.methods.eps_tightening import MAX_HALVINGS, largest_cluster_share, tightened_clustering
from streamlabel.methods.nplp import cross_camera_eps

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: one thread is faster


def test_largest_cluster_share_by_hand():
    assert largest_cluster_share(torch.tensor([0, 0, 0, 1, -1, -1])) == pytest.approx(3 / 6)
    assert largest_cluster_share(torch.tensor([-1, -1])) == 0.0


def test_alpha_halves_until_no_cluster_is_too_big():
    # a fake clustering: the largest cluster holds min(1, alpha * 10) of 10 samples
    seen = []

    def cluster_at(alpha: float) -> torch.Tensor:
        seen.append(alpha)
        big = min(10, round(alpha * 10 * 10))  # alpha 1 -> 10 in one cluster, 0.25 -> ... see below
        return torch.tensor([0] * big + list(range(1, 11 - big)))

    # alpha 0.4 -> 10 of 10 (not <= 0.5), 0.2 -> 10, 0.1 -> 10, 0.05 -> 5 of 10 = 0.5: accepted
    labels, alpha, halvings = tightened_clustering(cluster_at, 0.4, max_share=0.5)
    assert seen == [0.4, 0.2, 0.1, 0.05] and alpha == 0.05 and halvings == 3
    assert largest_cluster_share(labels) == 0.5
    seen.clear()
    _, alpha, halvings = tightened_clustering(cluster_at, 0.4, max_share=1.0)  # the paper: never tightened
    assert seen == [0.4] and (alpha, halvings) == (0.4, 0)
    seen.clear()
    _, alpha, halvings = tightened_clustering(lambda a: seen.append(a) or torch.zeros(4, dtype=torch.long),
                                              1.0, max_share=0.5)  # never healthy: stops at the limit
    assert halvings == MAX_HALVINGS and alpha == 2.0 ** -MAX_HALVINGS and len(seen) == MAX_HALVINGS + 1


def _two_camera_identities(num_ids: int = 10, per_cam: int = 2, spread: float = 0.02):
    """Identities on an arc, neighbours 0.5 apart (chord), members ~0.16 apart: a loose eps chains them all."""
    g = torch.Generator().manual_seed(3)
    angle = 0.5 * torch.arange(num_ids, dtype=torch.float32)
    centres = torch.zeros(num_ids, 32)
    centres[:, 0], centres[:, 1] = angle.cos(), angle.sin()
    ids = torch.arange(num_ids).repeat_interleave(2 * per_cam)
    cams = torch.arange(2).repeat_interleave(per_cam).repeat(num_ids)
    x = F.normalize(centres[ids] + spread * torch.randn(ids.numel(), 32, generator=g), dim=1)
    return x, cams, ids


def _pure_identities(labels: torch.Tensor, ids: torch.Tensor) -> int:
    """Identities whose samples all carry one label that nobody else carries."""
    good = 0
    for i in ids.unique():
        own = labels[ids == i]
        alone = int((labels == own[0]).sum()) == own.numel()
        good += int(bool((own >= 0).all()) and own.unique().numel() == 1 and alone)
    return good


def test_nplp_tightens_a_percolating_eps():
    # alpha = 1: eps is the mean of every cross-camera distance (~1.4): one cluster holds most samples
    x, cams, ids = _two_camera_identities()
    paper = build_policy("nplp", num_samples=40, feat_dim=32, k=10, alpha=1.0, max_cluster_share=1.0, min_samples=2)
    paper.initialize(x, cameras=cams)
    assert largest_cluster_share(paper.labels()) > 0.5 and paper.stats["alpha_halvings"] == 0
    guarded = build_policy("nplp", num_samples=40, feat_dim=32, k=10, alpha=1.0, min_samples=2)
    guarded.initialize(x, cameras=cams)
    halvings = int(guarded.stats["alpha_halvings"])
    assert halvings >= 1 and guarded.stats["alpha_used"] == 2.0 ** -halvings
    assert largest_cluster_share(guarded.labels()) <= 0.5
    assert _pure_identities(guarded.labels(), ids) == 10  # the 10 identities, each its own cluster
    eps, *_ = cross_camera_eps(x, cams, alpha=guarded.stats["alpha_used"], k=10)
    assert guarded.eps_e == pytest.approx(eps)  # eps of the share actually used


def test_lbg_calibrates_eps_from_the_data():
    x, cams, ids = _two_camera_identities()  # camera_norm off: per-dimension scaling would blow up the noise
    fixed = build_policy("lbg", num_samples=40, feat_dim=32, k=10, eps=1.5, camera_norm=False, min_samples=2,
                         min_size=2)
    fixed.initialize(x, cameras=cams)
    assert largest_cluster_share(fixed.labels()) > 0.5  # a hand eps on the wrong scale: one cluster
    auto = build_policy("lbg", num_samples=40, feat_dim=32, k=10, eps_alpha=1.0, camera_norm=False, min_samples=2,
                        min_size=2)
    auto.initialize(x, cameras=cams)
    assert auto.stats["eps_alpha_used"] < 1.0 and largest_cluster_share(auto.labels()) <= 0.5
    assert _pure_identities(auto.labels(), ids) == 10
    loose = build_policy("lbg", num_samples=40, feat_dim=32, k=10, eps_alpha=1.0, max_cluster_share=1.0,
                         camera_norm=False, min_samples=2, min_size=2)
    loose.initialize(x, cameras=cams)
    assert largest_cluster_share(loose.labels()) > 0.5 and loose.stats["eps_alpha_used"] == 1.0


@pytest.mark.parametrize(("policy", "params", "match"), [
    ("nplp", {"max_cluster_share": 0.0}, "max_cluster_share"),
    ("lbg", {"max_cluster_share": 1.5}, "max_cluster_share"),
    ("lbg", {"eps_alpha": 0.0}, "eps_alpha"),
    ("lbg", {"eps": "auto"}, "eps"),
])
def test_bad_parameters_are_refused(policy, params, match):
    with pytest.raises((ValueError, TypeError), match=match):
        build_policy(policy, num_samples=8, feat_dim=4, **params)

"""Policy registry (methods/base.py): names, parameters, nearest-key errors, registration rules."""

from __future__ import annotations

import pytest
import torch

from streamlabel.keys import UnknownKeyError
from streamlabel.methods import (
    BankUpdatePolicy,
    HCDPolicy,
    available_policies,
    build_policy,
    register_policy,
)
from streamlabel.methods import base as policy_base
from streamlabel.methods.base import get_policy_class, policy_parameters

pytestmark = pytest.mark.usefixtures("single_thread")


def test_hcd_is_registered_with_both_presets():
    assert "hcd" in available_policies()
    assert get_policy_class("hcd") is HCDPolicy
    params = policy_parameters("hcd")
    assert "device" not in params and "num_samples" not in params
    expected = {
        "k": 30,
        "alpha_split": 0.99,
        "max_anchors": 8,
        "dynamics": "tracking",
        "num_levels": None,
        "momentum": 0.2,
        "refresh_every": 0,
        "anchor_method": "density_peak",
    }
    for key, value in expected.items():
        assert params[key] == value, key
    assert params["sigma"] is None and params["link_k"] is None  # the chosen preset's default
    paper = build_policy("hcd", num_samples=8, feat_dim=4, dynamics="paper", sigma=0.3)
    assert isinstance(paper, HCDPolicy) and paper.sigma == 0.3 and paper.name == "hcd"
    assert (paper.alpha_merge, paper.link_k, paper.assign, paper.criterion) == (
        0.99,
        2,
        "nearest",
        "lp",
    )
    tracking = build_policy("hcd", num_samples=8, feat_dim=4)
    assert (tracking.link_k, tracking.split_gap, tracking.merge, tracking.edge_k, tracking.edge_share,
            tracking.camera_centring, tracking.num_levels) == (3, 2.0, "edges", 10, 0.45, True, 5)
    assert tracking.sigma is None and tracking.merge_floor is None and tracking.cross_camera_from is None
    centroid = build_policy("hcd", num_samples=8, feat_dim=4, merge="centroid")
    assert (centroid.cross_camera_from, centroid.criterion, centroid.edge_k) == (2, "centroid", None)


@pytest.mark.parametrize(
    ("dynamics", "key", "value"),
    [
        ("tracking", "sigma", 0.3),
        ("tracking", "assign", "mutual"),
        ("paper", "split_gap", 1.0),
        ("paper", "merge_floor", 0.5),
    ],
)
def test_a_parameter_of_the_other_preset_is_refused(dynamics, key, value):
    with pytest.raises(ValueError, match=rf"{key} belong\(s\) to dynamics"):
        build_policy("hcd", num_samples=8, feat_dim=4, dynamics=dynamics, **{key: value})


def test_unknown_names_suggest_the_nearest():
    with pytest.raises(UnknownKeyError, match="'sigma'") as info:
        build_policy("hcd", num_samples=8, feat_dim=4, simga=0.2)
    assert "simga" in str(info.value)
    with pytest.raises(KeyError, match="'hcd'"):
        build_policy("hdc", num_samples=8, feat_dim=4)


def test_base_checks_sizes():
    with pytest.raises(ValueError, match="positive"):
        build_policy("hcd", num_samples=0, feat_dim=4)


@pytest.fixture
def scratch_name():
    name = "_engine_test_policy"
    yield name
    policy_base.POLICIES._entries.pop(name, None)  # keep the global registry as it was


def test_register_policy_rules(scratch_name):
    @register_policy(scratch_name)
    class Dummy(BankUpdatePolicy):
        def __init__(self, num_samples, feat_dim, *, device=None, refresh_every=0, width: int = 3):
            super().__init__(num_samples, feat_dim, device=device, refresh_every=refresh_every)
            self.width = width

        def initialize(self, features, cameras=None):
            self.n = features.shape[0]

        def step(self, indices, features, cameras=None):
            pass

        def labels(self, level=-1):
            return torch.zeros(self.num_samples, dtype=torch.long)

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

    assert scratch_name in available_policies() and Dummy.name == scratch_name
    assert policy_parameters(scratch_name) == {"refresh_every": 0, "width": 3}
    dummy = build_policy(scratch_name, num_samples=5, feat_dim=2, width=7)
    assert dummy.width == 7
    with pytest.raises(KeyError, match="'width'"):
        build_policy(scratch_name, num_samples=5, feat_dim=2, widht=7)
    # epoch_end with refresh_every > 0 calls refresh, which this policy does not have
    with pytest.raises(NotImplementedError):
        build_policy(scratch_name, num_samples=5, feat_dim=2, refresh_every=1).epoch_end(0)
    with pytest.raises(ValueError, match="already registered"):
        register_policy(scratch_name)(type("Other", (Dummy,), {}))
    with pytest.raises(TypeError):
        register_policy("_not_a_policy")(object)
    assert "_not_a_policy" not in available_policies()

"""Policy registry (methods/base.py): names, parameters, nearest-key errors, registration rules."""

from __future__ import annotations

import pytest
import torch

from streamlabel.keys import UnknownKeyError
from streamlabel.methods import BankUpdatePolicy, HCDPolicy, available_policies, build_policy, register_policy
from streamlabel.methods import base as policy_base
from streamlabel.methods.base import get_policy_class, policy_parameters

pytestmark = pytest.mark.usefixtures("single_thread")


def test_hcd_is_registered_with_paper_defaults():
    assert "hcd" in available_policies()
    assert get_policy_class("hcd") is HCDPolicy
    params = policy_parameters("hcd")
    assert "device" not in params and "num_samples" not in params
    expected = {"k": 30, "sigma": 0.25, "alpha_split": 0.99, "alpha_merge": 0.99, "max_anchors": 8,
                "num_levels": 3, "momentum": 0.2, "refresh_every": 0, "anchor_method": "density_peak"}
    for key, value in expected.items():
        assert params[key] == value, key
    policy = build_policy("hcd", num_samples=8, feat_dim=4, sigma=0.3)
    assert isinstance(policy, HCDPolicy) and policy.sigma == 0.3 and policy.name == "hcd"


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
    policy_base._REGISTRY.pop(name, None)  # keep the global registry as it was


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

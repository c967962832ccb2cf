"""The offline skeleton: refresh schedule, momentum steps, state round trip, config refusal."""

from __future__ import annotations

import pytest
import torch

from streamlabel.methods.offline import OfflineClusteringPolicy


class SignPolicy(OfflineClusteringPolicy):
    """Cluster by the sign of the first coordinate; counts its calls."""

    name = "sign-test"

    def __init__(self, num_samples, feat_dim, **kw):
        super().__init__(num_samples, feat_dim, **kw)
        self.calls = 0

    def cluster(self, features, cameras):
        self.calls += 1
        return (features[:, 0] > 0).long()


def _features(n=8, d=4):
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(0))
    x[:, 0] = torch.tensor([1.0, -1.0] * (n // 2))
    return x


def test_refresh_schedule_and_labels():
    policy = SignPolicy(8, 4, refresh_every=2, momentum=0.5)
    policy.initialize(_features())
    assert policy.calls == 1 and policy.rounds == 1
    assert policy.labels().tolist() == [0, 1] * 4  # dense ids in order of first member
    policy.step(torch.tensor([0]), torch.tensor([[-5.0, 0, 0, 0]]))
    assert policy.calls == 1  # offline: a step only moves the bank
    assert policy.epoch_end(0) is False and policy.epoch_end(1) is True
    assert policy.calls == 2
    online = SignPolicy(8, 4, refresh_every=0)
    online.initialize(_features())
    online.step(torch.tensor([0]), torch.tensor([[-5.0, 0, 0, 0]]))
    assert online.calls == 2 and online.labels()[0] == online.labels()[1]


def test_momentum_update_formula():
    policy = SignPolicy(8, 4, momentum=0.5)
    x = _features()
    policy.initialize(x)
    f = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    policy.step(torch.tensor([3]), f)
    v = torch.nn.functional.normalize(x[3], dim=0)
    expected = torch.nn.functional.normalize(0.5 * v + 0.5 * f[0], dim=0)
    torch.testing.assert_close(policy.bank.features[3], expected)


def test_state_round_trip_and_refusal():
    policy = SignPolicy(8, 4, refresh_every=1)
    policy.initialize(_features(), cameras=torch.arange(8) % 2)
    state = policy.state_dict()
    other = SignPolicy(8, 4, refresh_every=1)
    other.load_state_dict(state)
    assert torch.equal(other.labels(), policy.labels()) and torch.equal(other.cameras, policy.cameras)
    with pytest.raises(ValueError, match="different configuration"):
        SignPolicy(8, 4, refresh_every=2).load_state_dict(state)


def test_errors():
    policy = SignPolicy(8, 4)
    with pytest.raises(RuntimeError, match="not initialised"):
        policy.labels()
    with pytest.raises(ValueError, match="cameras"):
        policy.initialize(_features(), cameras=torch.zeros(3, dtype=torch.long))
    policy.initialize(_features())
    with pytest.raises(ValueError, match="NaN|finite"):
        policy.step(torch.tensor([0]), torch.full((1, 4), float("nan")))


def test_reload_bank_replaces_every_row_and_the_next_refresh_reads_it():
    policy = SignPolicy(8, 4, refresh_every=1, momentum=0.5)
    assert policy.refresh_source == "extract" and policy.config["refresh_source"] == "extract"
    policy.initialize(_features())
    fresh = -_features()  # every sign flipped: the next refresh must see it
    policy.reload_bank(fresh)
    torch.testing.assert_close(policy.bank.features, torch.nn.functional.normalize(fresh, dim=1))
    assert policy.labels().tolist() == [0, 1] * 4 and policy.calls == 1  # labels wait for the refresh
    assert policy.refreshes_after(0) and policy.epoch_end(0)
    assert (policy.bank.features[:, 0] > 0).long().tolist() == [0, 1] * 4
    with pytest.raises(ValueError, match="refresh_source must be 'extract'.*or 'bank'"):
        SignPolicy(8, 4, refresh_source="model")
    with pytest.raises(ValueError, match="different configuration"):
        SignPolicy(8, 4, refresh_source="bank").load_state_dict(policy.state_dict())

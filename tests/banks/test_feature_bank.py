"""FeatureBank (banks/feature_bank.py): momentum formula by hand, duplicates, segment means, bad
input."""

from __future__ import annotations

import math

import pytest
import torch

from streamlabel.banks.feature_bank import FeatureBank, dedupe_rows
from tests.helpers.features import unit_rows

pytestmark = pytest.mark.usefixtures("single_thread")


def test_initialize_normalises_rows():
    bank = FeatureBank(5, 3)
    feats = torch.tensor(
        [[3.0, 4.0, 0.0], [0.0, 0.0, 2.0], [1.0, 1.0, 1.0], [-1.0, 0.0, 0.0], [0.0, 5.0, 0.0]]
    )
    bank.initialize(feats)
    torch.testing.assert_close(bank.features.norm(dim=1), torch.ones(5))
    torch.testing.assert_close(bank.features[0], torch.tensor([0.6, 0.8, 0.0]))


def test_momentum_update_by_hand():
    # v = (1, 0), f = (0, 2) -> normalize(f) = (0, 1); m = 0.2:
    # m*v + (1-m)*f_hat = (0.2, 0.8); its norm is sqrt(0.04 + 0.64) = sqrt(0.68)
    bank = FeatureBank(3, 2, momentum=0.2)
    bank.initialize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    written = bank.update(torch.tensor([0]), torch.tensor([[0.0, 2.0]]))
    assert written.tolist() == [0]
    norm = math.sqrt(0.68)
    torch.testing.assert_close(bank.features[0], torch.tensor([0.2 / norm, 0.8 / norm]))
    # untouched rows stay as they were
    torch.testing.assert_close(bank.features[1], torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(bank.features[2], torch.tensor([1.0, 1.0]) / math.sqrt(2.0))


def test_momentum_zero_replaces_row():
    bank = FeatureBank(2, 2, momentum=0.0)
    bank.initialize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    bank.update(torch.tensor([1]), torch.tensor([[-3.0, 0.0]]))
    torch.testing.assert_close(bank.features[1], torch.tensor([-1.0, 0.0]))


def test_duplicate_indices_are_averaged():
    # row 0 appears twice with f = (0, 1) and (0, 3): the mean (0, 2) is used once
    bank = FeatureBank(2, 2, momentum=0.5)
    bank.initialize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    bank.update(torch.tensor([0, 1, 0]), torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 3.0]]))
    # row 0: 0.5*(1,0) + 0.5*(0,1) = (0.5, 0.5) -> (1,1)/sqrt2; row 1: 0.5*(0,1) + 0.5*(1,0)
    # likewise
    expected = torch.tensor([1.0, 1.0]) / math.sqrt(2.0)
    torch.testing.assert_close(bank.features[0], expected)
    torch.testing.assert_close(bank.features[1], expected)
    idx, feats = dedupe_rows(torch.tensor([2, 0, 2]), torch.tensor([[1.0], [5.0], [3.0]]))
    assert idx.tolist() == [0, 2]
    torch.testing.assert_close(feats, torch.tensor([[5.0], [2.0]]))


def test_update_is_vectorised_equal_to_row_by_row():
    feats = unit_rows(30, 8, seed=1)
    batch = unit_rows(10, 8, seed=2) * 3.0
    rows = torch.randperm(30, generator=torch.Generator().manual_seed(0))[:10]
    a, b = FeatureBank(30, 8), FeatureBank(30, 8)
    a.initialize(feats)
    b.initialize(feats)
    a.update(rows, batch)
    for r, f in zip(rows, batch, strict=True):
        b.update(r.view(1), f.view(1, -1))
    torch.testing.assert_close(a.features, b.features)
    torch.testing.assert_close(a.features.norm(dim=1), torch.ones(30))


def test_segment_means_equal_brute_force():
    feats = unit_rows(40, 6, seed=3)
    bank = FeatureBank(40, 6)
    bank.initialize(feats)
    labels = torch.randint(-1, 7, (40,), generator=torch.Generator().manual_seed(1))
    means = bank.segment_means(labels, 9, normalize=False)
    for c in range(9):
        members = bank.features[labels == c]
        ref = members.mean(0) if len(members) else torch.zeros(6)
        torch.testing.assert_close(means[c], ref)
    normed = bank.segment_means(labels, 9)
    for c in range(9):
        if (labels == c).any():
            torch.testing.assert_close(normed[c], torch.nn.functional.normalize(means[c], dim=0))


def test_nan_features_raise_and_leave_bank_unchanged():
    bank = FeatureBank(4, 2)
    bank.initialize(unit_rows(4, 2))
    before = bank.features.clone()
    bad = torch.tensor([[1.0, 0.0], [float("nan"), 1.0]])
    with pytest.raises(ValueError, match="NaN"):
        bank.update(torch.tensor([0, 1]), bad)
    assert torch.equal(bank.features, before)
    with pytest.raises(ValueError, match="NaN"):
        bank.initialize(torch.full((4, 2), float("inf")))
    assert torch.equal(bank.features, before)


def test_wrong_shapes_and_ranges():
    bank = FeatureBank(4, 2)
    bank.initialize(unit_rows(4, 2))
    with pytest.raises(ValueError):
        bank.update(torch.tensor([0]), torch.ones(1, 3))
    with pytest.raises(ValueError):
        bank.update(torch.tensor([0, 1]), torch.ones(1, 2))
    with pytest.raises(ValueError):
        bank.update(torch.tensor([4]), torch.ones(1, 2))
    with pytest.raises(ValueError):
        bank.update(torch.tensor([-1]), torch.ones(1, 2))
    before = bank.features.clone()
    # not truncated / read as 0-1: refused, nothing written
    for bad in (torch.tensor([1.7]), torch.tensor([True])):
        with pytest.raises(ValueError, match="integer tensor"):
            bank.update(bad, torch.ones(1, 2))
    assert torch.equal(bank.features, before)
    with pytest.raises(ValueError):
        bank.initialize(torch.ones(3, 2))
    with pytest.raises(ValueError):
        FeatureBank(4, 2, momentum=1.0)
    with pytest.raises(ValueError):
        FeatureBank(0, 2)


def test_state_dict_round_trip():
    bank = FeatureBank(6, 3, momentum=0.3)
    bank.initialize(unit_rows(6, 3))
    other = FeatureBank(6, 3)
    other.load_state_dict(bank.state_dict())
    assert torch.equal(other.features, bank.features) and other.momentum == 0.3
    with pytest.raises(ValueError, match="shape"):
        FeatureBank(5, 3).load_state_dict(bank.state_dict())

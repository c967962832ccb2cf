"""HierarchicalLabelBank (banks/label_bank.py): invariant checks, statistics, dense labels,
updates."""

from __future__ import annotations

import pytest
import torch

from streamlabel.banks.label_bank import HierarchicalLabelBank, InvariantError
from tests.helpers.features import unit_rows

pytestmark = pytest.mark.usefixtures("single_thread")


def _bank(labels: list[list[int]], d: int = 4) -> tuple[HierarchicalLabelBank, torch.Tensor]:
    lab = torch.tensor(labels)
    feats = unit_rows(lab.shape[1], d, seed=5)
    bank = HierarchicalLabelBank(lab.shape[1], d, num_levels=lab.shape[0])
    bank.assign(lab, feats)
    return bank, feats


def test_assign_statistics_and_parent():
    bank, feats = _bank([[0, 0, 2, 3, 3, 5], [0, 0, 0, 3, 3, 3]])
    assert bank.sizes[0].tolist() == [2, 0, 1, 2, 0, 1]
    assert bank.num_clusters(0) == 4 and bank.num_clusters(1) == 2
    torch.testing.assert_close(bank.sums[0, 3], feats[3] + feats[4])
    torch.testing.assert_close(
        bank.centres(1)[0], torch.nn.functional.normalize(feats[:3].sum(0), dim=0)
    )
    assert bank.centres(0)[1].abs().sum() == 0  # free id
    assert bank.parent(0).tolist() == [0, -1, 0, 3, -1, 3]
    assert bank.parent(1).tolist() == [-1] * 6


def test_dense_labels_in_order_of_first_id():
    bank, _ = _bank([[5, 0, 5, 3, 3, 0]])
    assert bank.dense_labels(0).tolist() == [2, 0, 2, 1, 1, 0]


def test_invariant_violations_are_detected():
    bank, feats = _bank([[0, 0, 2, 2], [0, 0, 0, 0]])
    bank.labels[1, 1] = 3  # samples 0 and 1 share level-0 cluster 0 but not level-1 cluster
    bank.recompute(feats)  # statistics consistent, nesting broken
    with pytest.raises(InvariantError, match="preserve"):
        bank.check_invariant()
    with pytest.raises(InvariantError):
        HierarchicalLabelBank(3, 2, num_levels=2).assign(
            torch.tensor([[0, 0, 1], [0, 1, 1]]), unit_rows(3, 2)
        )
    bank, _ = _bank([[0, 0, 2, 2]])
    bank.sizes[0, 0] = 5
    with pytest.raises(InvariantError, match="sizes"):
        bank.check_invariant()
    bank, _ = _bank([[0, 0, 2, 2]])
    bank.labels[0, 0] = 4
    with pytest.raises(InvariantError, match="out of"):
        bank.check_invariant()


def test_move_samples_keeps_statistics_exact():
    bank, feats = _bank([[0, 0, 2, 2, 4], [0, 0, 0, 0, 4]])
    new_feat = unit_rows(1, 4, seed=9)
    # sample 1 takes the label chain of sample 4 and gets a new feature
    bank.move_samples(torch.tensor([1]), torch.tensor([[4], [4]]), feats[1:2], new_feat)
    feats = feats.clone()
    feats[1] = new_feat[0]
    sums, sizes = bank.sums.clone(), bank.sizes.clone()
    # kept for the touched ids only, equal to a recompute
    assert torch.equal(bank.norms, sums.norm(dim=-1))
    bank.recompute(feats)
    torch.testing.assert_close(sums, bank.sums, atol=1e-5, rtol=0)
    assert torch.equal(sizes, bank.sizes)
    bank.check_invariant()


def test_allocate_returns_lowest_free_ids():
    bank, _ = _bank([[0, 0, 2, 2, 2]])
    assert bank.allocate(0, 2).tolist() == [1, 3]
    with pytest.raises(InvariantError):
        bank.allocate(0, 4)


def test_reset_singletons_and_state_dict():
    bank = HierarchicalLabelBank(5, 3, num_levels=2)
    feats = unit_rows(5, 3)
    bank.reset_singletons(feats)
    assert bank.labels.tolist() == [list(range(5))] * 2
    assert bank.sizes.eq(1).all()
    other = HierarchicalLabelBank(5, 3, num_levels=2)
    other.load_state_dict(bank.state_dict())
    assert torch.equal(other.labels, bank.labels) and torch.equal(other.sums, bank.sums)
    with pytest.raises(ValueError, match="mismatch"):
        HierarchicalLabelBank(5, 3, num_levels=3).load_state_dict(bank.state_dict())
    with pytest.raises(ValueError):
        HierarchicalLabelBank(5, 3, num_levels=0)


def test_merge_clusters_moves_statistics_and_norms():
    bank, feats = _bank([[0, 0, 2, 3, 3, 5], [0, 0, 0, 3, 3, 3]])
    root = torch.arange(6)
    root[2] = 0  # level-0 cluster 2 joins cluster 0
    bank.merge_clusters(0, torch.tensor([2]), root)
    assert bank.labels[0].tolist() == [0, 0, 0, 3, 3, 5] and bank.sizes[0].tolist() == [
        3,
        0,
        0,
        2,
        0,
        1,
    ]
    torch.testing.assert_close(bank.sums[0, 0], feats[:3].sum(0))
    assert bank.sums[0, 2].abs().sum() == 0 and torch.equal(bank.norms, bank.sums.norm(dim=-1))
    bank.check_invariant()

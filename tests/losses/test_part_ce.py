"""INCLR part loss (losses/part_ce.py): part centres and the cross entropy by hand, no-op without parts."""

from __future__ import annotations

import math

import pytest
import torch

from streamlabel.losses import LossBatch
from streamlabel.losses.part_ce import PartCELoss, part_centres

E1, E2 = [1.0, 0.0], [0.0, 1.0]


class StubPolicy:
    """Part bank [3, 2, 2]: samples 0 and 2 = (e1, e1) in cluster 0, sample 1 = (e2, e2) in cluster 1."""

    def __init__(self, with_parts: bool = True) -> None:
        self.bank = torch.tensor([[E1, E1], [E2, E2], [E1, E1]]) if with_parts else None
        self._labels = torch.tensor([0, 1, 0])

    def labels(self) -> torch.Tensor:
        return self._labels.clone()

    def part_features(self):
        return self.bank


def test_part_centres_by_hand() -> None:
    bank = torch.tensor([[[3.0, 0.0]], [[0.0, 2.0]], [[1.0, 1.0]], [[5.0, 5.0]]])  # [4, 1, 2]
    labels = torch.tensor([0, 0, 1, -1])
    # cluster 0: (3, 0) + (0, 2) = (3, 2) -> /sqrt(13); cluster 1: (1, 1) -> /sqrt(2); the outlier is ignored
    expected = torch.tensor([[[3.0, 2.0]], [[1.0, 1.0]]]) / torch.tensor([13.0, 2.0]).sqrt().view(2, 1, 1)
    torch.testing.assert_close(part_centres(bank, labels, 2), expected)


def _batch(policy, parts: torch.Tensor) -> LossBatch:
    feats = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # two target rows (values unused by the term)
    return LossBatch(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), feats, torch.tensor([0, 1]),
                     torch.tensor([0, -1]), outputs={"parts": parts}, num_source=1, policy=policy)


def test_part_cross_entropy_by_hand() -> None:
    # rows: a source image, then target 0 (label 0) with parts (e1, e2), then a target outlier
    parts = torch.tensor([[E2, E2], [E1, E2], [E2, E1]], requires_grad=True)
    loss = PartCELoss(beta=math.log(3.0))(_batch(StubPolicy(), parts))
    # centres: cluster 0 (e1, e1), cluster 1 (e2, e2); beta = ln 3 gives exp(beta * cos) = 3 on a match:
    # part 0 (e1): p(0) = 3 / (3 + 1) = 3/4; part 1 (e2): p(0) = 1 / (1 + 3) = 1/4
    # L = -(1/2) (ln 3/4 + ln 1/4) = (1/2) ln(16/3) = 0.83698
    assert float(loss.detach()) == pytest.approx(0.5 * math.log(16 / 3), abs=1e-6)
    loss.backward()
    assert parts.grad[1].abs().sum() > 0
    assert parts.grad[0].abs().sum() == 0 and parts.grad[2].abs().sum() == 0  # source row and outlier


def test_zero_without_parts_or_policy() -> None:
    parts = torch.tensor([[E2, E2], [E1, E2], [E2, E1]])
    term = PartCELoss()
    assert float(term(_batch(StubPolicy(with_parts=False), parts))) == 0.0
    assert float(term(_batch(None, parts))) == 0.0
    with pytest.raises(ValueError, match="num_parts"):
        term(_batch(StubPolicy(), torch.zeros(3, 3, 2)))
    with pytest.raises(ValueError):
        PartCELoss(beta=0.0)

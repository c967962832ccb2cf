"""Instance margin spreading loss (DCML Eq. 7-8) by hand on three 2-D points, and degenerate batches."""

from __future__ import annotations

import math

import pytest
import torch

from streamlabel.losses import LossBatch, LossTerms
from streamlabel.losses.ims import InstanceMarginSpreadingLoss, instance_margin_spreading

# a = (0, 0), b = (1, 0), c = (0, 2): d_ab = 1, d_ac = 2, d_bc = sqrt(5) = 2.2361
POINTS = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])


def _batch(target: torch.Tensor, labels: torch.Tensor) -> LossBatch:
    return LossBatch(target.new_zeros(0, target.shape[1]), torch.zeros(0, dtype=torch.long), target,
                     torch.arange(target.shape[0]), labels)


def test_ims_by_hand() -> None:
    # m = 0.1: L(x) = log(1 + sum_{i != x} exp(0.1 - d))
    # a: log(1 + e^-0.9 + e^-1.9)          = log(1 + 0.406570 + 0.149569) = log(1.556138) = 0.442207
    # b: log(1 + e^-0.9 + e^(0.1 - sqrt5)) = log(1 + 0.406570 + 0.118118) = log(1.524688) = 0.421790
    # c: log(1 + e^-1.9 + e^(0.1 - sqrt5)) = log(1 + 0.149569 + 0.118118) = log(1.267687) = 0.237194
    per = instance_margin_spreading(POINTS, margin=0.1)
    torch.testing.assert_close(per, torch.tensor([0.442207, 0.421790, 0.237194]), atol=1e-5, rtol=0)
    loss = InstanceMarginSpreadingLoss(instances="all")(_batch(POINTS, torch.tensor([0, 0, 1])))
    assert loss.item() == pytest.approx((0.442207 + 0.421790 + 0.237194) / 3, abs=1e-5)  # 0.367064
    # Eq. 8 as a softmax: -log(e^{-d_aa} / (e^{-d_aa} + sum_i e^{m - d_ai})) with d_aa = 0
    softmax_form = -math.log(1.0 / (1.0 + math.exp(0.1 - 1) + math.exp(0.1 - 2)))
    assert per[0].item() == pytest.approx(softmax_form, abs=1e-6)


def test_only_credible_instances_by_default() -> None:
    # b is not credible (-1): a and c see only each other: log(1 + e^(0.1 - 2)) = log(1.149569) = 0.139387
    loss = InstanceMarginSpreadingLoss()(_batch(POINTS, torch.tensor([0, -1, 1])))
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1.9)), abs=1e-6)
    # labels play no other role: same pseudo label or not, every pair is pushed apart
    same = InstanceMarginSpreadingLoss()(_batch(POINTS, torch.tensor([4, 4, 4])))
    assert same.item() == pytest.approx(0.367064, abs=1e-5)


def test_gradient_spreads_the_instances() -> None:
    x = POINTS.clone().requires_grad_(True)
    InstanceMarginSpreadingLoss(instances="all")(_batch(x, torch.zeros(3, dtype=torch.long))).backward()
    # descent (-grad) moves a away from b (towards -x) and c away from a (towards +y)
    assert x.grad[0, 0] > 0 and x.grad[2, 1] < 0
    # a larger margin gives a larger loss: the hinge form's lower bound on the distances
    assert instance_margin_spreading(POINTS, 0.5).sum() > instance_margin_spreading(POINTS, 0.1).sum()


@pytest.mark.parametrize("labels", [torch.tensor([-1, -1, -1]), torch.tensor([-1, 0, -1])])
def test_degenerate_batches_give_a_zero_with_graph(labels: torch.Tensor) -> None:
    x = POINTS.clone().requires_grad_(True)
    loss = InstanceMarginSpreadingLoss()(_batch(x, labels))  # no or one credible instance
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_single_empty_and_duplicate_rows_have_no_nan() -> None:
    one = POINTS[:1].clone().requires_grad_(True)
    assert InstanceMarginSpreadingLoss()(_batch(one, torch.tensor([0]))).item() == 0.0
    empty = torch.zeros(0, 2, requires_grad=True)
    assert InstanceMarginSpreadingLoss()(_batch(empty, torch.zeros(0, dtype=torch.long))).item() == 0.0
    dup = torch.tensor([[1.0, 0.0], [1.0, 0.0]], requires_grad=True)
    loss = InstanceMarginSpreadingLoss()(_batch(dup, torch.tensor([0, 0])))
    loss.backward()
    assert loss.item() == pytest.approx(math.log(1 + math.exp(0.1)))  # d = 0: log(1 + e^0.1)
    assert torch.isfinite(dup.grad).all()


def test_paper_weight_in_config_and_errors() -> None:
    terms = LossTerms({"ims": {"weight": 0.01, "margin": 0.1}})
    value = terms(_batch(POINTS, torch.tensor([0, 0, 1])))["ims"]
    assert value.item() == pytest.approx(0.01 * 0.367064, abs=1e-7)
    with pytest.raises(KeyError, match="instances"):
        LossTerms({"ims": {"instance": "all"}})
    with pytest.raises(KeyError, match="ims"):
        LossTerms({"imss": {}})
    with pytest.raises(ValueError, match="instances"):
        InstanceMarginSpreadingLoss(instances="labelled")
    with pytest.raises(ValueError, match="margin"):
        InstanceMarginSpreadingLoss(margin=-0.1)

"""INCLR inaccuracy-weighted loss (losses/inaccuracy.py): KL and exp(-I) by hand, the EMA teacher by hand,
teacher state through checkpoints, nothing before adaptation, bad parameters."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from streamlabel.banks.hybrid_memory import memory_entries
from streamlabel.losses import LossBatch, LossTerms
from streamlabel.losses.inaccuracy import InaccuracyKLLoss, centre_log_probs, ema_update_, inaccuracy

LN2 = math.log(2.0)


class Tiny(nn.Module):
    """Embedding = W x (no bias); train mode returns the dict of the model contract."""

    def __init__(self, weight: list[list[float]]) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3, bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor(weight))
        self.bn = nn.BatchNorm1d(3)

    def forward(self, x: torch.Tensor):
        out = self.lin(x)
        return {"embedding": out} if self.training else out


class StubPolicy:
    """Bank = rows e1, e2, e3 and one outlier row; labels 0, 1, 2, -1 (centres = e1, e2, e3)."""

    def __init__(self) -> None:
        self.bank = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0.6, 0.8, 0]])
        self._labels = torch.tensor([0, 1, 2, -1])

    def labels(self) -> torch.Tensor:
        return self._labels.clone()

    def memory_entries(self):
        return memory_entries(self.bank, self._labels)


def test_kl_and_weight_by_hand() -> None:
    centres = torch.eye(3)
    student = torch.tensor([[1.0, 0, 0], [1.0, 0, 0]])
    teacher = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    # beta = ln 2 makes exp(beta * cos) = 2 on the matching centre, 1 elsewhere:
    # p_1 = p_2 = (2, 1, 1) / 4 = (.5, .25, .25); q_1 = p_1, q_2 = (.25, .5, .25)
    p = centre_log_probs(student, centres, LN2)
    q = centre_log_probs(teacher, centres, LN2)
    torch.testing.assert_close(p.exp(), torch.tensor([[0.5, 0.25, 0.25], [0.5, 0.25, 0.25]]))
    # I_1 = 0; I_2 = .25 ln(.25/.5) + .5 ln(.5/.25) + .25 ln 1 = .25 ln 2 = 0.17329
    ina = inaccuracy(q, p)
    torch.testing.assert_close(ina, torch.tensor([0.0, 0.25 * LN2]))
    # w = exp(-I): 1 and 2^-0.25 = 0.84090
    torch.testing.assert_close(torch.exp(-ina), torch.tensor([1.0, 0.840896]), atol=1e-6, rtol=0)


def _batch(student: Tiny, policy: StubPolicy | None) -> LossBatch:
    images = torch.tensor([[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]])  # targets 0, 1 and the outlier 3
    feats = nn.functional.normalize(student(images)["embedding"], dim=1)
    return LossBatch(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), feats, torch.tensor([0, 1, 3]),
                     torch.tensor([0, 1, -1]), images=images, num_source=0, policy=policy, model=student)


def test_weighted_loss_by_hand_through_the_teacher() -> None:
    # student maps both target images to e1; the teacher maps the second one to e2
    student = Tiny([[1.0, 0, 1.0], [0, 0, 0], [0, 0, 0]]).train()
    term = InaccuracyKLLoss(beta=LN2)
    teacher = term.ensure_teacher(student)
    with torch.no_grad():
        teacher.lin.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 0, 1.0], [0, 0, 0]]))
    loss = term(_batch(student, StubPolicy()))
    # samples with labels 0 and 1 (the outlier is left out): p_1[0] = .5, p_2[1] = .25, w = (1, 2^-.25)
    # L = -(1/2) (1 * ln .5 + 2^-.25 * ln .25) = (ln 2 / 2) (1 + 2 * 2^-.25) = 0.92939
    expected = 0.5 * LN2 * (1 + 2 * 2 ** -0.25)
    assert float(loss.detach()) == pytest.approx(expected, abs=1e-6)
    assert term.last["inaccuracy"] == pytest.approx(0.125 * LN2, abs=1e-6)
    loss.backward()
    assert student.lin.weight.grad is not None and student.lin.weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())


def test_no_teacher_and_zero_loss_before_adaptation() -> None:
    student = Tiny([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]).train()
    term = InaccuracyKLLoss()
    assert term(_batch(student, None)).detach().item() == 0.0
    assert term.teacher is None
    term.after_optimizer_step(student)  # nothing to update yet
    assert term.teacher is None


def test_ema_update_by_hand() -> None:
    student = Tiny([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    teacher = Tiny([[0.0, 0, 0], [0, 0, 0], [0, 0, 0]])
    student.bn.running_mean.fill_(3.0)
    ema_update_(teacher, student, 0.9)
    # theta_t = 0.9 * 0 + 0.1 * 1 = 0.1 on the diagonal; buffers are copied
    torch.testing.assert_close(teacher.lin.weight, 0.1 * torch.eye(3))
    torch.testing.assert_close(teacher.bn.running_mean, torch.full((3,), 3.0))
    ema_update_(teacher, student, 0.9)
    # 0.9 * 0.1 + 0.1 * 1 = 0.19
    torch.testing.assert_close(teacher.lin.weight, 0.19 * torch.eye(3))
    term = InaccuracyKLLoss(momentum=0.5)
    t = term.ensure_teacher(student)  # a copy of the student at first use
    torch.testing.assert_close(t.lin.weight, torch.eye(3))
    with torch.no_grad():
        student.lin.weight.mul_(3.0)
    term.after_optimizer_step(student)
    # 0.5 * 1 + 0.5 * 3 = 2
    torch.testing.assert_close(t.lin.weight, 2.0 * torch.eye(3))


def test_teacher_weights_round_trip_through_checkpoints() -> None:
    student = Tiny([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    terms = LossTerms({"inaccuracy_kl": {"weight": 0.5, "momentum": 0.9}})
    teacher = terms.terms["inaccuracy_kl"].ensure_teacher(student)
    with torch.no_grad():
        teacher.lin.weight.fill_(0.25)
    buffer = io.BytesIO()
    torch.save(terms.state_dict(), buffer)
    buffer.seek(0)
    fresh = LossTerms({"inaccuracy_kl": {"weight": 0.5, "momentum": 0.9}})
    fresh.load_state_dict(torch.load(buffer, weights_only=False))
    term = fresh.terms["inaccuracy_kl"]
    assert term.teacher is None  # made at the next call, from the student, then given the saved weights
    restored = term.ensure_teacher(student)
    torch.testing.assert_close(restored.lin.weight, torch.full((3, 3), 0.25))
    torch.testing.assert_close(student.lin.weight, torch.eye(3))  # the student is untouched
    # a state saved before any teacher existed loads as "no teacher"
    empty = LossTerms({"inaccuracy_kl": {}})
    fresh.load_state_dict(empty.state_dict())
    assert term.teacher is None and term.ensure_teacher(student).lin.weight.equal(torch.eye(3))


@pytest.mark.parametrize("bad", [{"momentum": 1.0}, {"momentum": -0.1}, {"beta": 0.0}])
def test_bad_parameters(bad: dict) -> None:
    with pytest.raises(ValueError):
        InaccuracyKLLoss(**bad)

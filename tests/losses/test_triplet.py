"""Batch-hard triplet loss by hand on four 2-D points, outliers, domains and degenerate batches."""

from __future__ import annotations

import math

import pytest
import torch

from streamlabel.losses import LossBatch, LossTerms
from streamlabel.losses.triplet import TripletLoss, batch_hard_triplet

# a = (0, 0), b = (1, 0), c = (0, 2), d = (3, 0)
# Euclidean: ab = 1, ac = 2, ad = 3, bc = sqrt(5) = 2.2361, bd = 2, cd = sqrt(13) = 3.6056
POINTS = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])


def _batch(target: torch.Tensor, labels: torch.Tensor, source=None, source_labels=None) -> LossBatch:
    source = target.new_zeros(0, target.shape[1]) if source is None else source
    source_labels = torch.zeros(0, dtype=torch.long) if source_labels is None else source_labels
    return LossBatch(source, source_labels, target, torch.arange(target.shape[0]), labels)


def test_batch_hard_by_hand() -> None:
    labels = torch.tensor([0, 0, 1, 1])
    # a: hardest positive b = 1, hardest negative min(c 2, d 3) = 2 -> [1 - 2 + 0.3]+ = 0
    # b: positive a = 1, negatives min(sqrt5, 2) = 2            -> 0
    # c: positive d = sqrt13, negatives min(a 2, b sqrt5) = 2    -> sqrt13 - 2 + 0.3 = 1.9056
    # d: positive c = sqrt13, negatives min(a 3, b 2) = 2        -> 1.9056
    per_anchor = batch_hard_triplet(POINTS, labels, margin=0.3)
    hard = math.sqrt(13) - 2 + 0.3
    torch.testing.assert_close(per_anchor, torch.tensor([0.0, 0.0, hard, hard]))
    loss = TripletLoss()(_batch(POINTS, labels))
    assert loss.item() == pytest.approx(2 * hard / 4)  # mean over the 4 anchors = 0.9528
    # DCML Eq. 10 squares the distances: c, d -> 13 - 4 + 0.3 = 9.3; a, b -> 1 - 4 + 0.3 < 0 -> 0
    sq = TripletLoss(distance="sqeuclidean")(_batch(POINTS, labels))
    assert sq.item() == pytest.approx((9.3 + 9.3) / 4)


def test_outliers_are_negatives_never_anchors() -> None:
    # c is an outlier, d alone in cluster 1 (no positive): only a and b are anchors
    # margin 1.5: a -> 1 - min(c 2, d 3) + 1.5 = 0.5; b -> 1 - min(c sqrt5, d 2) + 1.5 = 0.5
    labels = torch.tensor([0, 0, -1, 1])
    torch.testing.assert_close(batch_hard_triplet(POINTS, labels, margin=1.5), torch.tensor([0.5, 0.5]))
    # without the outlier c as a negative, a's hardest negative would be d (3): 1 - 3 + 1.5 = -0.5 -> 0
    # with it: c at 2 is the hardest negative of a -> the outlier counts
    assert TripletLoss(margin=1.5)(_batch(POINTS, labels)).item() == pytest.approx(0.5)


def test_domains() -> None:
    src_labels = torch.tensor([0, 0, 1, 1])
    target_all_outliers = torch.full((4,), -1)
    hard = math.sqrt(13) - 2 + 0.3
    batch = _batch(POINTS * 0.5, target_all_outliers, source=POINTS, source_labels=src_labels)
    assert TripletLoss(domains="target")(batch).item() == 0.0
    assert TripletLoss(domains="source")(batch).item() == pytest.approx(hard / 2)
    # both: anchors of both domains pooled; target has none here -> same as source
    assert TripletLoss(domains="both")(batch).item() == pytest.approx(hard / 2)
    both = _batch(POINTS, torch.tensor([0, 0, 1, 1]), source=POINTS, source_labels=src_labels)
    assert TripletLoss(domains="both")(both).item() == pytest.approx(hard / 2)  # (4 anchors + 4) / 8


@pytest.mark.parametrize("labels", [
    torch.tensor([-1, -1, -1, -1]),  # all outliers
    torch.tensor([0, 1, 2, 3]),      # no positives
    torch.tensor([5, 5, 5, 5]),      # no negatives
])
def test_degenerate_batches_give_a_zero_with_graph(labels: torch.Tensor) -> None:
    x = POINTS.clone().requires_grad_(True)
    loss = TripletLoss()(_batch(x, labels))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_single_sample_empty_and_duplicates_have_no_nan() -> None:
    one = POINTS[:1].clone().requires_grad_(True)
    loss = TripletLoss()(_batch(one, torch.tensor([0])))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(one.grad).all()
    empty = torch.zeros(0, 2, requires_grad=True)
    assert TripletLoss()(_batch(empty, torch.zeros(0, dtype=torch.long))).item() == 0.0
    # identical positives: distance 0, the clamped sqrt keeps the gradient finite
    dup = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    loss = TripletLoss()(_batch(dup, torch.tensor([0, 0, 1])))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(dup.grad).all()


def test_gradient_pulls_positives_and_pushes_negatives() -> None:
    x = POINTS.clone().requires_grad_(True)
    TripletLoss()(_batch(x, torch.tensor([0, 0, 1, 1]))).backward()
    # c's positive d is far along (+x, -y): descent (-grad) moves c towards d, i.e. +x
    assert x.grad[2, 0] < 0


def test_config_section_and_errors() -> None:
    terms = LossTerms({"triplet": {"weight": 2.0, "margin": 0.3}})
    value = terms(_batch(POINTS, torch.tensor([0, 0, 1, 1])))["triplet"]
    assert value.item() == pytest.approx(2.0 * 2 * (math.sqrt(13) - 2 + 0.3) / 4)
    with pytest.raises(KeyError, match="margin"):
        LossTerms({"triplet": {"margn": 0.3}})
    with pytest.raises(ValueError, match="domains"):
        TripletLoss(domains="all")
    with pytest.raises(ValueError, match="distance"):
        TripletLoss(distance="cosine")
    with pytest.raises(ValueError, match="margin"):
        TripletLoss(margin=-1.0)

"""Label propagation (methods/label_propagation.py): Eq. 3 affinity by hand, normalisation, Eq.
2."""

from __future__ import annotations

import math

import pytest
import torch

from streamlabel.methods.label_propagation import (
    local_adjacency,
    mutual_knn_affinity,
    normalize_affinity,
    propagate,
    propagate_iterative,
)

pytestmark = pytest.mark.usefixtures("single_thread")


def _circle(degrees: list[float]) -> torch.Tensor:
    return torch.tensor([[math.cos(math.radians(a)), math.sin(math.radians(a))] for a in degrees])


# Five unit vectors on the circle at angles 0, 10, 25, 90, 100 degrees. Their 2-NN lists (self
# excluded):
#   p0: p1 (10 deg), p2 (25 deg)       -> [1, 2]
#   p1: p0 (10 deg), p2 (15 deg)       -> [0, 2]
#   p2: p1 (15 deg), p0 (25 deg)       -> [1, 0]
#   p3: p4 (10 deg), p2 (65 deg)       -> [4, 2]
#   p4: p3 (10 deg), p2 (75 deg)       -> [3, 2]
# Mutual pairs: 0-1, 0-2, 1-2 (a triangle) and 3-4. p3 -> p2 and p4 -> p2 are one-way (p2 lists
# only p0, p1). Eq. 3: S_hat[i, j] = cos(angle_i - angle_j) for the mutual pairs, 0 elsewhere (and
# on the diagonal):
#   S_hat[0,1] = cos 10, S_hat[0,2] = cos 25, S_hat[1,2] = cos 15, S_hat[3,4] = cos 10.
ANGLES = [0.0, 10.0, 25.0, 90.0, 100.0]
NEIGHBORS = [[1, 2], [0, 2], [1, 0], [4, 2], [3, 2]]


def _cos(a: float) -> float:
    return math.cos(math.radians(a))


def _expected_affinity() -> torch.Tensor:
    s = torch.zeros(5, 5)
    for (i, j), angle in {(0, 1): 10.0, (0, 2): 25.0, (1, 2): 15.0, (3, 4): 10.0}.items():
        s[i, j] = s[j, i] = _cos(angle)
    return s


def test_hand_neighbour_lists_are_the_true_2nn():
    centres = _circle(ANGLES)
    sims = centres @ centres.t()
    sims.fill_diagonal_(float("-inf"))
    assert torch.topk(sims, 2, dim=1).indices.tolist() == NEIGHBORS


def test_mutual_knn_affinity_by_hand():
    # global ids need not be 0..n-1: use 10, 11, ... and shuffle the block order to exercise the
    # lookup
    order = [3, 0, 4, 1, 2]
    ids = torch.tensor([[10 + i for i in order]])
    nbrs = torch.tensor([[[10 + j for j in NEIGHBORS[i]] for i in order]])
    centres = _circle(ANGLES)[order].unsqueeze(0)
    affinity = mutual_knn_affinity(centres, ids, nbrs)[0]
    expected = _expected_affinity()[order][:, order]
    torch.testing.assert_close(affinity, expected)
    adjacency = local_adjacency(ids, nbrs)[0]
    # one-way edge p3 -> p2 is in the adjacency but not in the mutual affinity
    assert bool(adjacency[0, 4]) and not bool(adjacency[4, 0])


def test_padding_and_outside_neighbours_ignored():
    # block of 3 slots, last is padding; neighbour 99 is outside the block; -1 is an empty slot
    ids = torch.tensor([[5, 7, -1]])
    nbrs = torch.tensor([[[7, 99], [5, -1], [5, 7]]])
    centres = torch.nn.functional.normalize(
        torch.tensor([[[1.0, 0.0], [1.0, 1.0], [1.0, 0.0]]]), dim=-1
    )
    affinity = mutual_knn_affinity(centres, ids, nbrs)[0]
    c = 1 / math.sqrt(2.0)
    torch.testing.assert_close(
        affinity, torch.tensor([[0.0, c, 0.0], [c, 0.0, 0.0], [0.0, 0.0, 0.0]])
    )


def test_negative_cosine_clipped():
    ids = torch.tensor([[0, 1]])
    nbrs = torch.tensor([[[1], [0]]])
    centres = torch.tensor([[[1.0, 0.0], [-1.0, 0.0]]])
    assert mutual_knn_affinity(centres, ids, nbrs).abs().sum() == 0


def test_symmetric_normalisation_by_hand():
    s_hat = _expected_affinity()
    # degrees: d0 = cos10 + cos25, d1 = cos10 + cos15, d2 = cos25 + cos15, d3 = d4 = cos10
    d = [_cos(10) + _cos(25), _cos(10) + _cos(15), _cos(25) + _cos(15), _cos(10), _cos(10)]
    s = normalize_affinity(s_hat.unsqueeze(0).double())[0]
    for i in range(5):
        for j in range(5):
            assert float(s[i, j]) == pytest.approx(
                float(s_hat[i, j]) / math.sqrt(d[i] * d[j]), abs=1e-6
            )
    # the 3-4 pair: S = [[0, 1], [1, 0]]
    assert float(s[3, 4]) == pytest.approx(1.0)
    # an isolated unit keeps a zero row (no division by zero)
    iso = torch.zeros(1, 3, 3)
    iso[0, 0, 1] = iso[0, 1, 0] = 0.5
    out = normalize_affinity(iso)
    assert torch.isfinite(out).all() and out[0, 2].abs().sum() == 0


def test_closed_form_two_units_by_hand():
    # S = [[0, 1], [1, 0]]: (I - a S)^-1 = 1 / (1 - a^2) [[1, a], [a, 1]]
    a = 0.9
    s = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]], dtype=torch.float64)
    p = propagate(s, torch.eye(2, dtype=torch.float64).unsqueeze(0), a)[0]
    expected = torch.tensor([[1.0, a], [a, 1.0]], dtype=torch.float64) / (1 - a * a)
    torch.testing.assert_close(p, expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.9])
def test_closed_form_equals_iterative(seed, alpha):
    g = torch.Generator().manual_seed(seed)
    n, blocks, classes = 6, 4, 3
    raw = torch.rand(blocks, n, n, generator=g, dtype=torch.float64)
    raw = raw * (torch.rand(blocks, n, n, generator=g, dtype=torch.float64) < 0.5)
    s_hat = torch.triu(raw, 1)
    s_hat = s_hat + s_hat.transpose(1, 2)
    s = normalize_affinity(s_hat)
    y0 = torch.rand(blocks, n, classes, generator=g, dtype=torch.float64)
    closed = propagate(s, y0, alpha)
    iterative = propagate_iterative(s, y0, alpha, steps=5000, tol=1e-13)
    torch.testing.assert_close(closed, iterative, atol=1e-9, rtol=1e-9)
    # the closed form solves the fixed point P = alpha S P + Y0
    torch.testing.assert_close(alpha * s @ closed + y0, closed)


def test_closed_form_equals_iterative_on_hand_graph():
    s = normalize_affinity(_expected_affinity().unsqueeze(0).double())
    y0 = torch.eye(5, dtype=torch.float64).unsqueeze(0)
    torch.testing.assert_close(
        propagate(s, y0, 0.95),
        propagate_iterative(s, y0, 0.95, steps=20000, tol=1e-13),
        atol=1e-8,
        rtol=1e-8,
    )


@pytest.mark.parametrize("alpha", [1.0, -0.1, 1.5])
def test_alpha_out_of_range(alpha):
    with pytest.raises(ValueError, match="alpha"):
        propagate(torch.zeros(1, 2, 2), torch.eye(2).unsqueeze(0), alpha)

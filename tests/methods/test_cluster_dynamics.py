"""Split and merge (methods/cluster_dynamics.py) decided by hand on tiny examples."""

from __future__ import annotations

import math

import pytest
import torch

from streamlabel.methods.cluster_dynamics import (
    connected_components,
    merge_scores,
    padded_groups,
    split_blocks,
)
from tests.helpers.features import circle_points, knn_lists

pytestmark = pytest.mark.usefixtures("single_thread")

ALPHA = 0.99
SIGMA = 0.25


def _split(angles, k, weights, *, max_anchors=8, method="density_peak", dim=2):
    centres = circle_points(angles, dim)
    ids = torch.arange(len(angles)).unsqueeze(0)
    nbrs = knn_lists(centres, k).unsqueeze(0)
    return split_blocks(ids, centres.unsqueeze(0), nbrs, torch.tensor([weights]),
                        alpha=ALPHA, max_anchors=max_anchors, anchor_method=method)[0]


# ------------------------------------------------------------------------------------------ split
def test_two_blobs_split_at_their_peaks():
    # blob A at 0/4/8 degrees (peak: unit 1, weight 4), blob B at 90/94/98 (peak: unit 4, weight
    # 3); k = 2: two mutual-kNN triangles, no edge between them -> two peaks -> two anchors -> two
    # pieces
    piece = _split([0, 4, 8, 90, 94, 98], 2, [1, 4, 1, 1, 3, 1])
    # anchors in rho*delta order: unit 1 is anchor 0, unit 4 is anchor 1
    assert piece.tolist() == [0, 0, 0, 1, 1, 1]


def test_two_blobs_split_in_block_order():
    # same blobs interleaved in the block: the pieces follow the blobs, not the slots
    piece = _split([0, 90, 4, 94, 8, 98], 2, [1, 1, 4, 3, 1, 1])
    assert (
        piece[0] == piece[2] == piece[4]
        and piece[1] == piece[3] == piece[5]
        and piece[0] != piece[1]
    )


def test_tight_blob_does_not_split():
    # five units within 8 degrees, k = 4: a clique, one density peak, one piece
    piece = _split([0, 2, 4, 6, 8], 4, [1, 1, 2, 1, 1])
    assert piece.tolist() == [0] * 5


def test_isolated_unit_becomes_its_own_piece():
    # units 0-2 form a mutual triangle; unit 3 (180 degrees away) lists units of the triangle, but
    # no triangle unit lists it back: it has no mutual neighbour (zero affinity row)
    angles, weights = [0, 4, 8, 180], [1, 3, 1, 1]
    piece = _split(angles, 2, weights)
    assert piece[:3].tolist() == [piece[0]] * 3
    assert piece[3] != piece[0]
    # with one anchor (the blob peak), no label reaches unit 3: it gets piece max_anchors + its
    # slot
    piece = _split(angles, 2, weights, max_anchors=1)
    assert piece.tolist() == [0, 0, 0, 1 + 3]


def test_split_padding_and_batched_blocks():
    # block 0: the two blobs; block 1: a tight pair and one padding slot
    centres = torch.zeros(2, 6, 2)
    centres[0] = circle_points([0, 4, 8, 90, 94, 98])
    centres[1, :2] = circle_points([0, 3])
    ids = torch.tensor([[0, 1, 2, 3, 4, 5], [6, 7, -1, -1, -1, -1]])
    nbrs = torch.full((2, 6, 2), -1)
    nbrs[0] = knn_lists(centres[0], 2)
    nbrs[1, 0, 0], nbrs[1, 1, 0] = 7, 6
    weights = torch.tensor([[1, 4, 1, 1, 3, 1], [1, 2, 0, 0, 0, 0]])
    piece = split_blocks(ids, centres, nbrs, weights, alpha=ALPHA, max_anchors=8)
    assert piece[0].tolist() == [0, 0, 0, 1, 1, 1]
    assert piece[1].tolist() == [0, 0, -1, -1, -1, -1]


# ------------------------------------------------------------------------------------------ merge
def test_merge_mutual_pair_by_hand():
    # two units, each other's only mutual neighbour:
    # S_hat = [[0, c], [c, 0]] -> S = [[0, 1], [1, 0]]
    # P* = (I - a S)^-1 = 1 / (1 - a^2) [[1, a], [a, 1]]; row 0 normalised: p_01 = a / (1 + a)
    ids = torch.tensor([[0, 1]])
    nbrs = torch.tensor([[[1], [0]]])
    centres = circle_points([0, 30]).unsqueeze(0)  # the cosine (0.87) cancels in S
    p_row = merge_scores(ids, centres, nbrs, alpha=ALPHA, norm="row")[0]
    assert float(p_row[0]) == 0.0
    assert float(p_row[1]) == pytest.approx(ALPHA / (1 + ALPHA), abs=1e-6)  # 0.4975
    assert float(p_row[1]) > SIGMA  # merged
    # "self": P_01 / P_00 = a; "sym": P_01 / sqrt(P_00 P_11) = a
    assert float(
        merge_scores(ids, centres, nbrs, alpha=ALPHA, norm="self")[0, 1]
    ) == pytest.approx(ALPHA)
    assert float(merge_scores(ids, centres, nbrs, alpha=ALPHA, norm="sym")[0, 1]) == pytest.approx(
        ALPHA
    )


def _star(leaves: int, angle: float = 20.0):
    # centre unit e0, leaf i at `angle` from e0 towards e_i: every centre-leaf cosine is
    # cos(angle); leaves list only the centre, the centre lists every leaf -> a star of mutual
    # pairs
    dim = leaves + 1
    centres = torch.zeros(1, dim, dim)
    centres[0, 0, 0] = 1.0
    for i in range(1, dim):
        centres[0, i, 0] = math.cos(math.radians(angle))
        centres[0, i, i] = math.sin(math.radians(angle))
    ids = torch.arange(dim).unsqueeze(0)
    nbrs = torch.full((1, dim, leaves), -1)
    nbrs[0, 0] = torch.arange(1, dim)
    nbrs[0, 1:, 0] = 0
    return ids, centres, nbrs


@pytest.mark.parametrize("leaves, merged", [(2, True), (3, False)])
def test_merge_star_by_hand(leaves, merged):
    # degrees: centre L*c, leaf c -> S[0, i] = c / sqrt(L c * c) = 1 / sqrt(L);
    # write s = a / sqrt(L).
    # Row 0 of (I - a S)^-1 solves x0 - s * sum_i x_i = 1, x_i - s x0 = 0
    # -> x = [1, s, ..., s] / (1 - L s^2)
    # row-normalised: p_0i = s / (1 + L s).
    #   L = 2: s = 0.7000, p = 0.2917 > 0.25 -> merged
    #   L = 3: s = 0.5716, p = 0.2105 < 0.25 -> not merged (a unit with many neighbours)
    ids, centres, nbrs = _star(leaves)
    s = ALPHA / math.sqrt(leaves)
    expected = s / (1 + leaves * s)
    p = merge_scores(ids, centres, nbrs, alpha=ALPHA, norm="row")[0]
    for i in range(1, leaves + 1):
        assert float(p[i]) == pytest.approx(expected, abs=1e-6)
    assert bool((p[1:] > SIGMA).all()) is merged
    assert float(p.sum()) == pytest.approx(1 - 1 / (1 + leaves * s), abs=1e-6)  # slot 0 scored 0


def test_merge_padding_scores_zero_and_bad_norm():
    ids = torch.tensor([[0, 1, -1]])
    nbrs = torch.tensor([[[1], [0], [-1]]])
    centres = torch.zeros(1, 3, 2)
    centres[0, :2] = circle_points([0, 10])
    p = merge_scores(ids, centres, nbrs, alpha=ALPHA)
    assert float(p[0, 2]) == 0.0 and torch.isfinite(p).all()
    with pytest.raises(ValueError, match="normalisation"):
        merge_scores(ids, centres, nbrs, norm="l1")


def test_merge_unit_without_mutual_neighbours_scores_zero():
    ids = torch.tensor([[0, 1]])
    nbrs = torch.tensor([[[1], [-1]]])  # one-way edge only
    centres = circle_points([0, 10]).unsqueeze(0)
    assert merge_scores(ids, centres, nbrs, alpha=ALPHA).abs().sum() == 0


# ----------------------------------------------------------------------------- graph helpers
def test_connected_components_hand_graph():
    # nodes 0..8; edges 0-1, 3-2, 5-6, 7-6; 4 and 8 isolated
    a = torch.tensor([0, 3, 5, 7])
    b = torch.tensor([1, 2, 6, 6])
    assert connected_components(a, b, 9).tolist() == [0, 0, 2, 2, 4, 5, 5, 5, 8]
    assert connected_components(
        torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long), 3
    ).tolist() == [0, 1, 2]


def test_connected_components_long_chain():
    # a path 19-18-...-0 given from the far end: the root (smallest id) must travel the whole chain
    a = torch.arange(19, 0, -1)
    b = a - 1
    assert connected_components(a, b, 20).tolist() == [0] * 20
    # a cycle 0-1-...-9-0 plus a separate path 10..14
    a = torch.cat([torch.arange(10), torch.arange(10, 14)])
    b = torch.cat([(torch.arange(10) + 1) % 10, torch.arange(11, 15)])
    assert connected_components(a, b, 15).tolist() == [0] * 10 + [10] * 5


def test_padded_groups_output():
    # group 2: members {1, 7, 10}; group 0: {3}; group 1: {5}; group 4: {2, 4, 6, 8};
    # group 3: {0, 9}
    group = torch.tensor([2, 0, 2, 1, 2, 4, 4, 4, 4, 3, 3])
    members = torch.tensor([10, 3, 7, 5, 1, 2, 8, 4, 6, 9, 0])
    out = [(ids.tolist(), gid.tolist()) for ids, gid in padded_groups(group, members)]
    # buckets by ceil(log2(size)): sizes 1 -> bucket 0, size 2 -> 1,
    # sizes 3 and 4 -> 2 (padded to 4)
    assert out == [
        ([[3], [5]], [0, 1]),
        ([[0, 9]], [3]),
        ([[1, 7, 10, -1], [2, 4, 6, 8]], [2, 4]),
    ]
    # every member exactly once
    flat = sorted(m for ids, _ in out for row in ids for m in row if m >= 0)
    assert flat == sorted(members.tolist())


def test_padded_groups_chunking_and_empty():
    group = torch.tensor([0, 0, 1, 1, 2, 2])
    members = torch.arange(6)
    chunks = list(padded_groups(group, members, budget=4))  # n*n = 4: one block per chunk
    assert [gid.tolist() for _, gid in chunks] == [[0], [1], [2]]
    assert [ids.tolist() for ids, _ in chunks] == [[[0, 1]], [[2, 3]], [[4, 5]]]
    assert (
        list(padded_groups(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long)))
        == []
    )

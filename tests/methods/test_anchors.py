"""Anchor selection (methods/anchors.py): density peak vs random vs farthest point on a hand
example."""

from __future__ import annotations

import pytest
import torch

from streamlabel.methods.anchors import density_peak_scores, select_anchors, unit_density
from streamlabel.methods.label_propagation import mutual_knn_affinity
from tests.helpers.features import circle_points, knn_lists

pytestmark = pytest.mark.usefixtures("single_thread")

# Two blobs of three units on the circle: A at 0, 4, 8 degrees and B at 90, 94, 98 degrees.
# With k = 2 every unit's neighbours are its two blob mates (mutual), so the mutual-kNN graph is
# two triangles. The middle unit of each blob is the heaviest (A: weight 4, B: weight 3), so it is
# the local density peak: rho = own weight + sum of cos * neighbour weight.
ANGLES = [0.0, 4.0, 8.0, 90.0, 94.0, 98.0]
WEIGHTS = torch.tensor([[1.0, 4.0, 1.0, 1.0, 3.0, 1.0]])


def _block():
    centres = circle_points(ANGLES)
    ids = torch.arange(6).unsqueeze(0)
    nbrs = knn_lists(centres, 2).unsqueeze(0)
    affinity = mutual_knn_affinity(centres.unsqueeze(0), ids, nbrs)
    cosine = (centres @ centres.t()).unsqueeze(0)
    valid = torch.ones(1, 6, dtype=torch.bool)
    return affinity, cosine, valid


def test_density_and_peaks_by_hand():
    affinity, cosine, valid = _block()
    assert (affinity[0, :3, 3:] == 0).all()  # no edge between the blobs
    rho = unit_density(affinity, WEIGHTS)[0]
    cos = cosine[0]
    # unit 1: 4 + cos(4)*1 + cos(4)*1; unit 0: 1 + cos(4)*4 + cos(8)*1
    torch.testing.assert_close(rho[1], 4 + 2 * cos[0, 1])
    torch.testing.assert_close(rho[0], 1 + 4 * cos[0, 1] + cos[0, 2])
    rho2, delta, is_peak = density_peak_scores(affinity, cosine, WEIGHTS, valid)
    assert is_peak[0].tolist() == [False, True, False, False, True, False]
    # the densest unit (1) has no denser unit: delta = its largest distance (to unit 5 at 98
    # degrees)
    torch.testing.assert_close(delta[0, 1], 1 - cos[1, 5])
    # unit 4 (B's peak): its nearest denser unit is unit 1 (90 degrees away), or a denser B unit
    denser = rho2[0] > rho2[0, 4]
    torch.testing.assert_close(delta[0, 4], (1 - cos[4][denser]).min())


def test_density_peak_anchors_are_blob_peaks():
    affinity, cosine, valid = _block()
    anchors = select_anchors(
        affinity, cosine, WEIGHTS, valid, max_anchors=4, method="density_peak"
    )
    assert anchors.tolist() == [[1, 4, -1, -1]]
    # capped at max_anchors: the larger rho * delta wins (unit 1)
    anchors = select_anchors(
        affinity, cosine, WEIGHTS, valid, max_anchors=1, method="density_peak"
    )
    assert anchors.tolist() == [[1]]


def test_farthest_point_anchors():
    # first the densest unit (1, at 4 degrees), then the unit farthest from it (5, at 98 degrees);
    # the number of anchors is the number of peaks (2) for every method
    affinity, cosine, valid = _block()
    anchors = select_anchors(
        affinity, cosine, WEIGHTS, valid, max_anchors=4, method="farthest_point"
    )
    assert anchors.tolist() == [[1, 5, -1, -1]]


def test_random_anchors_are_seeded():
    affinity, cosine, valid = _block()

    def pick(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return select_anchors(
            affinity, cosine, WEIGHTS, valid, max_anchors=4, method="random", generator=g
        )

    a = pick(0)
    assert torch.equal(a, pick(0))
    chosen = a[0, :2].tolist()
    assert len(set(chosen)) == 2 and all(0 <= c < 6 for c in chosen)
    assert a[0, 2:].tolist() == [-1, -1]
    assert len({tuple(pick(s)[0, :2].tolist()) for s in range(12)}) > 1  # really random


def test_random_anchors_skip_padding():
    affinity, cosine, _ = _block()
    valid = torch.tensor([[True, True, True, False, False, False]])
    g = torch.Generator().manual_seed(3)
    w = WEIGHTS * valid
    for _ in range(10):
        anchors = select_anchors(
            affinity, cosine, w, valid, max_anchors=3, method="random", generator=g
        )
        assert anchors[0, 0] in (0, 1, 2) and anchors[0, 1:].tolist() == [-1, -1]


def test_every_block_gets_an_anchor_and_padding():
    affinity, cosine, valid = _block()
    anchors = select_anchors(
        affinity[:, :2, :2], cosine[:, :2, :2], WEIGHTS[:, :2], valid[:, :2], max_anchors=5
    )
    assert anchors.shape == (1, 5) and anchors[0, 0] == 1 and (anchors[0, 1:] == -1).all()
    with pytest.raises(ValueError, match="anchor method"):
        select_anchors(affinity, cosine, WEIGHTS, valid, method="kmeans++")

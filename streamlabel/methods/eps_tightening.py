"""A data-driven DBSCAN eps that stops short of one giant cluster (nplp and lbg share it).

NPLP's Eq. 4 sets eps from the data: the mean distance of the smallest ``alpha`` share of cross-camera
pairs. The share that gives identity-sized clusters is not the same on every dataset: on CUHK03 pair 1
(2 cameras) the paper's alpha = 0.0012 puts 89% of the samples in one cluster, on Market-1501 (6
cameras) 57% (BCubed F 0.188 and 0.495, docs/labels_table.md). DBSCAN on plain distances percolates:
past some eps one cluster swallows most of the data. The rule here halves alpha while the largest
cluster holds more than ``max_share`` of the samples (the share at which ``streamlabel`` already warns
that labels are degenerate), so eps stays calibrated from the data and lands below the percolation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["MAX_HALVINGS", "largest_cluster_share", "tightened_clustering"]

MAX_HALVINGS = 6  # alpha / 64 at most: past that the clusters are already tiny on any data we measured


def largest_cluster_share(labels: torch.Tensor) -> float:
    """Share of all samples in the largest cluster (0 when every sample is an outlier, -1)."""
    clustered = labels[labels >= 0]
    if clustered.numel() == 0:
        return 0.0
    return float(torch.bincount(clustered).max()) / labels.numel()


def tightened_clustering(
    cluster_at: Callable[[float], torch.Tensor], alpha: float, *, max_share: float
) -> tuple[torch.Tensor, float, int]:
    """(labels, alpha used, halvings): ``cluster_at(alpha)`` with alpha halved while its largest cluster
    holds more than ``max_share`` of the samples, at most ``MAX_HALVINGS`` times (``max_share`` >= 1: never)."""
    labels = cluster_at(alpha)
    halvings = 0
    while max_share < 1.0 and halvings < MAX_HALVINGS and largest_cluster_share(labels) > max_share:
        alpha /= 2.0
        halvings += 1
        labels = cluster_at(alpha)
    return labels, alpha, halvings

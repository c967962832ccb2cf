"""Reference clusterings the label tables compare the policies against: DBSCAN on the k-reciprocal
Jaccard distance (SpCL's clustering step, k1 = 30, k2 = 6), on the raw features or on camera-normalised
ones (LbG Eq. 4: per-camera mean and scale removed, then L2-normalised)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from streamlabel.methods.dbscan import dbscan_pairs
from streamlabel.methods.jaccard_pairs import jaccard_pairs
from streamlabel.methods.lbg import camera_normalize

__all__ = ["dbscan_jaccard"]


def dbscan_jaccard(
    features: torch.Tensor,
    cameras: torch.Tensor | None = None,
    *,
    eps: float = 0.5,
    min_samples: int = 4,
    k1: int = 30,
    k2: int = 6,
) -> torch.Tensor:
    """Labels [N] (-1 = noise) of DBSCAN(eps, min_samples) on the Jaccard distances of ``features``;
    with ``cameras`` the features are camera-normalised first."""
    x = F.normalize(features.float(), dim=1)
    if cameras is not None:
        x = F.normalize(camera_normalize(x, cameras), dim=1)
    rows, cols, dist = jaccard_pairs(x, k1=k1, k2=k2, max_distance=eps)
    return dbscan_pairs(rows, cols, dist, x.shape[0], eps=eps, min_samples=min_samples)

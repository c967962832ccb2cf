"""LbG: Learn by Guessing, multi-step pseudo-label refinement (VISAPP 2022) as an offline policy.

Every refresh (one "progressive learning step" of the paper, Sec. 3.2 / 3.6.2):
1. camera-guided feature normalisation (Eq. 4): per camera c and per feature dimension,
   f_bar = (f - mu_c) / sigma_c with the camera's mean and (population) standard deviation, then the
   rows are L2-normalised again so ``eps`` lives on the same scale as the paper's 0.35 / 0.42;
2. DBSCAN (min_s = 4) on the cosine distance 1 - cos of the normalised features, from a k-NN table
   (sparse pairs, never N x N);
3. cluster selection (Sec. 3.4): keep clusters with >= ``min_size`` images seen by >= ``min_cameras``
   cameras; every other sample becomes an outlier (-1).

Progressive learning has no schedule of its own in the paper: each step starts again from the current
features (the bank) and clusters from scratch, so samples left out in one round come back in a later
one once the model has improved. ``self.rounds`` counts the steps; ``stats`` reports each step's
cluster counts before and after selection and the kept share.

Deviation: the paper does not name its DBSCAN distance (and lists re-ranking in the clustering step as
future work); we use cosine distance of the re-normalised standardised features, where the paper's
eps range (0.35 for DukeMTMC, 0.42 for Market-1501) is meaningful.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from streamlabel.banks.knn import topk_inner_product
from streamlabel.methods.base import register_policy
from streamlabel.methods.dbscan import dbscan_knn
from streamlabel.methods.edge_merge import camera_means
from streamlabel.methods.offline import OfflineClusteringPolicy

__all__ = ["LbGPolicy", "camera_normalize", "select_clusters"]


def camera_normalize(features: torch.Tensor, cameras: torch.Tensor, *, min_std: float = 1e-6) -> torch.Tensor:
    """Eq. 4: (f - mu_camera) / sigma_camera per dimension, statistics per camera by index_add (no loop)."""
    if features.ndim != 2 or cameras.shape != (features.shape[0],):
        raise ValueError(f"features [N, D] and cameras [N] expected, got {tuple(features.shape)}, "
                         f"{tuple(cameras.shape)}")
    x = features.float()
    _, cam = torch.unique(cameras, return_inverse=True)  # any camera ids -> 0..C-1
    count = torch.bincount(cam).to(x.dtype).unsqueeze(1)
    mean = camera_means(x, cam)
    centred = x - mean[cam]
    var = torch.zeros_like(mean).index_add_(0, cam, centred * centred) / count  # two-pass: stable
    return centred / var.sqrt().clamp_min(min_std)[cam]


def select_clusters(labels: torch.Tensor, cameras: torch.Tensor, *, min_size: int, min_cameras: int) -> torch.Tensor:
    """Sec. 3.4: clusters with < ``min_size`` members or < ``min_cameras`` distinct cameras become -1."""
    out = labels.clone()
    member = labels >= 0
    if not bool(member.any()):
        return out
    lab = labels[member]
    _, cam = torch.unique(cameras[member], return_inverse=True)
    num_cams = int(cam.max()) + 1
    num_clusters = int(lab.max()) + 1
    size = torch.bincount(lab, minlength=num_clusters)
    pairs = torch.unique(lab * num_cams + cam)  # distinct (cluster, camera) pairs
    cams_per_cluster = torch.bincount(pairs // num_cams, minlength=num_clusters)
    keep = (size >= min_size) & (cams_per_cluster >= min_cameras)
    out[member] = torch.where(keep[lab], lab, torch.full_like(lab, -1))
    return out


@register_policy("lbg")
class LbGPolicy(OfflineClusteringPolicy):
    """Camera-normalised DBSCAN with cluster selection, re-run from scratch every refresh."""
    train_outliers = False  # its -1 samples are rejected: kept out of target batches and the memory

    def __init__(
        self,
        num_samples: int,
        feat_dim: int,
        *,
        eps: float = 0.35,
        min_samples: int = 4,
        min_size: int = 4,
        min_cameras: int = 2,
        k: int = 30,
        camera_norm: bool = True,
        **common: Any,
    ) -> None:
        super().__init__(num_samples, feat_dim, **common)  # OfflineClusteringPolicy's parameters
        if not 0 < eps < 2:
            raise ValueError(f"eps is a cosine distance and must be in (0, 2), got {eps}")
        if min_samples < 1 or min_size < 1 or min_cameras < 1:
            raise ValueError(f"min_samples, min_size and min_cameras must be >= 1, got "
                             f"{min_samples}, {min_size}, {min_cameras}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.eps, self.min_samples, self.min_size, self.min_cameras = float(eps), min_samples, min_size, min_cameras
        self.k, self.camera_norm = k, camera_norm
        self._round_stats: dict[str, float] = {}
        self.config.update({"eps": self.eps, "min_samples": min_samples, "min_size": min_size,
                            "min_cameras": min_cameras, "k": k, "camera_norm": camera_norm})

    def cluster(self, features: torch.Tensor, cameras: torch.Tensor) -> torch.Tensor:
        """One progressive step: normalise per camera, DBSCAN on the k-NN table, select clusters."""
        num_cams = int(torch.unique(cameras).numel())
        if num_cams < self.min_cameras:
            raise ValueError(f"lbg keeps clusters seen by >= min_cameras = {self.min_cameras} cameras but the "
                             f"samples come from {num_cams} camera(s): pass camera ids (initialize(cameras=...); "
                             f"a feature dump: a camids array) or set min_cameras=1")
        x = camera_normalize(features, cameras) if self.camera_norm else features
        x = F.normalize(x, dim=1)
        k = min(self.k, self.num_samples - 1)
        if k < 1:
            return torch.full((self.num_samples,), -1, dtype=torch.long, device=features.device)
        sims, idx = topk_inner_product(x, x, k, query_ids=torch.arange(x.shape[0], device=x.device))
        dist = (1.0 - sims).clamp_min(0.0)
        raw = dbscan_knn(idx, dist, eps=self.eps, min_samples=self.min_samples)
        labels = select_clusters(raw, cameras, min_size=self.min_size, min_cameras=self.min_cameras)
        self._round_stats = {
            "clusters_dbscan": int(raw.max()) + 1 if bool((raw >= 0).any()) else 0,
            "clusters_kept": int(torch.unique(labels[labels >= 0]).numel()),
            "kept_share": float((labels >= 0).float().mean()),
            "saturated_rows": int((dist[:, -1] <= self.eps).sum()),  # k-NN lists that may miss pairs within eps
        }
        return labels

    def refresh(self) -> None:
        """Re-cluster and add this step's selection statistics to ``stats``."""
        super().refresh()
        self.stats.update(self._round_stats)

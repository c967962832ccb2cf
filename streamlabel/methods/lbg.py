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

Deviation (default ``eps: null``): the paper sets eps by hand per target (0.35 DukeMTMC, 0.42 Market);
here it is calibrated from the data as NPLP's Eq. 4 does (the cosine distance of the mean of the smallest
``eps_alpha`` share of cross-camera pair distances of the normalised features), with alpha halved while
one selected cluster holds more than ``max_cluster_share`` of the samples (methods/eps_tightening.py).
A number for ``eps`` keeps it fixed (configs/lbg_paper.yaml). Measured in docs/labels_table.md.

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
from streamlabel.methods.eps_tightening import tightened_clustering
from streamlabel.methods.nplp import cross_camera_eps
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
        eps: float | None = None,
        eps_alpha: float = 0.0012,
        max_cluster_share: float = 0.5,
        min_samples: int = 4,
        min_size: int = 4,
        min_cameras: int = 2,
        k: int = 30,
        camera_norm: bool = True,
        **common: Any,
    ) -> None:
        super().__init__(num_samples, feat_dim, **common)  # OfflineClusteringPolicy's parameters
        if eps is not None and (isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 2):
            raise ValueError(f"eps is a cosine distance and must be in (0, 2), or null (calibrated), got {eps!r}")
        if not 0 < eps_alpha <= 1 or not 0 < max_cluster_share <= 1:
            raise ValueError(f"eps_alpha and max_cluster_share must be in (0, 1], got {eps_alpha}, {max_cluster_share}")
        if min_samples < 1 or min_size < 1 or min_cameras < 1:
            raise ValueError(f"min_samples, min_size and min_cameras must be >= 1, got "
                             f"{min_samples}, {min_size}, {min_cameras}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.eps = None if eps is None else float(eps)
        self.eps_alpha, self.max_cluster_share = float(eps_alpha), float(max_cluster_share)
        self.min_samples, self.min_size, self.min_cameras = min_samples, min_size, min_cameras
        self.k, self.camera_norm = k, camera_norm
        self._round_stats: dict[str, float] = {}
        self.config.update({"eps": self.eps, "eps_alpha": self.eps_alpha, "max_cluster_share": self.max_cluster_share,
                            "min_samples": min_samples, "min_size": min_size,
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
        if self.eps is None:
            labels, raw, eps, alpha, saturated = self._calibrated(x, cameras, k)
        else:
            eps, alpha = self.eps, float("nan")
            sims, idx = topk_inner_product(x, x, k, query_ids=torch.arange(x.shape[0], device=x.device))
            dist = (1.0 - sims).clamp_min(0.0)
            raw = dbscan_knn(idx, dist, eps=eps, min_samples=self.min_samples)
            labels = select_clusters(raw, cameras, min_size=self.min_size, min_cameras=self.min_cameras)
            saturated = int((dist[:, -1] <= eps).sum())
        self._round_stats = {
            "clusters_dbscan": int(raw.max()) + 1 if bool((raw >= 0).any()) else 0,
            "clusters_kept": int(torch.unique(labels[labels >= 0]).numel()),
            "kept_share": float((labels >= 0).float().mean()),
            "saturated_rows": saturated,  # k-NN lists that may miss pairs within eps
            "eps": eps, "eps_alpha_used": alpha,
        }
        return labels

    def _calibrated(self, x: torch.Tensor, cameras: torch.Tensor, k: int
                    ) -> tuple[torch.Tensor, torch.Tensor, float, float, int]:
        """(selected labels, DBSCAN labels, eps, alpha used, saturated rows) with eps from the data: the cosine
        distance of NPLP's Eq. 4 eps (mean of the smallest ``eps_alpha`` share of cross-camera pair
        distances), alpha halved while one selected cluster holds more than ``max_cluster_share`` of the
        samples; every halving reuses the k-NN table of the first clustering."""
        found: dict = {}

        def cluster_at(alpha: float) -> torch.Tensor:
            known = found.get("table")
            eps_euclid, width, idx, dist, _ = cross_camera_eps(x, cameras, alpha=alpha, k=found.get("k", k),
                                                               table=known)
            found.update(table=(idx, dist), k=width, eps=eps_euclid * eps_euclid / 2.0)  # |a-b|^2 / 2 = 1 - cos
            cosine = dist * dist / 2.0
            found["raw"] = dbscan_knn(idx, cosine, eps=found["eps"], min_samples=self.min_samples)
            found["saturated"] = int((cosine[:, -1] <= found["eps"]).sum())
            return select_clusters(found["raw"], cameras, min_size=self.min_size, min_cameras=self.min_cameras)

        labels, alpha, _ = tightened_clustering(cluster_at, self.eps_alpha, max_share=self.max_cluster_share)
        return labels, found["raw"], found["eps"], alpha, found["saturated"]

    def refresh(self) -> None:
        """Re-cluster and add this step's selection statistics to ``stats``."""
        super().refresh()
        self.stats.update(self._round_stats)

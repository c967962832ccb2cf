"""DCML: deep credible metric learning (Chen et al. ECCV 2020) as an offline refresh policy.

Every refresh: DBSCAN on the sparse k-reciprocal Jaccard distances of the bank (Sec. 4.2: "the same as
the baseline UDA method [34]": re-ranked distances, eps = mean of the smallest rho = 1.6e-3 share of the
pair distances, fixed at the first refresh; clusters of more than two samples), then credible sample
mining (Sec. 3.2): score every sample by k-NN density (Eq. 5) or prototype distance (Eq. 4) and keep
the most credible share gamma = gamma0 + r * dgamma (Eq. 6, r = refresh round from 0, capped at 1) of
all samples under one threshold. Non-credible samples become -1: rejected, they enter neither the target
batches nor the hybrid memory (``train.target_samples: auto``; ``all`` trains them as instance entries), and
the triplet / IMS terms (losses/triplet.py, losses/ims.py) never use them as anchors.
"""

from __future__ import annotations

from typing import Any

import torch

from streamlabel.methods.base import register_policy
from streamlabel.methods.credibility import (
    CREDIBILITY_KINDS,
    SCOPES,
    credible_share,
    keep_most_credible,
    knn_credibility,
    prototype_credibility,
)
from streamlabel.methods.dbscan import dbscan_pairs, dense_relabel, drop_small_clusters
from streamlabel.methods.jaccard_pairs import jaccard_pairs
from streamlabel.methods.offline import OfflineClusteringPolicy

__all__ = ["DCMLPolicy", "smallest_share_mean"]


def smallest_share_mean(dists: torch.Tensor, num_samples: int, rho: float) -> float:
    """Mean of the smallest ``rho`` share of all N(N-1)/2 pair distances (UDA's eps rule).

    Each unordered pair is listed once; pairs not listed count as distance 1 (no k-reciprocal overlap)."""
    upper = dists.float()
    total = num_samples * (num_samples - 1) // 2
    m = max(1, round(rho * total))
    smallest = torch.topk(upper, min(m, upper.numel()), largest=False).values if upper.numel() else upper
    return float((smallest.sum() + (m - smallest.numel())) / m)


@register_policy("dcml")
class DCMLPolicy(OfflineClusteringPolicy):
    """Jaccard + DBSCAN labels, then only the most credible share of the samples keeps its label."""
    train_outliers = False  # its -1 samples are rejected: kept out of target batches and the memory

    def __init__(
        self,
        num_samples: int,
        feat_dim: int,
        *,
        k1: int = 30,
        k2: int = 6,
        eps: float = 0.0,
        rho: float = 1.6e-3,
        min_samples: int = 4,
        min_cluster_size: int = 3,
        credibility: str = "knn",
        k: int = 4,
        gamma0: float = 0.75,
        dgamma: float = 0.05,
        scope: str = "global",
        **common: Any,
    ) -> None:
        super().__init__(num_samples, feat_dim, **common)  # OfflineClusteringPolicy's parameters
        for name, value in (("k1", k1), ("k2", k2), ("min_samples", min_samples), ("k", k),
                            ("min_cluster_size", min_cluster_size)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if eps < 0:
            raise ValueError(f"eps must be > 0, or 0 for the data-driven eps from rho; got {eps}")
        if eps == 0 and not 0.0 < rho < 1.0:
            raise ValueError(f"rho must be in (0, 1) (share of pair distances that sets eps), got {rho}")
        if not 0.0 <= gamma0 <= 1.0 or dgamma < 0:
            raise ValueError(f"gamma0 must be in [0, 1] and dgamma >= 0, got {gamma0}, {dgamma}")
        if credibility not in CREDIBILITY_KINDS:
            raise ValueError(f"credibility must be one of {CREDIBILITY_KINDS}, got {credibility!r}")
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
        self.k1, self.k2, self.k = int(k1), int(k2), int(k)
        self.eps, self.rho, self.min_samples = float(eps), float(rho), int(min_samples)
        self.min_cluster_size = int(min_cluster_size)
        self.credibility, self.scope = credibility, scope
        self.gamma0, self.dgamma = float(gamma0), float(dgamma)
        self.eps_used: float | None = None  # the data-driven eps, fixed at the first refresh
        self.mining: dict[str, float] = {}
        self.config.update({"k1": k1, "k2": k2, "eps": eps, "rho": rho, "min_samples": min_samples,
                            "min_cluster_size": min_cluster_size, "credibility": credibility, "k": k,
                            "gamma0": gamma0, "dgamma": dgamma, "scope": scope})

    def cluster(self, features: torch.Tensor, cameras: torch.Tensor) -> torch.Tensor:
        """DBSCAN labels of the bank with the non-credible samples (and emptied clusters) set to -1."""
        n = features.shape[0]
        # all pairs for the first (eps-setting) refresh, then only those DBSCAN can use
        reach = 1.0 if self.eps_used is None else min(1.0, max(self.eps_used, 1e-6))
        rows, cols, dists = jaccard_pairs(features, k1=self.k1, k2=self.k2, max_distance=reach)
        if self.eps_used is None:
            self.eps_used = self.eps if self.eps > 0 else smallest_share_mean(dists, n, self.rho)
        labels = dbscan_pairs(rows, cols, dists, n, eps=max(self.eps_used, 1e-12), min_samples=self.min_samples)
        labels = drop_small_clusters(labels, self.min_cluster_size)  # "clusters of more than two samples"
        return self.mine(features, labels)

    def mine(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Credible sample mining (Eq. 2, 4-6) for refresh round ``self.rounds``; also fills ``self.mining``."""
        if self.credibility == "knn":
            scores = knn_credibility(features, self.k)
        else:
            scores = prototype_credibility(features, labels)
        share = credible_share(self.rounds, self.gamma0, self.dgamma)
        keep = keep_most_credible(scores, labels, share, scope=self.scope)
        mined = drop_small_clusters(torch.where(keep, labels, torch.full_like(labels, -1)), 2)  # need a positive
        self.mining = {"eps": float(self.eps_used or 0.0), "share": share,
                       "clustered_frac": float((labels >= 0).float().mean()),
                       "credible_frac": float((mined >= 0).float().mean())}
        return dense_relabel(mined)

    def refresh(self) -> None:
        super().refresh()
        self.stats.update(self.mining)

    def extra_state(self) -> dict:
        return {"eps_used": self.eps_used}

    def load_extra_state(self, state: dict) -> None:
        self.eps_used = state.get("eps_used")

"""NPLP: noisy pseudo-label processing (the NPLP paper) as an offline policy.

Every refresh is one iteration of the paper's Algorithm 1 on the current bank (Euclidean distances of
the L2-normalised features):
- **startup stage** (Eq. 4): eps_e = mean of the smallest ``alpha`` share of all cross-camera pair
  distances, then DBSCAN(eps_e, min_samples): a loose threshold that favours recall (mixed noise).
  Deviation (``max_cluster_share``, default 0.5; 1 = the paper): while one cluster holds more than that
  share of the samples, alpha is halved and the stage re-run (methods/eps_tightening.py): the paper's
  alpha percolates into one giant cluster on CUHK03's two cameras (docs/labels_table.md);
- **correcting stage** (refreshes after the first ``startup_rounds`` = I_e): the same clustering, then
  the self-assessment score of every cluster (silhouette, Eq. 6-8, methods/silhouette.py), and the
  ``worst_share`` (10 %) of clusters with the lowest score are re-clustered, each on its own, by
  DBSCAN with eps_c = beta * eps_e (Eq. 9); their samples that fall out become outliers.

The smallest alpha share (m pairs) of the cross-camera pairs is read from k-NN lists, never an N x N
matrix. Condition for exactness: let T be the m-th smallest cross-camera distance among the listed
pairs and d_k(i) the distance from i to its k-th neighbour. A pair (i, j) missing from both lists has
d(i, j) >= max(d_k(i), d_k(j)) >= D2, the second smallest d_k over all samples. So when T < D2 every
pair at distance <= T is listed and the m smallest listed pairs are the m smallest of all. Otherwise T
is still an upper bound of the true m-th smallest distance (the listed pairs are a subset), and one
blocked scan over all rows (O(block * N) memory) collects every cross-camera pair at distance <= T,
which holds the m smallest. When the lists hold fewer than m cross-camera pairs, k is doubled first.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from streamlabel.banks.knn import topk_inner_product
from streamlabel.methods.base import register_policy
from streamlabel.methods.dbscan import dbscan_knn, dbscan_pairs
from streamlabel.methods.eps_tightening import tightened_clustering
from streamlabel.methods.offline import OfflineClusteringPolicy
from streamlabel.methods.silhouette import cluster_silhouette

__all__ = ["NPLPPolicy", "cross_camera_eps"]


def _knn_euclidean(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k nearest other rows of unit vectors ``x``: (indices, Euclidean distances), [N, k] ascending."""
    sims, idx = topk_inner_product(x, x, k, query_ids=torch.arange(x.shape[0], device=x.device))
    return idx, (2.0 - 2.0 * sims).clamp_min(0.0).sqrt()


def _cross_pairs_below(x: torch.Tensor, cam: torch.Tensor, bound: float, block_size: int = 1024) -> torch.Tensor:
    """Distances of every cross-camera pair i < j with d(i, j) <= ``bound``, by a blocked scan of all rows."""
    n = x.shape[0]
    cols = torch.arange(n, device=x.device)
    found = []
    for start in range(0, n, block_size):
        stop = min(start + block_size, n)
        d = (2.0 - 2.0 * (x[start:stop] @ x.t())).clamp_min(0.0).sqrt()
        rows = torch.arange(start, stop, device=x.device)
        keep = (d <= bound) & (cam[start:stop, None] != cam[None, :]) & (cols[None, :] > rows[:, None])
        found.append(d[keep])
    return torch.cat(found)


def cross_camera_eps(
    x: torch.Tensor, cameras: torch.Tensor, *, alpha: float, k: int,
    table: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[float, int, torch.Tensor, torch.Tensor, bool]:
    """Eq. 4: (eps_e, k of the k-NN table, its indices and distances, whether the exact scan was needed).
    ``table``: a k-NN table of ``x`` returned by an earlier call (another alpha), used when its width is k."""
    n = x.shape[0]
    _, cam = torch.unique(cameras, return_inverse=True)
    counts = torch.bincount(cam).long()
    total = (n * n - int((counts * counts).sum())) // 2  # unordered cross-camera pairs
    if total == 0:
        raise ValueError("the NPLP eps rule (Eq. 4) needs samples from >= 2 cameras: pass camera ids "
                         "(initialize(cameras=...); a feature dump: a camids array)")
    m = max(1, round(alpha * total))
    k = max(1, min(k, n - 1))
    while True:
        idx, dist = table if table is not None and table[0].shape[1] == k else _knn_euclidean(x, k)
        rows = torch.arange(n, device=x.device).repeat_interleave(k)
        cols, d = idx.reshape(-1), dist.reshape(-1)
        cross = (cols >= 0) & (cam[rows] != cam[cols.clamp_min(0)])
        lo, hi = torch.minimum(rows, cols)[cross], torch.maximum(rows, cols)[cross]
        keys, inv = torch.unique(lo * n + hi, return_inverse=True)  # a pair listed from both ends counts once
        pair_d = torch.full((keys.numel(),), float("inf"), device=x.device).scatter_reduce_(
            0, inv, d[cross], reduce="amin")
        if pair_d.numel() >= m or k >= n - 1:
            break
        k = min(2 * k, n - 1)  # too few cross-camera pairs listed for an upper bound
    threshold = torch.kthvalue(pair_d, m).values
    second = torch.kthvalue(dist[:, -1], 2).values
    scanned = k < n - 1 and not bool(threshold < second)
    if scanned:  # not provably complete: collect every pair within the upper bound T
        pair_d = _cross_pairs_below(x, cam, float(threshold))
    eps = float(torch.topk(pair_d, m, largest=False).values.mean())
    return eps, k, idx, dist, scanned


@register_policy("nplp")
class NPLPPolicy(OfflineClusteringPolicy):
    """Data-driven DBSCAN eps (startup stage), then silhouette-guided re-clustering (correcting stage)."""
    train_outliers = False  # its -1 samples are rejected: kept out of target batches and the memory

    def __init__(
        self,
        num_samples: int,
        feat_dim: int,
        *,
        alpha: float = 0.0012,
        beta: float = 0.5,
        startup_rounds: int = 15,
        worst_share: float = 0.1,
        min_samples: int = 4,
        k: int = 30,
        silhouette: str = "all",
        max_cluster_share: float = 0.5,
        **common: Any,
    ) -> None:
        super().__init__(num_samples, feat_dim, **common)  # OfflineClusteringPolicy's parameters
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha (share of cross-camera pairs) must be in (0, 1], got {alpha}")
        if not 0 < beta <= 1:
            raise ValueError(f"beta (eps attenuation of the correcting stage) must be in (0, 1], got {beta}")
        if not 0 <= worst_share <= 1:
            raise ValueError(f"worst_share must be in [0, 1], got {worst_share}")
        if startup_rounds < 0 or min_samples < 1 or k < 1:
            raise ValueError(f"startup_rounds must be >= 0, min_samples and k >= 1, got {startup_rounds}, "
                             f"{min_samples}, {k}")
        if not 0 < max_cluster_share <= 1:
            raise ValueError(f"max_cluster_share must be in (0, 1] (1 = the paper: eps never tightened), "
                             f"got {max_cluster_share}")
        if silhouette not in ("all", "nearest"):
            raise ValueError(f"silhouette must be 'all' (Eq. 7) or 'nearest', got {silhouette!r}")
        self.alpha, self.beta, self.worst_share = float(alpha), float(beta), float(worst_share)
        self.startup_rounds, self.min_samples, self.k, self.silhouette = startup_rounds, min_samples, k, silhouette
        self.max_cluster_share = float(max_cluster_share)
        self.k_eps = k  # grows when the k-NN lists hold fewer than m cross-camera pairs (kept across rounds)
        self.eps_e = float("nan")
        self._round_stats: dict[str, float] = {}
        self.config.update({"alpha": self.alpha, "beta": self.beta, "startup_rounds": startup_rounds,
                            "worst_share": self.worst_share, "min_samples": min_samples, "k": k,
                            "silhouette": silhouette, "max_cluster_share": self.max_cluster_share})

    def cluster(self, features: torch.Tensor, cameras: torch.Tensor) -> torch.Tensor:
        """Startup clustering at eps_e; in the correcting stage also re-cluster the worst clusters at beta*eps_e."""
        n = features.shape[0]
        if n < 2:
            return torch.full((n,), -1, dtype=torch.long, device=features.device)
        table: dict = {}

        def cluster_at(alpha: float) -> torch.Tensor:  # a smaller alpha reuses the k-NN table of the last one
            known = (table["idx"], table["dist"]) if table else None
            self.eps_e, self.k_eps, table["idx"], table["dist"], table["scanned"] = cross_camera_eps(
                features, cameras, alpha=alpha, k=max(self.k, self.k_eps), table=known)
            return dbscan_knn(table["idx"], table["dist"], eps=self.eps_e, min_samples=self.min_samples)

        labels, alpha, halvings = tightened_clustering(cluster_at, self.alpha, max_share=self.max_cluster_share)
        idx, dist, scanned = table["idx"], table["dist"], table["scanned"]
        num_clusters = int(labels.max()) + 1 if bool((labels >= 0).any()) else 0
        correcting = self.rounds >= self.startup_rounds
        self._round_stats = {"stage": 1.0 if correcting else 0.0, "eps_e": self.eps_e, "k_eps": float(self.k_eps),
                             "eps_scan": float(scanned), "alpha_used": alpha, "alpha_halvings": float(halvings),
                             "clusters_startup": float(num_clusters),
                             "saturated_rows": float((dist[:, -1] <= self.eps_e).sum())}
        if correcting and num_clusters > 0:
            labels = self._correct(features, labels, num_clusters, idx, dist)
        return labels

    def _correct(self, x: torch.Tensor, labels: torch.Tensor, num_clusters: int, idx: torch.Tensor,
                 dist: torch.Tensor) -> torch.Tensor:
        """Re-cluster the ceil(worst_share * C) clusters of lowest silhouette, each inside itself, at beta*eps_e."""
        score = cluster_silhouette(x, labels, b=self.silhouette)
        num_worst = min(num_clusters, math.ceil(self.worst_share * num_clusters))
        bad = torch.zeros(num_clusters, dtype=torch.bool, device=labels.device)
        bad[torch.argsort(score, stable=True)[:num_worst]] = True
        cand = (labels >= 0) & bad[labels.clamp_min(0)]
        n, k = idx.shape
        rows = torch.arange(n, device=idx.device).repeat_interleave(k)
        cols, d = idx.reshape(-1), dist.reshape(-1)
        ok = cols >= 0
        rows, cols, d = rows[ok], cols[ok], d[ok]
        same = (labels[rows] == labels[cols]) & cand[rows]  # pairs inside one low-quality cluster
        sub = dbscan_pairs(rows[same], cols[same], d[same], n, eps=self.beta * self.eps_e,
                           min_samples=self.min_samples, candidates=cand)
        out = labels.clone()
        out[cand] = -1
        out[sub >= 0] = sub[sub >= 0] + num_clusters
        self._round_stats.update({"worst_clusters": float(num_worst), "eps_c": self.beta * self.eps_e,
                                  "silhouette_mean": float(score.mean()),
                                  "silhouette_worst_max": float(score[bad].max())})
        return out

    def refresh(self) -> None:
        """Re-cluster and add this round's stage, eps and correction statistics to ``stats``."""
        super().refresh()
        self.stats.update(self._round_stats)

    def extra_state(self) -> dict:
        return {"k_eps": self.k_eps, "eps_e": self.eps_e}

    def load_extra_state(self, state: dict) -> None:
        self.k_eps = int(state["k_eps"])
        self.eps_e = float(state["eps_e"])

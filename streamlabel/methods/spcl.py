"""SpCL (Ge et al., NeurIPS 2020): DBSCAN on the k-reciprocal Jaccard distance + self-paced reliable clusters.

Every refresh clusters the bank three times on the same sparse Jaccard pairs (``jaccard_pairs``,
k1 = 30, k2 = 6): DBSCAN with ``eps`` (the labels), ``eps - eps_gap`` (tight) and ``eps + eps_gap``
(loose). With I(f) the cluster holding sample f (an outlier is its own singleton {f}):

    R_indep(f) = |I(f) & I_loose(f)| / |I(f) | I_loose(f)|     (independence: nothing joins when loosened)
    R_comp(f)  = |I(f) & I_tight(f)| / |I(f) | I_tight(f)|     (compactness: nothing leaves when tightened)

The paper keeps "independent clusters with compact data points whose R_indep > alpha and R_comp > beta"
and treats the rest as un-clustered instances; alpha and beta come from the score distribution before
the first epoch. Our vectorised reading, which follows the authors' release where the text is loose:

* independence is a cluster property: a cluster's score is the largest R_indep of its members (its most
  independent member). alpha is fixed at the first refresh so that the top ``reliability_percentile``
  (0.9) of the non-singleton clusters pass: the clusters' scores sorted in descending order, alpha is
  the one at position round(0.9 * m) (m clusters, clipped to m - 1); a cluster passes when score >= alpha.
  alpha then stays fixed (self-paced: as the features improve, more clusters pass the same bar).
  ``indep_threshold`` sets alpha by hand instead.
* compactness is a sample property: a member is kept when its R_comp reaches beta. By default beta is
  per cluster, the largest R_comp among its members, so the members outside the cluster's most compact
  tight core become outliers; ``comp_threshold`` sets one global beta instead.

Samples of failing clusters and failing members become outliers (-1), which the hybrid memory treats as
individual instances. Set sizes are counts: |I(f)| is the size of f's label, |I(f) & I'(f)| the count of
f's (label, label') pair, |I | I'| = |I| + |I'| - |I & I'|; one ``torch.unique`` each, no loops.

The exact self-k-NN under the Jaccard pairs is torch's blocked product by default (``knn_backend: torch``:
any device, the same lists on every machine); ``faiss`` runs ``faiss.knn`` and ``auto`` picks faiss when
it is installed and the bank is on the CPU (same neighbours, ties aside). Which is faster depends on the
BLAS each links: see ``benchmarks/results/spcl_refresh.md``.
"""

from __future__ import annotations

from typing import Any

import torch

from streamlabel.banks.knn import faiss_available
from streamlabel.methods.base import register_policy
from streamlabel.methods.dbscan import dbscan_pairs
from streamlabel.methods.jaccard_pairs import jaccard_pairs
from streamlabel.methods.offline import OfflineClusteringPolicy

__all__ = ["SpCLPolicy", "independence_threshold", "reliability_scores", "reliable_labels"]


def _singletons(labels: torch.Tensor) -> torch.Tensor:
    """Labels where every outlier (-1) gets an id of its own (an outlier is the singleton cluster {f})."""
    n = labels.numel()
    own = torch.arange(n, device=labels.device) + int(labels.max().clamp_min(-1)) + 1
    return torch.where(labels >= 0, labels, own)


def _set_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per sample f: |A(f) & B(f)| / |A(f) | B(f)| for the clusters A(f), B(f) holding f in two labellings."""
    _, ia, ca = torch.unique(_singletons(a), return_inverse=True, return_counts=True)
    _, ib, cb = torch.unique(_singletons(b), return_inverse=True, return_counts=True)
    _, ip, cp = torch.unique(ia * cb.numel() + ib, return_inverse=True, return_counts=True)
    inter = cp[ip].float()
    return inter / (ca[ia] + cb[ib] - cp[ip]).float()


def reliability_scores(
    labels: torch.Tensor, tight: torch.Tensor, loose: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(R_indep, R_comp) [N] of every sample from the labels at eps, eps + gap (loose) and eps - gap (tight)."""
    if not (labels.shape == tight.shape == loose.shape) or labels.ndim != 1:
        raise ValueError("labels, tight and loose must be 1-D and of the same length")
    return _set_iou(labels, loose), _set_iou(labels, tight)


def _cluster_max(labels: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """Largest score of each cluster's members [C] (labels 0..C-1, -1 ignored)."""
    keep = labels >= 0
    num = int(labels.max()) + 1 if bool(keep.any()) else 0
    out = torch.full((num,), float("-inf"), dtype=score.dtype, device=score.device)
    return out.scatter_reduce_(0, labels[keep], score[keep], reduce="amax")


def independence_threshold(labels: torch.Tensor, r_indep: torch.Tensor, share: float) -> float | None:
    """alpha such that the top ``share`` of the non-singleton clusters (by their largest R_indep) pass;
    None when there is no such cluster."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1], got {share}")
    score = _cluster_max(labels, r_indep)
    size = torch.bincount(labels[labels >= 0], minlength=score.numel())
    score = score[size > 1]
    if score.numel() == 0:
        return None
    ranked = torch.sort(score, descending=True).values
    return float(ranked[min(score.numel() - 1, round(share * score.numel()))])


def reliable_labels(
    labels: torch.Tensor, r_indep: torch.Tensor, r_comp: torch.Tensor, *, alpha: float,
    beta: float | None = None,
) -> torch.Tensor:
    """Labels with unreliable samples set to -1: clusters whose largest R_indep < alpha, and members whose
    R_comp < beta (None: below the largest R_comp in their cluster)."""
    if labels.max() < 0:
        return labels.clone()
    safe = labels.clamp_min(0)
    indep_ok = _cluster_max(labels, r_indep)[safe] >= alpha
    bar = _cluster_max(labels, r_comp)[safe] if beta is None else torch.full_like(r_comp, beta)
    keep = (labels >= 0) & indep_ok & (r_comp >= bar)
    return torch.where(keep, labels, torch.full_like(labels, -1))


def _check_unit(name: str, value: float | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a number in [0, 1] or null, got {value!r}")


@register_policy("spcl")
class SpCLPolicy(OfflineClusteringPolicy):
    """Offline refresh of SpCL: Jaccard + DBSCAN, then only the reliable clusters keep their labels."""

    def __init__(
        self,
        num_samples: int,
        feat_dim: int,
        *,
        k1: int = 30,
        k2: int = 6,
        eps: float = 0.6,
        min_samples: int = 4,
        eps_gap: float = 0.02,
        self_paced: bool = True,
        reliability_percentile: float = 0.9,
        indep_threshold: float | None = None,
        comp_threshold: float | None = None,
        row_max_scaling: bool = False,
        knn_backend: str = "torch",
        **common: Any,
    ) -> None:
        super().__init__(num_samples, feat_dim, **common)  # OfflineClusteringPolicy's parameters
        if k1 < 1 or k2 < 1:
            raise ValueError(f"k1 and k2 must be >= 1, got {k1}, {k2}")
        if k1 >= num_samples:
            raise ValueError(f"k1 = {k1} counts neighbours of a sample and must be < N = {num_samples}")
        if min_samples < 1:
            raise ValueError(f"min_samples must be >= 1, got {min_samples}")
        if eps_gap < 0 or not (eps - eps_gap > 0.0 and eps + eps_gap < 1.0):
            raise ValueError(f"need 0 <= eps_gap and 0 < eps - eps_gap < eps + eps_gap < 1 (Jaccard distances "
                             f"of non-overlapping pairs are 1), got eps={eps}, eps_gap={eps_gap}")
        if not 0.0 < reliability_percentile <= 1.0:
            raise ValueError(f"reliability_percentile must be in (0, 1], got {reliability_percentile}")
        _check_unit("indep_threshold", indep_threshold)
        _check_unit("comp_threshold", comp_threshold)
        if knn_backend not in ("auto", "torch", "faiss"):
            raise ValueError(f"knn_backend must be 'auto', 'torch' or 'faiss', got {knn_backend!r}")
        if knn_backend == "faiss" and not faiss_available():
            raise ValueError("knn_backend 'faiss' needs the faiss package (pip install faiss-cpu)")
        self.knn_backend = knn_backend  # not in config: the backends give the same k-NN (ties aside)
        self.k1, self.k2, self.eps, self.min_samples, self.eps_gap = k1, k2, eps, min_samples, eps_gap
        self.self_paced = self_paced
        self.reliability_percentile = reliability_percentile
        self.comp_threshold = comp_threshold
        self.row_max_scaling = row_max_scaling
        self.alpha: float | None = indep_threshold  # fixed at the first refresh when not given
        self._round_stats: dict[str, float] = {}
        self.config.update({"k1": k1, "k2": k2, "eps": eps, "min_samples": min_samples, "eps_gap": eps_gap,
                            "self_paced": self_paced, "reliability_percentile": reliability_percentile,
                            "indep_threshold": indep_threshold, "comp_threshold": comp_threshold,
                            "row_max_scaling": row_max_scaling})

    def cluster(self, features: torch.Tensor, cameras: torch.Tensor) -> torch.Tensor:
        """DBSCAN on the sparse Jaccard pairs; unreliable clusters/members become outliers when self-paced."""
        loose_eps = self.eps + self.eps_gap
        rows, cols, dist = jaccard_pairs(features, k1=self.k1, k2=min(self.k2, features.shape[0]),
                                         max_distance=loose_eps, row_max_scaling=self.row_max_scaling,
                                         knn_backend=self.knn_backend)
        n = features.shape[0]

        def run(eps: float) -> torch.Tensor:
            return dbscan_pairs(rows, cols, dist, n, eps=eps, min_samples=self.min_samples)

        labels = run(self.eps)
        self._round_stats = {"jaccard_pairs": int(rows.numel()), "clusters_dbscan": int(labels.max()) + 1,
                             "clustered_share_dbscan": float((labels >= 0).float().mean())}
        if not self.self_paced:
            return labels
        r_indep, r_comp = reliability_scores(labels, run(self.eps - self.eps_gap), run(loose_eps))
        if self.alpha is None:
            self.alpha = independence_threshold(labels, r_indep, self.reliability_percentile)
        if self.alpha is not None:  # None: no cluster yet, nothing to filter; decided at a later refresh
            labels = reliable_labels(labels, r_indep, r_comp, alpha=self.alpha, beta=self.comp_threshold)
        self._round_stats.update({"alpha": -1.0 if self.alpha is None else self.alpha,
                                  "clusters_kept": int(torch.unique(labels[labels >= 0]).numel()),
                                  "kept_share": float((labels >= 0).float().mean())})
        return labels

    def refresh(self) -> None:
        """Re-cluster and add this refresh's clustering and reliability statistics to ``stats``."""
        super().refresh()
        self.stats.update(self._round_stats)

    def extra_state(self) -> dict:
        return {"alpha": self.alpha}

    def load_extra_state(self, state: dict) -> None:
        self.alpha = state["alpha"]

"""A complete user-written bank update policy, registered from outside the streamlabel package.

Labels = connected components of the k-NN graph (k nearest bank rows, edges with cosine >= ``threshold``),
recomputed from the whole bank every ``refresh_every`` epochs; components of one sample are outliers (-1).
Train with it by naming this file under ``imports`` in a config (docs/custom_policy.md):

    imports: [examples/knn_components_policy.py]
    policy: {name: knn_components, k: 10, threshold: 0.6}
"""

from __future__ import annotations

import torch

from streamlabel.banks.knn import topk_inner_product
from streamlabel.methods import register_policy
from streamlabel.methods.cluster_dynamics import connected_components
from streamlabel.methods.offline import OfflineClusteringPolicy


@register_policy("knn_components")
class KnnComponentsPolicy(OfflineClusteringPolicy):
    """Offline: connected components of the thresholded k-NN graph of the bank."""

    def __init__(self, num_samples: int, feat_dim: int, *, device: torch.device | str | None = None,
                 refresh_every: int = 1, momentum: float = 0.2, seed: int = 0, refresh_source: str = "extract",
                 k: int = 10, threshold: float = 0.6) -> None:
        super().__init__(num_samples, feat_dim, device=device, refresh_every=refresh_every, momentum=momentum,
                         seed=seed, refresh_source=refresh_source)
        if k < 1 or not -1.0 <= threshold <= 1.0:
            raise ValueError(f"need k >= 1 and threshold in [-1, 1], got k={k}, threshold={threshold}")
        self.k, self.threshold = k, threshold
        self.config.update({"k": k, "threshold": threshold})  # a checkpoint of other settings is refused

    def cluster(self, features: torch.Tensor, cameras: torch.Tensor) -> torch.Tensor:
        n = features.shape[0]
        sims, idx = topk_inner_product(features, features, self.k, query_ids=torch.arange(n, device=features.device))
        close = (idx >= 0) & (sims >= self.threshold)
        rows = torch.arange(n, device=features.device)[:, None].expand_as(idx)
        root = connected_components(rows[close], idx[close], n)
        sizes = torch.bincount(root, minlength=n)
        return torch.where(sizes[root] > 1, root, torch.full_like(root, -1))

"""ShardedFeatureBank: the FeatureBank contract with each row stored only on the rank that owns it.

Every rank calls every method with the same arguments (the trainer gathers the batch on all ranks);
``initialize`` (inherited) hands the full pass to ``RowShards.copy_``, which keeps this rank's rows.
The momentum rows are computed identically everywhere from the gathered old rows; only the owner
writes them. ``features`` (and ``storage``) is a RowShards: ``bank.storage.gather_rows(ids)`` reads
rows on every rank (a collective: every rank calls it with the same ids).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from streamlabel.banks.feature_bank import FeatureBank, checked_bank_args
from streamlabel.banks.row_shards import RowShards


class ShardedFeatureBank(FeatureBank):
    """L2-normalised rows v_i, momentum-updated, split over the ranks of the default process group."""

    def __init__(
        self,
        num_samples: int,
        feat_dim: int,
        *,
        momentum: float = 0.2,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        projection: torch.Tensor | None = None,
        distributed: bool = True,
    ) -> None:
        self.momentum = checked_bank_args(num_samples, feat_dim, momentum)
        self.features = RowShards(num_samples, feat_dim, dtype=dtype, device=device, distributed=distributed,
                                  projection=projection)

    @property
    def storage(self) -> RowShards:
        """The RowShards holding this rank's rows (the row-storage interface,
        banks/replicated_rows.py)."""
        return self.features

    def segment_means(self, labels: torch.Tensor, num_segments: int, normalize: bool = True) -> torch.Tensor:
        """Mean feature of each label ([num_segments, D] on every rank); rows with label < 0 are ignored."""
        sums = RowShards(num_segments, self.feat_dim, device=self.device, distributed=self.features.world > 1)
        keep = labels >= 0
        sums.assign_segment_sums_(torch.where(keep, labels, num_segments), self.features)  # label N_seg: ignored
        means = sums.all_rows()
        counts = torch.bincount(labels[keep], minlength=num_segments).clamp_min(1).unsqueeze(1)
        means = means / counts
        return F.normalize(means, dim=1) if normalize else means

    def state_dict(self) -> dict:
        return {"features": self.features.state_dict(), "momentum": self.momentum}

    def load_state_dict(self, state: dict) -> None:
        self.features.load_state_dict(state["features"])
        self.momentum = float(state["momentum"])


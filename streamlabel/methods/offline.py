"""The common skeleton of the offline methods (SpCL, LbG, NPLP, DCML, INCLR): cluster the whole bank.

Every step momentum-updates the batch rows of the feature bank; the labels are recomputed from the
whole bank by the subclass's ``cluster`` at ``initialize`` and every ``refresh_every`` epochs (the
offline refresh; ``refresh_every = 0`` re-clusters after every batch, which is exact but costs a
full clustering per step). With ``refresh_source = "extract"`` (the default, as the papers) the trainer
re-extracts the target features with the current model before each epoch-end refresh and they replace
the bank (``reload_bank``); ``"bank"`` clusters the momentum-updated bank as it is. Cameras are kept
for the methods that use them. Subclasses implement
``cluster(features, cameras) -> labels`` and list their hyper-parameters in ``self.config`` so a
checkpoint from another configuration is refused.
"""

from __future__ import annotations

import abc
import time

import torch

from streamlabel.banks.feature_bank import FeatureBank, check_finite
from streamlabel.methods.base import BankUpdatePolicy
from streamlabel.methods.dbscan import dense_relabel

__all__ = ["OfflineClusteringPolicy"]


class OfflineClusteringPolicy(BankUpdatePolicy):
    """Feature bank + one label vector, recomputed from the whole bank by ``cluster``."""

    def __init__(
        self,
        num_samples: int,
        feat_dim: int,
        *,
        device: torch.device | str | None = None,
        refresh_every: int = 1,
        momentum: float = 0.2,
        seed: int = 0,
        refresh_source: str = "extract",
    ) -> None:
        super().__init__(num_samples, feat_dim, device=device, refresh_every=refresh_every)
        if refresh_source not in ("extract", "bank"):
            raise ValueError(f"refresh_source must be 'extract' (fresh features before each epoch-end clustering, "
                             f"as the papers) or 'bank' (the momentum bank), got {refresh_source!r}")
        self.refresh_source = refresh_source
        self.bank = FeatureBank(num_samples, feat_dim, momentum=momentum, device=self.device)
        self.cameras = torch.zeros(num_samples, dtype=torch.long, device=self.device)
        self._labels = torch.full((num_samples,), -1, dtype=torch.long, device=self.device)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.rounds = 0  # refreshes done so far (progressive methods read it)
        self.initialized = False
        self.stats: dict[str, float] = {}
        self.config: dict = {"num_samples": num_samples, "feat_dim": feat_dim, "refresh_every": refresh_every,
                             "momentum": momentum, "refresh_source": refresh_source}

    # ------------------------------------------------------------------ what subclasses provide
    @abc.abstractmethod
    def cluster(self, features: torch.Tensor, cameras: torch.Tensor) -> torch.Tensor:
        """Labels [N] (any ids, -1 = outlier) for the L2-normalised bank ``features`` [N, D]."""

    def extra_state(self) -> dict:
        """Method-specific state to checkpoint besides bank, labels, cameras, rounds and RNG."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        """Restore what ``extra_state`` returned."""

    # ------------------------------------------------------------------ contract
    def initialize(self, features: torch.Tensor, cameras: torch.Tensor | None = None) -> None:
        """Fill the bank from a full pass and compute the first labels."""
        self.bank.initialize(features)
        if cameras is not None:
            if cameras.shape != (self.num_samples,):
                raise ValueError(f"cameras must be [{self.num_samples}], got {tuple(cameras.shape)}")
            self.cameras = cameras.to(self.device).long()
        self.initialized = True
        self.refresh()

    def reload_bank(self, features: torch.Tensor, **extra: torch.Tensor) -> None:
        """Every bank row from a fresh feature pass (the papers re-extract before clustering)."""
        self._require_init()
        self.bank.initialize(features)

    def refresh(self) -> None:
        """Re-cluster the whole bank (the offline step of the method)."""
        self._require_init()
        start = time.perf_counter()
        labels = self.cluster(self.bank.features.float(), self.cameras)
        if labels.shape != (self.num_samples,):
            raise RuntimeError(f"{self.name}.cluster returned shape {tuple(labels.shape)}, "
                               f"expected ({self.num_samples},)")
        self._labels = dense_relabel(labels.to(self.device).long())
        self.rounds += 1
        self.stats = {"seconds": time.perf_counter() - start, "round": self.rounds}

    def step(self, indices: torch.Tensor, features: torch.Tensor, cameras: torch.Tensor | None = None) -> None:
        """Momentum-update the batch rows; re-cluster now when ``refresh_every == 0``."""
        self._require_init()
        check_finite(features)
        self.bank.update(indices, features)
        if self.refresh_every == 0:
            self.refresh()

    def labels(self, level: int = -1) -> torch.Tensor:
        """Dense labels 0..C-1 of the last refresh, -1 = outlier (one level only)."""
        self._require_init()
        return self._labels.clone()

    def state_dict(self) -> dict:
        return {
            "config": dict(self.config),
            "initialized": self.initialized,
            "bank": self.bank.state_dict(),
            "labels": self._labels.clone(),
            "cameras": self.cameras.clone(),
            "rounds": self.rounds,
            "generator": self.generator.get_state(),
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        saved = state.get("config", {})
        if saved != self.config:
            diff = {k: (saved.get(k), v) for k, v in self.config.items() if saved.get(k) != v}
            raise ValueError(f"{self.name} state is from a different configuration (checkpoint, this run): {diff}")
        self.bank.load_state_dict(state["bank"])
        self._labels = state["labels"].to(self.device)
        self.cameras = state["cameras"].to(self.device)
        self.rounds = int(state["rounds"])
        self.generator.set_state(state["generator"])
        self.initialized = bool(state["initialized"])
        self.load_extra_state(state["extra"])

    def _require_init(self) -> None:
        if not self.initialized:
            raise RuntimeError(f"policy {self.name!r} is not initialised: call initialize(features) first")

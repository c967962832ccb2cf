"""BankUpdatePolicy: the contract every pseudo-label method follows, and the name registry.

A policy owns the feature bank and label bank of the target samples. ``initialize`` takes a full
feature pass; ``step`` is called after every optimiser step with the batch rows; ``epoch_end`` runs
the offline refresh when ``refresh_every`` says so (0 = online, labels change every step).
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import torch

from streamlabel.banks.feature_bank import FeatureBank
from streamlabel.banks.hybrid_memory import memory_entries
from streamlabel.keys import check_keys
from streamlabel.methods.param_check import check_parameter_types
from streamlabel.registry import Registry


class BankUpdatePolicy(abc.ABC):
    """Base class: subclasses implement ``initialize``, ``step``, ``labels``, ``state_dict`` and
    ``load_state_dict``, and keep their feature bank in ``self.bank`` (a ``FeatureBank``: the trainer reads
    ``bank.features`` for the memory entries and the run's checks). The class attributes below are the rest
    of what the trainer asks of a policy. ``OfflineClusteringPolicy`` does all of it for a method that only
    clusters the bank: a complete user policy is ``examples/knn_components_policy.py`` (docs/custom_policy.md).
    """

    name: str = ""  # set by @register_policy
    bank: FeatureBank | None = None  # the target feature bank; a policy without one cannot train
    accepts_parts = False  # True: initialize / step / reload_bank take parts= [N|B, P, D] from a part model
    sharded = False  # True: bank rows split over the processes (the trainer then never compares whole banks)

    def __init__(
        self,
        num_samples: int,
        feat_dim: int,
        *,
        device: torch.device | str | None = None,
        refresh_every: int = 0,
    ) -> None:
        if num_samples < 1 or feat_dim < 1:
            raise ValueError(f"num_samples and feat_dim must be positive, got {num_samples}, {feat_dim}")
        if refresh_every < 0:
            raise ValueError(f"refresh_every must be >= 0 (0 = every batch), got {refresh_every}")
        self.num_samples = int(num_samples)
        self.feat_dim = int(feat_dim)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.refresh_every = int(refresh_every)

    @abc.abstractmethod
    def initialize(self, features: torch.Tensor, cameras: torch.Tensor | None = None) -> None:
        """Full pass: fill the banks from ``features`` [N, D] and compute the first labels."""

    @abc.abstractmethod
    def step(self, indices: torch.Tensor, features: torch.Tensor, cameras: torch.Tensor | None = None) -> None:
        """Every mini-batch: momentum-update the batch rows and, when online, update their labels."""

    # where an epoch-end refresh reads its features: "bank" (the momentum-updated bank) or "extract" (the
    # trainer re-extracts the target features with the current model and hands them to ``reload_bank`` first)
    refresh_source: str = "bank"
    # whether samples labelled -1 train as instance entries of the hybrid memory (SpCL, HCD) or are samples
    # the method rejected (LbG, DCML, ...), kept out of the target batches and the memory (train.target_samples)
    train_outliers: bool = True

    def refreshes_after(self, epoch: int) -> bool:
        """Whether ``epoch_end(epoch)`` runs the offline refresh (``refresh_every`` divides ``epoch + 1``)."""
        return self.refresh_every > 0 and (epoch + 1) % self.refresh_every == 0

    def epoch_end(self, epoch: int) -> bool:
        """Run the offline refresh when ``refresh_every`` divides ``epoch + 1``; returns True if it ran."""
        if self.refreshes_after(epoch):
            self.refresh()
            return True
        return False

    def reload_bank(self, features: torch.Tensor, **extra: torch.Tensor) -> None:
        """Replace every bank row with a fresh feature pass (``refresh_source = "extract"``); labels unchanged
        until the next refresh."""
        raise NotImplementedError(f"policy {self.name!r} cannot reload its bank: use refresh_source 'bank'")

    def refresh(self) -> None:
        """Recompute the labels from the whole bank (the offline clustering of this method)."""
        raise NotImplementedError(f"policy {self.name!r} has no offline refresh")

    @abc.abstractmethod
    def labels(self, level: int = -1) -> torch.Tensor:
        """Pseudo labels [N] (dense 0..C-1), -1 = outlier / unlabeled."""

    def memory_entries(self, centres: str = "mean") -> tuple[torch.Tensor, torch.Tensor]:
        """Target entries of the hybrid memory loss and each sample's positive entry (banks/hybrid_memory.py):
        one centre per cluster of ``labels()`` from the feature bank ``self.bank``, one entry per outlier."""
        if self.bank is None:
            raise NotImplementedError(f"policy {self.name!r} has no feature bank: override memory_entries")
        return memory_entries(self.bank.features, self.labels(), centres=centres)

    @abc.abstractmethod
    def state_dict(self) -> dict:
        """Everything needed to continue exactly: banks, labels, thresholds, RNG state."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict) -> None:
        """Restore ``state_dict``; refuses a state from a different configuration."""


POLICIES: Registry[type[BankUpdatePolicy]] = Registry("policy", base=BankUpdatePolicy)


def register_policy(name: str) -> Callable[[type[BankUpdatePolicy]], type[BankUpdatePolicy]]:
    """Class decorator: make a BankUpdatePolicy subclass buildable by ``name`` (YAML, CLI)."""
    register = POLICIES.register(name)

    def wrap(cls: type[BankUpdatePolicy]) -> type[BankUpdatePolicy]:
        register(cls)
        cls.name = name
        return cls

    return wrap


def available_policies() -> list[str]:
    """Names accepted by ``build_policy``."""
    return POLICIES.names()


def policy_parameters(name: str) -> dict[str, object]:
    """The keyword parameters (and defaults) a policy accepts, besides num_samples/feat_dim/device."""
    params = POLICIES.parameters(name)
    params.pop("device", None)
    return params


def get_policy_class(name: str) -> type[BankUpdatePolicy]:
    return POLICIES.get(name)


def build_policy(
    name: str, *, num_samples: int, feat_dim: int, device: torch.device | str | None = None, **params: object
) -> BankUpdatePolicy:
    """Instantiate a registered policy; unknown parameters are errors naming the nearest valid one."""
    defaults = policy_parameters(name)
    check_keys(params, defaults, f"policy {name!r}")
    check_parameter_types(name, params, defaults)  # a clear error instead of one from deep inside __init__
    return get_policy_class(name)(num_samples, feat_dim, device=device, **params)

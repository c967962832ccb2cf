"""P identities x K images batch sampler over true or pseudo labels; deterministic, resumable, sharded."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Sampler

OutlierMode = Literal["exclude", "singleton"]


def _as_label_array(labels: torch.Tensor | np.ndarray | Sequence[int]) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"labels must be integers (-1 = outlier), got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=True)


class IdentityBatchSampler(Sampler[list[int]]):
    """Batches of P identities x K images (``batch_size`` = P*K, global over all ranks).

    Labels < 0 are outliers: excluded, or each its own identity (``outliers="singleton"``); if every label
    is an outlier the sampler falls back to singletons. An epoch visits every identity ``num_rounds`` times
    (default: about once per image), each visit K images drawn without replacement while the identity has
    unseen images, then with replacement (so identities smaller than K are padded). Identities within a
    global batch are distinct whenever there are at least P of them.

    The sequence depends only on (seed, epoch, labels): every rank builds the same global batches and
    takes its own contiguous slice of P/num_replicas identities. ``state_dict`` holds epoch and position,
    so a resumed run continues the same sequence. Use with ``DataLoader(ds, batch_sampler=sampler)``.
    """

    def __init__(
        self,
        labels: torch.Tensor | np.ndarray | Sequence[int],
        batch_size: int = 64,
        num_instances: int = 4,
        outliers: OutlierMode = "exclude",
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        num_rounds: int | None = None,
    ) -> None:
        if num_instances < 1 or batch_size % num_instances != 0:
            raise ValueError(f"batch_size {batch_size} must be a positive multiple of num_instances "
                             f"{num_instances}")
        self.num_instances = num_instances
        self.num_identities = batch_size // num_instances  # P
        if self.num_identities < 1:
            raise ValueError(f"batch_size {batch_size} must be >= num_instances {num_instances}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"need 0 <= rank < num_replicas, got rank={rank}, num_replicas={num_replicas}")
        if self.num_identities % num_replicas != 0:
            raise ValueError(f"P = batch_size / num_instances = {self.num_identities} identities per batch "
                             f"must be divisible by num_replicas = {num_replicas}")
        if outliers not in ("exclude", "singleton"):
            raise ValueError(f"outliers must be 'exclude' or 'singleton', got {outliers!r}")
        if num_rounds is not None and num_rounds < 1:
            raise ValueError(f"num_rounds must be >= 1, got {num_rounds}")
        self.batch_size = batch_size
        self.outliers = outliers
        self.seed = int(seed)
        self.num_replicas = num_replicas
        self.rank = rank
        self.num_rounds = num_rounds
        self.epoch = 0
        self._position = 0
        self.set_labels(labels)

    # ----- labels and epoch -----
    def set_labels(self, labels: torch.Tensor | np.ndarray | Sequence[int]) -> None:
        """Use new (pseudo) labels from the next iteration on; the current position is kept."""
        arr = _as_label_array(labels)
        self.labels = arr
        used = np.ones_like(arr, dtype=bool) if self.outliers == "singleton" else arr >= 0
        if not used.any():
            warnings.warn("every label is an outlier (-1): sampling each sample as its own identity",
                          stacklevel=2)
            used[:] = True
        group_labels = arr[used].copy()
        outlier = group_labels < 0
        group_labels[outlier] = group_labels.max(initial=-1) + 1 + np.arange(outlier.sum())
        _, inverse, counts = np.unique(group_labels, return_inverse=True, return_counts=True)
        self._used = np.flatnonzero(used)
        self._group = inverse.astype(np.int64)
        self._counts = counts.astype(np.int64)
        self._starts = np.cumsum(self._counts) - self._counts

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose sequence the next iteration yields (position resets if it changes)."""
        if epoch != self.epoch:
            self.epoch = int(epoch)
            self._position = 0

    @property
    def num_groups(self) -> int:
        """Number of identities the sampler draws from (after outlier handling)."""
        return len(self._counts)

    def _rounds(self) -> int:
        groups, k, p = self.num_groups, self.num_instances, self.num_identities
        rounds = self.num_rounds or max(1, round(len(self._used) / (groups * k)))
        if groups < p:  # too few identities for one batch: repeat them so no batch is empty
            rounds = max(rounds, math.ceil(p / groups))
        return rounds

    def __len__(self) -> int:
        return self.num_groups * self._rounds() // self.num_identities

    # ----- sequence -----
    def epoch_batches(self, epoch: int) -> np.ndarray:
        """All global batches of ``epoch`` as an int64 array [num_batches, batch_size]."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        groups, k, p = self.num_groups, self.num_instances, self.num_identities
        rounds = self._rounds()
        # Random order of members inside each identity (lexsort: identity first, random key second).
        members = self._used[np.lexsort((rng.random(len(self._used)), self._group))]
        perms = np.argsort(rng.random((rounds, groups)), axis=1)
        if groups >= p and groups % p:
            self._separate_round_boundaries(perms)
        seq = perms.reshape(-1)
        slot_round = np.repeat(np.arange(rounds), groups)
        pos = slot_round[:, None] * k + np.arange(k)[None, :]
        count = self._counts[seq][:, None]
        drawn = np.minimum((rng.random(pos.shape) * count).astype(np.int64), count - 1)
        pos = np.where(pos < count, pos, drawn)
        chunks = members[self._starts[seq][:, None] + pos]
        num_batches = len(seq) // p
        return chunks[: num_batches * p].reshape(num_batches, p * k)

    def _separate_round_boundaries(self, perms: np.ndarray) -> None:
        """Reorder each round so a batch spanning two rounds never holds an identity twice."""
        groups, p = perms.shape[1], self.num_identities
        for r in range(1, perms.shape[0]):
            tail = (r * groups) % p
            if tail == 0:
                continue
            clash = np.isin(perms[r], perms[r - 1, groups - tail:])
            if clash[: p - tail].any():
                perms[r] = np.concatenate([perms[r][~clash], perms[r][clash]])

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.epoch
        batches = self.epoch_batches(epoch)
        per_rank = self.batch_size // self.num_replicas
        lo = self.rank * per_rank
        for i in range(min(self._position, len(batches)), len(batches)):
            self._position = i + 1
            yield batches[i, lo : lo + per_rank].tolist()
        if self.epoch == epoch:
            self.epoch, self._position = epoch + 1, 0

    # ----- resume -----
    def state_dict(self, position: int | None = None) -> dict[str, Any]:
        """Epoch, position (batches yielded so far, or ``position`` = batches consumed), seed and labels.

        A DataLoader with workers prefetches from this sampler, so pass the number of batches the training
        loop really consumed in the current epoch to resume exactly after them.
        """
        return {
            "batch_size": self.batch_size,
            "num_instances": self.num_instances,
            "outliers": self.outliers,
            "epoch": self.epoch,
            "position": self._position if position is None else int(position),
            "seed": self.seed,
            "labels": torch.from_numpy(self.labels.copy()),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a ``state_dict``: the next iteration continues that epoch after ``position`` batches."""
        for key in ("batch_size", "num_instances", "outliers"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(f"sampler state has {key}={state[key]!r} but this sampler has "
                                 f"{getattr(self, key)!r}; resume needs the same batch layout")
        self.seed = int(state["seed"])
        self.set_labels(state["labels"])
        self.epoch = int(state["epoch"])
        self._position = int(state["position"])

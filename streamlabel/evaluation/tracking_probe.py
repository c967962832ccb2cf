"""Tracking probe: do a policy's labels follow its features when they improve?

A stand-in for a network that learns: every feature moves a share ``t`` toward the L2-normalised mean of
its identity, ``Y = normalize((1 - t) X + t c_pid)``. A policy initialised on X streams Y through ``step``
in shuffled mini-batches (the online arm; the offline arm, ``refresh_every = 1``, re-clusters at every
epoch end) and its labels are compared with a fresh ``initialize`` on Y. The tracking gap is the BCubed F
of the fresh labels minus that of the streamed ones; a second gap compares with a fresh ``initialize`` on
the streamed policy's own bank (which still holds a little of X after finitely many momentum updates), so
it measures the dynamics alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from streamlabel.evaluation.label_quality import bcubed
from streamlabel.methods import build_policy


def toward_identity_means(feats: torch.Tensor, pids: np.ndarray, share: float) -> torch.Tensor:
    """Every row moved ``share`` of the way toward the unit mean of its identity, renormalised."""
    ids = torch.as_tensor(np.unique(pids, return_inverse=True)[1], device=feats.device)
    means = torch.zeros(int(ids.max()) + 1, feats.shape[1], device=feats.device).index_add_(0, ids, feats.float())
    return F.normalize((1.0 - share) * feats.float() + share * F.normalize(means, dim=1)[ids], dim=1)


def with_noise(feats: torch.Tensor, scale: float, seed: int = 0) -> torch.Tensor:
    """Rows plus isotropic Gaussian noise of norm about ``scale`` (worse features), renormalised."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(feats.shape, generator=gen).to(feats.device) / feats.shape[1] ** 0.5
    return F.normalize(feats.float() + scale * noise, dim=1)


def stream(policy, feats: torch.Tensor, cams: torch.Tensor | None, *, passes: int, batch_size: int = 64,
           seed: int = 0, epoch_end: bool = True) -> list[float]:
    """``passes`` shuffled passes of ``feats`` through ``policy.step`` (``epoch_end`` after each, as training
    does, unless ``epoch_end`` is false: then only ``step`` runs); returns the seconds of every step."""
    gen = torch.Generator().manual_seed(seed)
    seconds = []
    for epoch in range(passes):
        order = torch.randperm(feats.shape[0], generator=gen).to(feats.device)
        for begin in range(0, feats.shape[0], batch_size):
            rows = order[begin : begin + batch_size]
            start = time.perf_counter()
            policy.step(rows, feats[rows], None if cams is None else cams[rows])
            seconds.append(time.perf_counter() - start)
        if epoch_end:
            policy.epoch_end(epoch)
    return seconds


def f_score(policy, pids: np.ndarray) -> float:
    """BCubed F of the policy's top-level labels (outliers as singletons)."""
    return float(bcubed(policy.labels().cpu().numpy(), pids)[2])


def cluster_count(policy) -> int:
    """Clusters of the policy's top-level labels (outliers not counted)."""
    labels = policy.labels()
    return int(labels.max()) + 1 if bool((labels >= 0).any()) else 0


@dataclass
class TrackingResult:
    start_f: float  # labels of X after initialize
    fresh_f: float  # a fresh initialize on Y
    streamed_f: float  # after streaming Y
    own_bank_f: float  # a fresh initialize on the streamed policy's bank
    step_ms: float  # median step time
    start_clusters: int
    streamed_clusters: int
    streamed_labels: np.ndarray  # top-level labels after streaming (-1 = outlier)

    @property
    def gap(self) -> float:
        return self.fresh_f - self.streamed_f

    @property
    def own_bank_gap(self) -> float:
        return self.own_bank_f - self.streamed_f


def track(feats: torch.Tensor, moved: torch.Tensor, pids: np.ndarray, cams: torch.Tensor | None, params: dict,
          *, passes: int = 2, batch_size: int = 64, seed: int = 0, fresh_f: float | None = None,
          epoch_end: bool = True) -> TrackingResult:
    """Initialise on ``feats``, stream ``moved`` (``epoch_end`` false: ``step`` alone, no epoch end between the
    stream and the check), compare with fresh initialisations (see the module doc)."""
    def make():
        kwargs = {k: v for k, v in params.items() if k != "name"}
        return build_policy(params.get("name", "hcd"), num_samples=feats.shape[0], feat_dim=feats.shape[1],
                            device=feats.device, **kwargs)

    if fresh_f is None:
        fresh = make()
        fresh.initialize(moved, cams)
        fresh_f = f_score(fresh, pids)
    policy = make()
    policy.initialize(feats, cams)
    start_f, start_clusters = f_score(policy, pids), cluster_count(policy)
    seconds = stream(policy, moved, cams, passes=passes, batch_size=batch_size, seed=seed, epoch_end=epoch_end)
    streamed_f = f_score(policy, pids)
    own = make()
    own.initialize(policy.bank.features.float().clone(), cams)
    return TrackingResult(start_f, fresh_f, streamed_f, f_score(own, pids), 1000.0 * float(np.median(seconds)),
                          start_clusters, cluster_count(policy), policy.labels().cpu().numpy())

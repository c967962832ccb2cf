"""NPLP's centre contrastive loss (the NPLP paper, Eq. 10-11) as a loss term beside the hybrid memory loss.

The embedding f_e goes through batch normalisation and ReLU, f_r = ReLU(BN(f_e)); each clustered target
sample is classified against a lookup table V of cluster centroids (Eq. 10):
    L_cc = -mean_a log( exp(V_y . f_r,a / tau) / sum_j exp(V_j . f_r,a / tau) ),
with tau = 1 as in the paper (the equation has no temperature; ``temperature`` is there to change it).
After the loss is formed every sample moves its centroid, V_y <- (V_y + f_r) / 2 (Eq. 11); several
samples of one cluster in a batch are applied in batch order, in closed form
V <- V / 2^m + sum_j f_j / 2^(m - j + 1), so the result equals the sequential updates.

V is rebuilt (Algorithm 1, line 11) whenever the policy's labels or refresh round change: centroid of
ReLU(BN(bank rows)) per cluster, BN statistics taken from the whole bank. The BN has no learnable
affine (the optimiser only sees the model's parameters); in training it uses the batch statistics, as a
BatchNorm1d layer does (over this process's rows). Outliers (-1) are left out of the loss. With several
processes the update takes every rank's rows in rank order, so V stays identical on all ranks. V, the
labels and round it was built from, and the bank statistics are buffers: they travel in checkpoints.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from streamlabel.banks.distributed import all_gather_rows
from streamlabel.banks.feature_bank import segment_means
from streamlabel.banks.replicated_rows import as_row_storage
from streamlabel.losses.base import LossBatch, LossTerm, register_loss

__all__ = ["CentreContrastiveLoss", "halving_update"]


def halving_update(centres: torch.Tensor, feats: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """V_y <- (V_y + f) / 2 for every (f, y) in order, vectorised: a new [C, D] tensor."""
    order = torch.argsort(labels, stable=True)  # batch order kept inside each cluster
    lab, f = labels[order], feats[order]
    count = torch.bincount(lab, minlength=centres.shape[0])
    start = torch.cumsum(count, 0) - count
    pos = torch.arange(lab.numel(), device=lab.device) - start[lab]  # 0-based position inside the cluster
    weight = torch.pow(0.5, (count[lab] - pos).to(f.dtype))  # the j-th of m (1-based) gets 2^-(m - j + 1)
    out = centres * torch.pow(0.5, count.to(centres.dtype)).unsqueeze(1)
    return out.index_add(0, lab, f * weight.unsqueeze(1))


@register_loss("centre_contrastive")
class CentreContrastiveLoss(LossTerm):
    """Cross entropy of ReLU(BN(f)) against a table of cluster centroids updated by halving."""

    def __init__(self, *, temperature: float = 1.0, bn_eps: float = 1e-5) -> None:
        super().__init__()
        if temperature <= 0 or bn_eps <= 0:
            raise ValueError(f"temperature and bn_eps must be > 0, got {temperature}, {bn_eps}")
        self.temperature = float(temperature)
        self.bn_eps = float(bn_eps)
        self.register_buffer("centres", torch.zeros(0, 0))
        self.register_buffer("built_labels", torch.zeros(0, dtype=torch.long))
        self.register_buffer("built_round", torch.tensor(-1, dtype=torch.long))
        self.register_buffer("bank_mean", torch.zeros(0))
        self.register_buffer("bank_std", torch.zeros(0))

    # ------------------------------------------------------------------ centres
    def _bn_relu(self, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        return F.relu((x - mean) / std)

    def rebuild(self, bank: torch.Tensor, labels: torch.Tensor, round_id: int) -> None:
        """V = per-cluster mean of ReLU(BN(bank rows)), BN statistics of the whole bank."""
        x = bank.float()
        self.bank_mean = x.mean(0)
        self.bank_std = (x.var(0, unbiased=False) + self.bn_eps).sqrt()
        f = self._bn_relu(x, self.bank_mean, self.bank_std)
        num = int(labels.max()) + 1 if bool((labels >= 0).any()) else 0
        self.centres = segment_means(f, labels, num)
        self.built_labels = labels.clone()
        self.built_round = torch.tensor(round_id, dtype=torch.long, device=x.device)

    def _maybe_rebuild(self, policy: object) -> None:
        bank = getattr(getattr(policy, "bank", None), "features", None)
        if bank is None:
            raise ValueError(f"centre_contrastive needs a policy with a feature bank (policy.bank.features); "
                             f"{type(policy).__name__} has none")
        labels = policy.labels()
        round_id = int(getattr(policy, "rounds", 0))
        if (round_id != int(self.built_round) or labels.shape != self.built_labels.shape
                or not torch.equal(labels, self.built_labels.to(labels.device))):
            # every row (sharded: a collective, every process reads all rows once per rebuild; the
            # labels, hence this branch, agree on every process); replicated: the bank tensor
            # itself, no copy
            self.rebuild(as_row_storage(bank).all_rows(), labels, round_id)

    # ------------------------------------------------------------------ loss
    def forward(self, batch: LossBatch) -> torch.Tensor:
        feats = batch.target_feats
        zero = feats.sum() * 0.0
        if batch.policy is None or feats.shape[0] == 0:
            return zero
        self._maybe_rebuild(batch.policy)
        labels = batch.target_labels.to(feats.device)
        keep = labels >= 0
        if not bool(keep.any()) or self.centres.shape[0] == 0:
            return zero
        if feats.shape[0] > 1:  # BN in training: batch statistics of the target rows
            mean = feats.mean(0)
            std = (feats.var(0, unbiased=False) + self.bn_eps).sqrt()
        else:
            mean, std = self.bank_mean, self.bank_std
        f_r = self._bn_relu(feats, mean, std)[keep]
        y = labels[keep]
        if int(y.max()) >= self.centres.shape[0]:
            raise ValueError(f"a target label ({int(y.max())}) has no centre ({self.centres.shape[0]} clusters): "
                             "are target_labels from the policy's current labels?")
        logits = f_r @ self.centres.t() / self.temperature
        loss = F.cross_entropy(logits, y)
        with torch.no_grad():  # every rank's rows in rank order: the same table everywhere
            rows, ids = all_gather_rows(f_r.detach()), all_gather_rows(y)
            self.centres = halving_update(self.centres, rows, ids)  # a new tensor: autograd keeps the old
        return loss

    # ------------------------------------------------------------------ checkpoints
    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Buffers change size with the number of clusters: take the checkpoint's shapes before copying."""
        for name in ("centres", "built_labels", "bank_mean", "bank_std"):
            key = prefix + name
            if key in state_dict:
                setattr(self, name, torch.empty_like(state_dict[key], device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

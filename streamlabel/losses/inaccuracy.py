"""INCLR's IGMO (the INCLR paper, Sec. III-B, Eq. 4-8): a mean teacher, per-sample inaccuracy and its weighted loss.

The teacher is an exponential moving average of the model, theta_t <- m theta_t + (1 - m) theta
(m = 0.999, MMT's mean net), made as a copy of the model at the first adaptation iteration. Both nets
classify a target sample against the current cluster centres c_k of the policy (the classifier weights
"generated dynamically", no training), with beta = 20 multiplying the cosine:

    p_i = softmax_k(beta * cos(f_i, c_k))          (student, Eq. 5)
    q_i = softmax_k(beta * cos(f~_i, c_k))         (teacher, Eq. 4)
    I_i = KL(q_i || p_i) = sum_k q_ik (log q_ik - log p_ik)      (inaccuracy, Eq. 6)
    w_i = exp(-I_i)                                               (credibility weight)
    L_KL = -(1 / n) sum_i w_i log p_i[y_i]                        (Eq. 7)

over the n clustered target samples of the batch (outliers have no class and are left out). The
weight is a constant for the gradient (detached): it scales each sample's classification loss, it is
not itself minimised. The paper's OCR leaves open whether beta divides or multiplies; a divisor of
20 would squeeze cosine logits into [-0.05, 0.05] (every distribution near uniform, I ~ 0), so beta
multiplies, i.e. a softmax temperature of 1/20 = 0.05 (the hybrid memory's tau). lambda_KL = 0.5 of
Eq. 8 is the term's ``weight`` in the config.

The teacher sees the same images as the student (the whole source + target batch, so batch-norm
statistics match) in the student's train/eval mode, without gradients. It is kept out of the module
tree (not optimised, not moved twice); its weights travel in this term's ``state_dict`` as extra state
and are loaded into the copy made at the next call after a resume.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from streamlabel.losses.base import LossBatch, LossTerm, register_loss

__all__ = ["InaccuracyKLLoss", "centre_log_probs", "ema_update_", "inaccuracy"]


def centre_log_probs(feats: torch.Tensor, centres: torch.Tensor, beta: float) -> torch.Tensor:
    """log softmax_k(beta * cos(f_i, c_k)): [B, D] features against [C, D] centres -> [B, C]."""
    return F.log_softmax(beta * F.normalize(feats.float(), dim=1) @ F.normalize(centres.float(), dim=1).t(), dim=1)


def inaccuracy(teacher_log_probs: torch.Tensor, student_log_probs: torch.Tensor) -> torch.Tensor:
    """I_i = KL(q_i || p_i) = sum_k q_ik (log q_ik - log p_ik) per row, from log-probabilities [B, C]."""
    return (teacher_log_probs.exp() * (teacher_log_probs - student_log_probs)).sum(1)


@torch.no_grad()
def ema_update_(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """theta_t <- m theta_t + (1 - m) theta_s for parameters; buffers (BN statistics) copied from the student."""
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(momentum).add_(s.detach().to(t.dtype), alpha=1.0 - momentum)
    for t, s in zip(teacher.buffers(), student.buffers(), strict=True):
        t.copy_(s)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model  # DistributedDataParallel and the like


@register_loss("inaccuracy_kl")
class InaccuracyKLLoss(LossTerm):
    """Inaccuracy-weighted classification of target samples against the cluster centres (INCLR Eq. 7)."""

    def __init__(self, *, momentum: float = 0.999, beta: float = 20.0) -> None:
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if beta <= 0:
            raise ValueError(f"beta must be > 0, got {beta}")
        self.momentum = float(momentum)
        self.beta = float(beta)
        self.__dict__["teacher"] = None  # outside the module tree, see the module docstring
        self._pending: dict | None = None  # teacher weights from a checkpoint, loaded at the next call
        self.last: dict[str, float] = {}  # mean inaccuracy and weight of the last batch (for logs)

    # ------------------------------------------------------------------ teacher
    def ensure_teacher(self, model: nn.Module) -> nn.Module:
        """The teacher, made as a copy of ``model`` on first use (with checkpointed weights if any)."""
        if self.teacher is None:
            teacher = copy.deepcopy(_unwrap(model))
            for p in teacher.parameters():
                p.requires_grad_(False)
                p.grad = None
            if self._pending is not None:
                teacher.load_state_dict(self._pending)
                self._pending = None
            self.__dict__["teacher"] = teacher
        return self.teacher

    def after_optimizer_step(self, model: nn.Module) -> None:
        if self.teacher is not None:
            ema_update_(self.teacher, _unwrap(model), self.momentum)

    def get_extra_state(self) -> dict:
        weights = self.teacher.state_dict() if self.teacher is not None else self._pending
        return {"teacher": None if weights is None else {k: v.detach().clone() for k, v in weights.items()}}

    def set_extra_state(self, state: dict) -> None:
        weights = state.get("teacher")
        if weights is None:
            self.__dict__["teacher"], self._pending = None, None
        elif self.teacher is not None:
            self.teacher.load_state_dict(weights)
        else:
            self._pending = weights

    # ------------------------------------------------------------------ loss
    def forward(self, batch: LossBatch) -> torch.Tensor:
        feats = batch.target_feats
        zero = feats.sum() * 0.0
        if batch.policy is None or feats.shape[0] == 0:
            return zero  # source-only warm-up: no centres, and the teacher starts with the adaptation
        if batch.model is None or batch.images is None:
            raise ValueError("inaccuracy_kl needs LossBatch.model and LossBatch.images (the teacher's input)")
        labels = batch.target_labels.to(feats.device)
        keep = labels >= 0
        all_labels = batch.policy.labels()
        num_clusters = int(all_labels.max()) + 1 if bool((all_labels >= 0).any()) else 0
        teacher = self.ensure_teacher(batch.model)  # made at the first adaptation call even without clusters
        if num_clusters == 0 or not bool(keep.any()):
            return zero
        # the trainer hands over the entries it already computed for the hybrid memory loss
        entries = batch.target_entries if batch.target_entries is not None else batch.policy.memory_entries()[0]
        centres = entries[:num_clusters].to(feats.device)  # cluster centres come first, in label order
        with torch.no_grad():
            teacher.train(_unwrap(batch.model).training)
            out = teacher(batch.images)
            t_emb = out["embedding"] if isinstance(out, dict) else out
            teacher_lp = centre_log_probs(t_emb[batch.num_source:][keep], centres, self.beta)
        student_lp = centre_log_probs(feats[keep], centres, self.beta)
        ina = inaccuracy(teacher_lp, student_lp.detach())
        weight = torch.exp(-ina)
        self.last = {"inaccuracy": float(ina.mean()), "weight": float(weight.mean())}
        return -(weight * student_lp.gather(1, labels[keep].unsqueeze(1)).squeeze(1)).mean()

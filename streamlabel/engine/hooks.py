"""Hooks: what a run does around its epochs and steps, kept out of the training loop.

``Trainer.run`` calls each method on every hook of ``trainer.hooks``, in list order::

    before_train(trainer)                   after setup and the resume, before the first epoch
      before_epoch(trainer, epoch, phase)   every epoch of both phases (one resumed mid-epoch too)
        before_step(trainer, epoch, phase, index)
        after_step(trainer, epoch, phase, index, loss)
      after_epoch(trainer, epoch, phase)    after the policy's epoch end (its offline refresh)
    after_train(trainer)                    after the final evaluation: ``trainer.results`` is full

``index`` is the batch's place in its epoch (from 0), ``loss`` the step's loss (None when a
non-finite loss made the step skip). ``phase`` is ``PRETRAIN`` or ``ADAPT`` of
:mod:`streamlabel.engine.phases`: read its flags (``phase.uses_target``), not its name. Before
``before_epoch`` the trainer empties ``trainer.epoch_stats``: after_epoch hooks add the epoch's
numbers there, and the tracker hook logs them.

:func:`default_hooks` builds the hooks of a run, in this order (each one does nothing in the phases
and settings it does not apply to):

1. :class:`RankCheckHook` - the banks and labels agree between processes;
2. :class:`LabelStatsHook` - pseudo-label statistics, logged and kept in ``trainer.history``;
3. :class:`EvaluationHook` - ``train.eval_every_epochs``;
4. :class:`TrackerHook` - TensorBoard (only with ``log.tensorboard``);
5. :class:`CheckpointHook` - last, so that an epoch's checkpoint holds its statistics and
   evaluation. Inside an epoch it also comes after the tracker: a step's loss is logged, then the
   mid-epoch checkpoint is written.

A measurement of your own: subclass :class:`Hook`, override what you need and add it before
``run``. ``trainer.hooks.append(MyHook())`` runs it after the five above (the epoch's checkpoint is
written by then); one that adds to ``trainer.epoch_stats`` goes before the checkpoint hook,
``trainer.hooks.insert(-1, MyHook())``, so that checkpoints (and a resumed run) keep its numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from streamlabel.engine.evaluator import label_churn
from streamlabel.engine.label_health import degenerate_message
from streamlabel.engine.phases import Phase
from streamlabel.evaluation import label_quality_report

if TYPE_CHECKING:
    from streamlabel.engine.trainer import Trainer


class Hook:
    """Does nothing at every point of the loop; a hook overrides the methods it needs."""

    def before_train(self, trainer: Trainer) -> None:
        """Once, after setup and the resume, before the first epoch."""

    def after_train(self, trainer: Trainer) -> None:
        """Once, after the final evaluation (``trainer.results`` holds the run's results)."""

    def before_epoch(self, trainer: Trainer, epoch: int, phase: Phase) -> None:
        """Before epoch ``epoch`` (from 0 in each phase) of ``phase``."""

    def after_epoch(self, trainer: Trainer, epoch: int, phase: Phase) -> None:
        """After the epoch's last step and the policy's ``epoch_end``."""

    def before_step(self, trainer: Trainer, epoch: int, phase: Phase, index: int) -> None:
        """Before the step on batch ``index`` (from 0) of the epoch."""

    def after_step(
        self, trainer: Trainer, epoch: int, phase: Phase, index: int, loss: float | None
    ) -> None:
        """After that step; ``loss`` is its loss, None when a non-finite loss made it skip."""


class RankCheckHook(Hook):
    """After every epoch that updates the policy: stop with a clear error if the banks or labels
    differ between processes (they must not: every process applies the same gathered updates)."""

    def after_epoch(self, trainer: Trainer, epoch: int, phase: Phase) -> None:
        if not phase.updates_policy or trainer.world == 1:
            return
        labels = trainer.policy.labels()
        weights = torch.arange(1, labels.numel() + 1, device=labels.device, dtype=torch.float64)
        checks = [(labels.double() * weights).sum()]
        if not trainer.policy.sharded:  # sharded rows live on one process each: nothing to compare
            checks.append(trainer.policy.bank.features.double().sum())
        local = torch.stack(checks)
        everyone = trainer.acc.gather(local.unsqueeze(0).to(trainer.device))
        if not bool((everyone == everyone[0]).all()):
            raise RuntimeError(f"banks or labels differ between processes: {everyone.tolist()}")


class LabelStatsHook(Hook):
    """Pseudo-label statistics (:func:`label_statistics`) after every epoch that uses the target,
    added to ``trainer.epoch_stats``, which becomes the epoch's entry of ``trainer.history``. The
    history starts with the labels the policy was initialised with (epoch -1), recorded before the
    first adaptation epoch."""

    def before_epoch(self, trainer: Trainer, epoch: int, phase: Phase) -> None:
        if phase.uses_target and not trainer.history:  # a resumed run has it already
            trainer.history.append(label_statistics(trainer, -1))

    def after_epoch(self, trainer: Trainer, epoch: int, phase: Phase) -> None:
        if phase.uses_target:
            trainer.epoch_stats.update(label_statistics(trainer, epoch))
            trainer.history.append(trainer.epoch_stats)


class EvaluationHook(Hook):
    """Retrieval mAP and rank-1 every ``train.eval_every_epochs`` epochs of a phase that uses the
    target, added to ``trainer.epoch_stats`` as ``eval_mAP`` and ``eval_rank1``. The last epoch is
    left to the final evaluation of ``Trainer.run``."""

    def after_epoch(self, trainer: Trainer, epoch: int, phase: Phase) -> None:
        every = trainer.cfg["train"]["eval_every_epochs"]
        last = epoch + 1 == trainer.epochs(phase)
        if phase.uses_target and every > 0 and (epoch + 1) % every == 0 and not last:
            metrics = trainer.evaluate()
            trainer.epoch_stats.update(
                {f"eval_{k}": v for k, v in metrics.items() if k in ("mAP", "rank1")})


class TrackerHook(Hook):
    """The accelerate trackers (TensorBoard): ``<phase>/loss`` and ``lr`` every ``train.log_every``
    steps, the numbers of ``trainer.epoch_stats`` after every epoch (at the step that ends it)."""

    def before_train(self, trainer: Trainer) -> None:
        if trainer.acc.is_main_process:
            trainer.acc.init_trackers("streamlabel")

    def after_step(
        self, trainer: Trainer, epoch: int, phase: Phase, index: int, loss: float | None
    ) -> None:
        if loss is not None and index % trainer.cfg["train"]["log_every"] == 0:
            values = {f"{phase.name}/loss": loss, "lr": trainer.optimizer.param_groups[0]["lr"]}
            self._log(trainer, values, step=epoch * trainer.ipe + index)

    def after_epoch(self, trainer: Trainer, epoch: int, phase: Phase) -> None:
        if trainer.epoch_stats:
            self._log(trainer, trainer.epoch_stats, step=(epoch + 1) * trainer.ipe)

    def after_train(self, trainer: Trainer) -> None:
        trainer.acc.end_training()

    @staticmethod
    def _log(trainer: Trainer, values: dict, step: int) -> None:
        numbers = {k: v for k, v in values.items() if isinstance(v, int | float)}
        trainer.acc.log(numbers, step=step)


class CheckpointHook(Hook):
    """Checkpoints (``Trainer._save``): at the end of every ``train.checkpoint_every_epochs``-th
    epoch and of each phase's last one, and inside an epoch every ``train.checkpoint_every_iters``
    batches."""

    def after_step(
        self, trainer: Trainer, epoch: int, phase: Phase, index: int, loss: float | None
    ) -> None:
        every, done = trainer.cfg["train"]["checkpoint_every_iters"], index + 1
        if every > 0 and done % every == 0 and done < trainer.epoch_length(epoch, phase):
            trainer._save(phase, epoch, done)

    def after_epoch(self, trainer: Trainer, epoch: int, phase: Phase) -> None:
        trainer._save(phase, epoch)


def default_hooks(trainer: Trainer) -> list[Hook]:
    """The hooks of a run of ``trainer.cfg``, in the order of the module docstring."""
    tracker = [TrackerHook()] if trainer.cfg["log"]["tensorboard"] else []
    return [RankCheckHook(), LabelStatsHook(), EvaluationHook(), *tracker, CheckpointHook()]


def label_statistics(trainer: Trainer, epoch: int) -> dict:
    """The policy's labels after ``epoch``: clusters, outlier fraction, churn since the last
    history entry, BCubed and NMI against the true identities (when every target sample has one),
    and the labels themselves (kept in the latest history entry only, for the next churn). Logs
    one line, and a warning when the labels are degenerate (training goes on)."""
    labels = trainer.policy.labels().cpu()
    clusters = int(labels.max()) + 1 if bool((labels >= 0).any()) else 0
    outliers = float((labels < 0).float().mean())
    stats = {"epoch": epoch, "clusters": clusters, "outlier_frac": outliers}
    if trainer.history and "labels" in trainer.history[-1]:
        stats["label_churn"] = label_churn(trainer.history[-1]["labels"], labels)
    if bool((trainer.target_pids >= 0).all()):
        quality = label_quality_report(labels.numpy(), trainer.target_pids.numpy())
        stats.update({k: quality[k] for k in ("bcubed_p", "bcubed_r", "bcubed_f", "nmi")})
    if trainer.history:
        trainer.history[-1].pop("labels", None)
    stats["labels"] = labels
    note = degenerate_message(labels, trainer.target_cams)
    if note:
        trainer.log(f"warning: epoch {epoch}: {note}")
    trainer.log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in stats.items() if k != "labels"))
    return stats


__all__ = ["CheckpointHook", "EvaluationHook", "Hook", "LabelStatsHook", "RankCheckHook",
           "TrackerHook", "default_hooks", "label_statistics"]

"""Hooks: a hook appended to ``trainer.hooks`` sees every epoch and step in order, last."""

from __future__ import annotations

from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import set_seed

from streamlabel.engine.hooks import Hook
from streamlabel.engine.phases import Phase
from streamlabel.engine.trainer import Trainer
from streamlabel.launch.run_config import load_run_config as load_config
from tests.training.tiny_runs import REPO, tiny_overrides, with_overrides


class Recorder(Hook):
    """Records every call, the steps' losses and what the default hooks left at each epoch end."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.losses: list[float | None] = []
        self.epoch_ends: dict[tuple[str, int], dict] = {}

    def before_train(self, trainer: Trainer) -> None:
        self.calls.append(("before_train",))

    def before_epoch(self, trainer: Trainer, epoch: int, phase: Phase) -> None:
        self.calls.append(("before_epoch", phase.name, epoch))

    def before_step(self, trainer: Trainer, epoch: int, phase: Phase, index: int) -> None:
        self.calls.append(("before_step", phase.name, epoch, index))

    def after_step(
        self, trainer: Trainer, epoch: int, phase: Phase, index: int, loss: float | None
    ) -> None:
        self.calls.append(("after_step", phase.name, epoch, index))
        self.losses.append(loss)

    def after_epoch(self, trainer: Trainer, epoch: int, phase: Phase) -> None:
        self.calls.append(("after_epoch", phase.name, epoch))
        checkpoint = trainer.out_dir / "checkpoints" / f"{phase.name}_epoch{epoch:04d}.pt"
        self.epoch_ends[phase.name, epoch] = {"stats": sorted(trainer.epoch_stats),
                                              "checkpoint": checkpoint.is_file()}

    def after_train(self, trainer: Trainer) -> None:
        self.calls.append(("after_train", "adapted_mAP" in trainer.results))


def test_an_appended_hook_sees_every_epoch_and_step(tmp_path: Path, synthetic_root: Path) -> None:
    # 2 warm-up batches (one epoch), then 5 adaptation batches: epochs of 2, 2 and 1
    overrides = with_overrides(tiny_overrides(tmp_path / "run", synthetic_root),
                               "train.iterations=5", "train.eval_every_epochs=1")
    cfg = load_config(REPO / "configs" / "demo.yaml", overrides)
    set_seed(cfg["seed"], device_specific=False)
    trainer = Trainer(cfg, Accelerator(cpu=True), progress=False)
    defaults = ["RankCheckHook", "LabelStatsHook", "EvaluationHook", "CheckpointHook"]
    assert [type(hook).__name__ for hook in trainer.hooks] == defaults  # log.tensorboard is off
    recorder = Recorder()
    trainer.hooks.append(recorder)
    results = trainer.run()

    expected: list[tuple] = [("before_train",)]
    for phase, lengths in (("pretrain", [2]), ("adapt", [2, 2, 1])):
        for epoch, count in enumerate(lengths):
            expected.append(("before_epoch", phase, epoch))
            for index in range(count):
                expected.append(("before_step", phase, epoch, index))
                expected.append(("after_step", phase, epoch, index))
            expected.append(("after_epoch", phase, epoch))
    expected.append(("after_train", True))
    assert recorder.calls == expected
    assert recorder.losses == results["loss_trace"]  # one process: the loss is the global mean
    # the defaults ran first: the epoch's checkpoint is written, its statistics and evaluation in
    labels = ["bcubed_f", "bcubed_p", "bcubed_r", "clusters", "epoch", "label_churn", "labels",
              "nmi", "outlier_frac"]
    evaluated = sorted([*labels, "eval_mAP", "eval_rank1"])
    assert recorder.epoch_ends == {
        ("pretrain", 0): {"stats": [], "checkpoint": True},
        ("adapt", 0): {"stats": evaluated, "checkpoint": True},
        ("adapt", 1): {"stats": evaluated, "checkpoint": True},
        ("adapt", 2): {"stats": labels, "checkpoint": True},  # the last: the final evaluation
    }
    assert [entry["epoch"] for entry in results["history"]] == [-1, 0, 1, 2]

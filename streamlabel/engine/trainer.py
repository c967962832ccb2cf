"""The training loop: source-only warm-up, then adaptation with a bank update policy every batch.

A run goes through the phases of :mod:`streamlabel.engine.phases` (``PRETRAIN``, then
``ADAPT``); the loop reads a phase's flags (``uses_target``, ``updates_policy``,
``steps_scheduler``), never its name. Everything around the steps and epochs (checkpoints,
evaluation, label statistics, TensorBoard, the cross-rank check) is a hook of ``Trainer.hooks``
(:mod:`streamlabel.engine.hooks` gives their order); append one to measure more without editing
the loop.

One step (``Trainer.run_step``; the bank update is an explicit step, never hidden in autograd):
forward source + target images -> hybrid memory loss (HCD Eq. 1) against source class centres and
the policy's target entries, plus ``loss.terms`` -> backward, optimiser step -> scheduler step
(``steps_scheduler``) -> gather the target rows of every process -> ``policy.step``
(``updates_policy``; same inputs on every rank, so the banks stay identical) -> source centre
momentum update. The warm-up's steps have no target batch (``uses_target`` off).

One epoch: ``before_epoch`` hooks -> the steps, each between ``before_step`` and ``after_step``
hooks -> ``policy.epoch_end`` (``updates_policy``: an offline refresh when its interval says so;
with the policy's ``refresh_source = "extract"`` the target features are first extracted afresh
into its bank) -> ``after_epoch`` hooks: cross-rank check -> label statistics -> evaluation ->
tracker log -> checkpoint. Between the phases: source-only evaluation, fresh optimiser, source
centres, the policy's first labels; after the last epoch: the final evaluation, then
``after_train`` hooks.
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from tqdm import tqdm

from streamlabel.banks.hybrid_memory import HybridMemory
from streamlabel.banks.replicated_rows import as_row_storage
from streamlabel.config.fingerprint import config_fingerprint, config_text
from streamlabel.engine.checkpoint import (
    LATEST_NAME,
    CheckpointError,
    find_latest,
    find_resumable,
    load_checkpoint,
    save_checkpoint,
)
from streamlabel.engine.evaluator import check_evaluable, evaluate_model
from streamlabel.engine.global_bn import convert_global_batchnorm
from streamlabel.engine.hooks import Hook, default_hooks
from streamlabel.engine.phases import ADAPT, PHASES, PRETRAIN, Phase, phase_named
from streamlabel.engine.rng import capture_rng_state, restore_rng_state
from streamlabel.engine.rolling_refresh import RollingRefresh, replacing_rows
from streamlabel.engine.run_files import write_run_file
from streamlabel.engine.setup import (
    build_domain,
    build_network,
    build_optimizer,
    build_target_policy,
    check_world_size,
    eval_loader,
    identity_batches,
    test_transform,
)
from streamlabel.engine.shard_checkpoint import load_policy_shard, save_policy_shard
from streamlabel.engine.smoke import smoke_dataset, smoke_schedule
from streamlabel.evaluation import extract_features
from streamlabel.losses import LossBatch, LossTerms
from streamlabel.models.weights import WeightsError, load_model_state


class NonFiniteError(RuntimeError):
    """A NaN/Inf loss or feature with ``train.on_nonfinite: stop``."""


def embed_outputs(model: torch.nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L2-normalised float32 embeddings and the model's whole output dict (train mode returns more)."""
    out = model(images)
    if isinstance(out, dict):
        outputs = dict(out)
    elif isinstance(out, tuple | list):
        outputs = {"embedding": out[0]}
    else:
        outputs = {"embedding": out}
    return F.normalize(outputs["embedding"].float(), dim=1), outputs


class Trainer:
    """One run of a config: builds everything, trains, evaluates, checkpoints; ``run()`` returns results."""

    def __init__(self, cfg: dict, accelerator: Accelerator, *, resume: bool = False, progress: bool = True) -> None:
        if cfg["train"]["smoke"]:  # before anything reads the schedule: the fingerprint and config.yaml show it
            smoke_schedule(cfg)
        self.cfg = cfg
        self.acc = accelerator
        self.device = accelerator.device
        self.resume = resume
        self.progress = progress and accelerator.is_main_process
        self.out_dir = Path(cfg["output_dir"])
        self.fingerprint = config_fingerprint(cfg)
        train = cfg["train"]
        self.ipe = train["iters_per_epoch"]
        self.world = accelerator.num_processes
        self.results: dict = {}
        self.history: list[dict] = []
        self.skipped_steps = 0
        self.loss_trace: list[float] = []  # global mean loss of the first iterations, for run-to-run checks
        self._epoch_labels: torch.Tensor | None = None  # target labels the current epoch's sampler was drawn from
        self._resume_at: tuple[int, torch.Tensor | None] | None = None  # (iteration, epoch labels) after a resume
        self._started = time.perf_counter()
        self._seconds_before = 0.0  # wall seconds of the sessions before a resume
        self.epoch_stats: dict = {}  # the current epoch's numbers, filled by after_epoch hooks
        self.hooks: list[Hook] = default_hooks(self)  # called in order; append one to measure more
        self.rolling: RollingRefresh | None = None  # train.rolling_refresh > 0: built in setup

    # ------------------------------------------------------------------ setup
    def log(self, message: str) -> None:
        """One ``[streamlabel]`` line on the main process (above the progress bars)."""
        if self.acc.is_main_process:
            tqdm.write(f"[streamlabel] {message}")

    def setup(self) -> None:
        cfg = self.cfg
        check_world_size(cfg, self.world)
        model = build_network(cfg)  # first: a bad model.kwargs or weight file is refused before any data is read
        with self.acc.main_process_first():  # the synthetic dataset writes its images on first use
            self.source = build_domain(cfg["data"]["source"], cfg["data"]["on_bad_image"])
            self.target = build_domain(cfg["data"]["target"], cfg["data"]["on_bad_image"])
        if cfg["train"]["smoke"]:
            self.source = smoke_dataset(self.source) if self.source is not None else None
            self.target = smoke_dataset(self.target)
        check_evaluable(self.target if cfg["eval"]["split"] == "target" else self.source, cfg["eval"]["split"])
        self.target_pids = torch.tensor([s.pid for s in self.target.train])
        self.target_cams = torch.tensor([s.camid for s in self.target.train])
        if cfg["train"]["sync_bn"]:  # a no-op with one process, the global batch with several
            model = convert_global_batchnorm(model)
        self.feat_dim = int(model.feat_dim)
        self.model = model.to(self.device)
        self._new_optimizer()
        num_classes = self.source.num_train_pids if self.source is not None else 0
        self.memory = HybridMemory(num_classes, self.feat_dim, temperature=cfg["loss"]["temperature"],
                                   momentum=cfg["loss"]["source_momentum"]).to(self.device)
        self.loss_terms = LossTerms(cfg["loss"].get("terms")).to(self.device)
        self.policy = build_target_policy(cfg, len(self.target.train), self.feat_dim, self.device)
        if getattr(self.policy.bank, "features", None) is None:  # found now, not after the final evaluation
            raise ValueError(f"policy {self.policy.name!r} keeps no feature bank in self.bank (a FeatureBank): the "
                             "trainer reads bank.features; see BankUpdatePolicy and docs/custom_policy.md")
        if cfg["train"]["rolling_refresh"] > 0:
            self.rolling = RollingRefresh(self.target.train, test_transform(cfg), share=cfg["train"]["rolling_refresh"],
                                          iters_per_epoch=self.ipe, world=self.world, rank=self.acc.process_index,
                                          seed=cfg["seed"])
        global_batch = cfg["train"]["source_batch"] * (self.source is not None) + cfg["train"]["target_batch"]
        bn_note = (f"batch norm reduced over {self.world} processes" if cfg["train"]["sync_bn"] and self.world > 1
                   else f"{self.world} process(es)")
        per_bn = global_batch if (cfg["train"]["sync_bn"] or self.world == 1) else global_batch // self.world
        self.log(f"source {self.source.summary() if self.source else 'none (unsupervised)'}; "
                  f"target {self.target.summary()}")
        self.log(f"each BatchNorm sees {per_bn} images per step ({bn_note}); "
                 f"global batch {global_batch}")

    @property
    def _sharded(self) -> bool:
        """Whether the policy's bank rows are split over the processes (``policy.bank: sharded``)."""
        return bool(self.policy.sharded)

    def _new_optimizer(self) -> None:
        model = self.model.module if hasattr(self.model, "module") else self.model
        optimizer, self.scheduler = build_optimizer(model, self.cfg)
        self.model, self.optimizer = self.acc.prepare(model, optimizer)

    @property
    def net(self) -> torch.nn.Module:
        return self.acc.unwrap_model(self.model)

    # ------------------------------------------------------------------ features
    def _features(self, samples: list, parts: bool = False, split: str = "target train") -> dict[str, torch.Tensor]:
        """Embeddings of ``samples`` in order; every process computes the same full pass."""
        return extract_features(self.net, eval_loader(samples, self.cfg), device=self.device,
                                progress=self.progress, parts=parts, desc=f"extract {split}")

    def _init_source_memory(self) -> None:
        if self.source is None:
            return
        feats = self._features(self.source.train, split="source train")
        self.memory.init_source(feats["feats"].to(self.device), feats["pids"].to(self.device))

    def _policy_parts(self) -> bool:
        """Whether the policy takes part features (``accepts_parts``) and the model makes them (``parts``)."""
        return bool(self.policy.accepts_parts and getattr(self.net, "parts", 0))

    def _target_pass(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Features of every target train sample with the current model (and parts when the policy takes them)."""
        feats = self._features(self.target.train, parts=self._policy_parts())
        extra = {"parts": feats["parts"].to(self.device)} if "parts" in feats else {}
        return feats["feats"].to(self.device), extra

    def _init_policy(self) -> None:
        features, extra = self._target_pass()
        self.policy.initialize(features, cameras=self.target_cams.to(self.device), **extra)

    def _refresh_policy(self, epoch: int) -> None:
        """The policy's epoch end; a refresh with ``refresh_source = "extract"`` first reloads the bank from a
        fresh pass of the current model (as the offline papers cluster freshly extracted features)."""
        if self.policy.refresh_source == "extract" and self.policy.refreshes_after(epoch):
            features, extra = self._target_pass()
            self.policy.reload_bank(features, **extra)
        self.policy.epoch_end(epoch)

    # ------------------------------------------------------------------ checkpoints
    def _state(self, phase: Phase, epoch: int, iteration: int = 0) -> dict:
        policy = phase.uses_target  # the policy holds labels (adaptation): its banks are saved
        return {
            "config": self.cfg,
            "phase": phase.name,
            "epoch": epoch,
            "iteration": iteration,  # > 0: a mid-epoch checkpoint, that many batches of ``epoch`` done
            # mid-epoch: the labels the epoch's target sampler was drawn from
            "epoch_labels": self._epoch_labels if iteration and phase.uses_target else None,
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "memory": self.memory.state_dict(),
            "rolling": self.rolling.state_dict() if self.rolling is not None else None,
            "loss_terms": self.loss_terms.state_dict(),
            "policy": self.policy.state_dict() if policy and not self._sharded else None,
            "policy_shards": self.world if policy and self._sharded else 0,  # per-process files
            "rng": capture_rng_state(),
            "results": dict(self.results),
            "history": list(self.history),
            "skipped_steps": self.skipped_steps,
            "loss_trace": list(self.loss_trace),
            "seconds": self._seconds(),
        }

    def _save(self, phase: Phase, epoch: int, iteration: int = 0) -> None:
        """Checkpoint at the end of ``epoch`` (every ``checkpoint_every_epochs``-th epoch and the last one of
        the phase) or, with ``iteration`` > 0, after that many of its batches."""
        every = self.cfg["train"]["checkpoint_every_iters" if iteration else "checkpoint_every_epochs"]
        last = epoch + 1 == self.epochs(phase)
        if every <= 0 or (not iteration and (epoch + 1) % every != 0 and not last):
            return
        suffix = f"_iter{iteration:06d}" if iteration else ""
        path = self.out_dir / "checkpoints" / f"{phase.name}_epoch{epoch:04d}{suffix}.pt"
        if phase.uses_target and self._sharded:  # each process its rows, then the main checkpoint
            save_policy_shard(path, self.policy.state_dict(), rank=self.acc.process_index, world=self.world,
                              fingerprint=self.fingerprint)
            self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            save_checkpoint(path, self._state(phase, epoch, iteration), fingerprint=self.fingerprint,
                            progress=(PHASES.index(phase), epoch * self.ipe + (iteration or self.ipe)))
        self.acc.wait_for_everyone()

    def _restore(self) -> tuple[Phase, int] | None:
        """Load the latest checkpoint of this output_dir; returns (phase, epoch to run next) or None. A
        mid-epoch checkpoint returns its own epoch and leaves where to go on in ``self._resume_at``."""
        ckpt_dir = self.out_dir / "checkpoints"
        latest = find_resumable(ckpt_dir) if self.resume else None
        if latest is None:
            if self.resume:
                self.log(f"--resume: no checkpoint in {ckpt_dir}, starting from scratch")
            return None
        if latest != find_latest(ckpt_dir):
            self.log(f"--resume: {ckpt_dir / LATEST_NAME} is missing or names no checkpoint; the newest complete "
                     f"checkpoint by its header is {latest.name}")
        state = load_checkpoint(latest, fingerprint=self.fingerprint, config=self.cfg, map_location="cpu")
        phase, epoch = phase_named(state["phase"]), int(state["epoch"])
        self._check_extension(state, latest)
        if phase is ADAPT:  # adaptation starts with a fresh optimiser (``_start_adaptation``)
            self._new_optimizer()
        try:
            load_model_state(self.net, state["model"], f"the model of checkpoint {latest}")
        except WeightsError as err:
            raise CheckpointError(str(err)) from err
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.memory.load_state_dict(state["memory"])
        self.loss_terms.load_state_dict(state["loss_terms"])
        if self.rolling is not None and state.get("rolling") is not None:
            self.rolling.load_state_dict(state["rolling"])
        if state.get("policy_shards"):
            self.policy.load_state_dict(load_policy_shard(
                latest, rank=self.acc.process_index, world=self.world, saved_world=int(state["policy_shards"]),
                fingerprint=self.fingerprint))
        elif state["policy"] is not None:
            self.policy.load_state_dict(state["policy"])
        restore_rng_state(state["rng"])
        self.results, self.history = dict(state["results"]), list(state["history"])
        self.skipped_steps = int(state["skipped_steps"])
        self.loss_trace = list(state["loss_trace"])
        self._seconds_before = float(state.get("seconds", 0.0))
        iteration = int(state.get("iteration", 0))
        if iteration:
            self._resume_at = (iteration, state["epoch_labels"])
            self.log(f"resumed from {phase.name} epoch {epoch}, iteration {iteration} ({latest})")
            return phase, epoch
        self.log(f"resumed from {phase.name} epoch {epoch} ({latest})")
        return phase, epoch + 1

    def _check_extension(self, state: dict, path: Path) -> None:
        """A resume may change ``train.iterations`` (extend or shorten a run): the schedule is defined by
        absolute iterations (lr milestones, epochs of ``iters_per_epoch``), so the extended run trains as if
        it had been planned that long. Refused when the checkpoint lies beyond the new end, or when the old
        run ended inside an epoch (its last epoch was short)."""
        saved = int(state.get("config", {}).get("train", {}).get("iterations", self.cfg["train"]["iterations"]))
        wanted = int(self.cfg["train"]["iterations"])
        if saved == wanted or state["phase"] != ADAPT.name:
            return
        epoch, iteration = int(state["epoch"]), int(state.get("iteration", 0))
        done = epoch * self.ipe + iteration if iteration else min((epoch + 1) * self.ipe, saved)
        if done > wanted:
            raise CheckpointError(f"{path} is at adaptation iteration {done}, beyond train.iterations={wanted}: "
                                  f"a resume cannot undo training")
        if done % self.ipe:
            raise CheckpointError(f"{path} ended inside an epoch (train.iterations={saved} is not a multiple of "
                                  f"iters_per_epoch={self.ipe}); it cannot be extended to {wanted}")
        self.log(f"--resume: train.iterations {saved} -> {wanted} "
                 f"(continuing at iteration {done})")

    # ------------------------------------------------------------------ training
    def _seconds(self) -> float:
        """Wall seconds this run has trained, summed over the sessions a resume joined."""
        return self._seconds_before + time.perf_counter() - self._started

    def run(self) -> dict:
        """Set up, resume (with ``resume``), pretrain, adapt, evaluate; returns the results."""
        self._started = time.perf_counter()
        self.setup()
        restored = self._restore()  # a checkpoint of another config is refused before config.yaml is written
        if self.acc.is_main_process:  # once data, model and checkpoint are known good
            self.out_dir.mkdir(parents=True, exist_ok=True)
            write_run_file(self.out_dir, "config.yaml", config_text(self.cfg).encode("utf-8"))
        phase, first_epoch = restored if restored else (PRETRAIN, 0)
        self._call_hooks("before_train")
        if phase is PRETRAIN:
            if restored is None:
                self._init_source_memory()
            self._train_phase(PRETRAIN, first_epoch)
            self._start_adaptation()
            first_epoch = 0
        self._train_phase(ADAPT, first_epoch)
        self._final_results()
        self._call_hooks("after_train")
        return self.results

    def _call_hooks(self, method: str, *args) -> None:
        """``method`` of every hook of ``self.hooks``, in list order."""
        for hook in self.hooks:
            getattr(hook, method)(self, *args)

    def _start_adaptation(self) -> None:
        """Between the phases: the source-only evaluation (once, a resume keeps it; skipped with
        ``eval.before_training: false``), then a fresh optimiser, the source class centres from the
        warmed-up model, the policy's first labels."""
        if "source_mAP" not in self.results and self.cfg["eval"]["before_training"]:
            metrics = self.evaluate()
            self.results.update({"source_mAP": metrics["mAP"], "source_rank1": metrics["rank1"]})
            self.log(f"source-only model on the target: mAP {100 * metrics['mAP']:.1f}% "
                     f"rank-1 {100 * metrics['rank1']:.1f}%")
        self._new_optimizer()
        self._init_source_memory()
        self._init_policy()

    def _final_results(self) -> dict:
        """The final evaluation, then the results: metrics, last label statistics, hashes."""
        metrics = self.evaluate()
        final = self.history[-1] if self.history else {}
        self.results.update({
            "adapted_mAP": metrics["mAP"], "adapted_rank1": metrics["rank1"],
            "adapted_rank5": metrics.get("rank5"), "bcubed_f": final.get("bcubed_f"),
            "clusters": final.get("clusters"), "outlier_frac": final.get("outlier_frac"),
            "skipped_steps": self.skipped_steps, "seconds": self._seconds(),
            "processes": self.world, "loss_trace": list(self.loss_trace), **self._bank_fingerprint(),
            "history": [{k: v for k, v in stats.items() if k != "labels"} for stats in self.history],
        })
        return self.results

    def _bank_fingerprint(self, block: int = 65536) -> dict:
        """Hashes of the labels and bank rows: equal on every rank, and comparable between runs (replicated
        or sharded: rows are read a block at a time, so a sharded bank is never gathered whole)."""
        labels = self.policy.labels().cpu().numpy()
        features = as_row_storage(self.policy.bank.features)
        digest, total = hashlib.sha256(), 0.0
        for start in range(0, self.policy.num_samples, block):
            rows = torch.arange(start, min(start + block, self.policy.num_samples), device=self.device)
            # collective when sharded
            part = features.gather_rows(rows).detach().float().cpu().numpy()
            digest.update(part.tobytes())
            total += float(part.astype("float64").sum())
        return {"labels_sha": hashlib.sha256(labels.tobytes()).hexdigest()[:16],
                "bank_sha": digest.hexdigest()[:16], "bank_sum": total}

    def evaluate(self) -> dict:
        """Retrieval metrics of the current model on ``eval.split`` (query against gallery)."""
        split = self.target if self.cfg["eval"]["split"] == "target" else self.source
        return evaluate_model(self.net, split, self.cfg, device=self.device, progress=self.progress)

    def epochs(self, phase: Phase) -> int:
        """Epochs of ``phase``: its iterations in epochs of ``train.iters_per_epoch`` (the last one
        may be short)."""
        return math.ceil(self.cfg["train"][phase.iterations_key] / self.ipe)

    def epoch_length(self, epoch: int, phase: Phase) -> int:
        """Batches in ``epoch`` of ``phase`` (the last epoch takes what is left of the iterations)."""
        total_iters = self.cfg["train"][phase.iterations_key]
        if epoch != self.epochs(phase) - 1:
            return self.ipe
        return min(self.ipe, total_iters - epoch * self.ipe)

    def _seed_epoch(self, epoch: int, phase: Phase) -> int:
        """``epoch`` counted from the start of the run (the samplers' seed): after the earlier
        phases' epochs."""
        return sum(self.epochs(earlier) for earlier in PHASES[:PHASES.index(phase)]) + epoch

    def _batches(self, epoch: int, phase: Phase, skip: int = 0):
        """(source, target) batches ``skip``.. of ``epoch``; the target sampler uses the epoch's labels."""
        train = self.cfg["train"]
        count = self.epoch_length(epoch, phase)
        common = {"epoch": self._seed_epoch(epoch, phase), "num_batches": count,
                  "num_replicas": self.world, "rank": self.acc.process_index, "skip": skip}
        source = None
        if self.source is not None and train["source_batch"] > 0:
            source = identity_batches(self.source.train, torch.tensor([s.pid for s in self.source.train]), self.cfg,
                                      batch_size=train["source_batch"], outliers="exclude", **common)
        target = None
        if phase.uses_target:
            outliers = "exclude" if self.target_samples == "labelled" else "singleton"
            target = identity_batches(self.target.train, self._epoch_labels, self.cfg,
                                      batch_size=train["target_batch"], outliers=outliers, **common)
        for _ in range(count - skip):
            yield (next(source) if source is not None else None), (next(target) if target is not None else None)

    def _train_phase(self, phase: Phase, first_epoch: int) -> None:
        """The epochs ``first_epoch``.. of ``phase``."""
        for epoch in range(first_epoch, self.epochs(phase)):
            self._train_epoch(epoch, phase)

    def _train_epoch(self, epoch: int, phase: Phase) -> None:
        """One epoch between its hooks (from where a mid-epoch checkpoint stopped, after a resume);
        a phase that updates the policy ends it with ``policy.epoch_end`` before the after_epoch
        hooks."""
        self.epoch_stats = {}
        self._call_hooks("before_epoch", epoch, phase)
        self._train_mode()
        start, labels = self._resume_at or (0, None)
        self._resume_at = None
        if phase.uses_target:  # the target sampler draws from the labels at the epoch's start
            self._epoch_labels = labels if labels is not None else self.policy.labels().cpu()
        bar = tqdm(self._batches(epoch, phase, skip=start), total=self.epoch_length(epoch, phase),
                   initial=start, desc=f"{phase.name} epoch {epoch}", disable=not self.progress,
                   leave=False)
        for index, (src, tgt) in enumerate(bar, start=start):
            self._call_hooks("before_step", epoch, phase, index)
            loss = self.run_step(src, tgt, phase)
            if loss is not None and index % self.cfg["train"]["log_every"] == 0:
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{self.optimizer.param_groups[0]['lr']:.2e}")
            self._call_hooks("after_step", epoch, phase, index, loss)
        if phase.updates_policy:
            self._refresh_policy(epoch)
        self._call_hooks("after_epoch", epoch, phase)

    def _train_mode(self) -> None:
        """Train mode; with ``train.freeze_bn`` BatchNorm statistics stay those of the start."""
        self.model.train()
        if self.cfg["train"]["freeze_bn"]:
            for module in self.model.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def run_step(self, src: dict | None, tgt: dict | None, phase: Phase) -> float | None:
        """One training step in the order of the module docstring; returns the loss (the mean over
        this process's batch), or None when a non-finite loss made it skip the step
        (``train.on_nonfinite``)."""
        num_source = src["img"].shape[0] if src is not None else 0
        batch_images = torch.cat([b["img"] for b in (src, tgt) if b is not None]).to(self.device)
        with self.acc.autocast():
            feats, outputs = embed_outputs(self.model, batch_images)
        f_s, f_t = feats[:num_source], feats[num_source:]
        none = torch.empty(0, dtype=torch.long, device=self.device)
        y_s = src["pid"].to(self.device) if src is not None else none
        idx_t, entries, positive = none, None, None
        if phase.uses_target:
            idx_t = tgt["index"].to(self.device)
            mode = self.cfg["loss"]["centres"]  # the default call keeps custom policies without the keyword working
            entries, positive = self.policy.memory_entries(centres=mode) if mode != "mean" \
                else self.policy.memory_entries()
        if self.cfg["loss"]["hybrid_memory"]:
            loss = self._memory_loss(f_s, y_s, f_t, idx_t, entries, positive)
        else:
            loss = feats.sum() * 0.0  # only loss.terms train the model (a zero that keeps the graph)
        if len(self.loss_terms.terms):
            target_labels = self.policy.labels()[idx_t] if phase.uses_target else none
            policy = self.policy if phase.uses_target else None
            batch = LossBatch(f_s, y_s, f_t, idx_t, target_labels, outputs=outputs, images=batch_images,
                              num_source=num_source, policy=policy, model=self.model,
                              target_entries=entries)
            for term in self.loss_terms(batch).values():
                loss = loss + term
        finite = bool(torch.isfinite(loss)) and bool(torch.isfinite(feats).all())
        finite = bool(self.acc.gather(torch.tensor([finite], device=self.device)).all())
        if not finite:
            return self._non_finite()
        if len(self.loss_trace) < 64:
            self.loss_trace.append(float(self.acc.gather(loss.detach().reshape(1)).mean()))
        self._optimise(loss)
        if phase.steps_scheduler:
            self.scheduler.step()
        if phase.updates_policy:  # explicit bank updates, identical on every process
            rows = self.acc.gather(idx_t)
            extra = ({"parts": self.acc.gather(F.normalize(outputs["parts"][num_source:].detach().float(), dim=2))}
                     if self._policy_parts() else {})
            self.policy.step(rows, self.acc.gather(f_t.detach()), self.target_cams.to(self.device)[rows], **extra)
            if self.rolling is not None:
                self._rolling_step()
        if num_source:
            self.memory.update_source(self.acc.gather(f_s.detach()), self.acc.gather(y_s))
        return float(loss.detach())

    def _rolling_step(self) -> None:
        """``train.rolling_refresh``: re-embed the stalest target rows (evaluation mode) and write them into
        the bank in place of their old value, through the policy's ``step`` (engine/rolling_refresh.py)."""
        rows = self.rolling.next_rows()
        fresh = extract_features(self.net, [self.rolling.own_batch(rows)], device=self.device, progress=False,
                                 parts=self._policy_parts())
        extra = {"parts": self.acc.gather(fresh["parts"].to(self.device))} if "parts" in fresh else {}
        rows = rows.to(self.device)
        feats = self.acc.gather(fresh["feats"].to(self.device))
        with replacing_rows(self.policy):
            self.policy.step(rows, feats, self.target_cams.to(self.device)[rows], **extra)

    def _memory_loss(
        self, f_s: torch.Tensor, y_s: torch.Tensor, f_t: torch.Tensor, idx_t: torch.Tensor,
        entries: torch.Tensor | None, positive: torch.Tensor | None,
    ) -> torch.Tensor:
        """The hybrid memory loss: source features against the class centres and, when the phase
        uses the target (``entries`` given), target features against the policy's entries."""
        if entries is None:
            none = torch.empty(0, dtype=torch.long, device=self.device)
            target = (None, None, f_s.new_zeros(0, self.feat_dim), none)
        else:
            target = self._memory_view(f_t, idx_t, entries, positive)
        return self.memory.loss(f_s, y_s, *target)["loss"]

    def _optimise(self, loss: torch.Tensor) -> None:
        """Backward (gradients clipped to ``train.grad_clip``), optimiser step, then the loss
        terms' own update."""
        self.acc.backward(loss)
        if self.cfg["train"]["grad_clip"] > 0:
            self.acc.clip_grad_norm_(self.model.parameters(), self.cfg["train"]["grad_clip"])
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.loss_terms.after_optimizer_step(self.net)

    @property
    def target_samples(self) -> str:
        """``train.target_samples`` resolved: "labelled" (outliers never enter a target batch or the memory)
        or "all" (outliers are instance entries); "auto" follows the policy's ``train_outliers``."""
        mode = self.cfg["train"]["target_samples"]
        if mode == "auto":
            return "all" if self.policy.train_outliers else "labelled"
        return mode

    def _memory_view(
        self, f_t: torch.Tensor, idx_t: torch.Tensor, entries: torch.Tensor, positive: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """What the hybrid memory loss sees of the target: everything, or with ``target_samples: labelled``
        the cluster entries only and the batch rows that have a label (the sampler drew labelled samples;
        an online policy may have made one an outlier since)."""
        if self.target_samples == "all":
            return f_t, idx_t, entries, positive
        outlier = self.policy.labels().to(self.device) < 0
        num_clusters = entries.shape[0] - int(outlier.sum())  # memory_entries: C centres, then one row per outlier
        if num_clusters <= 0:  # nothing labelled: train the instances rather than nothing
            return f_t, idx_t, entries, positive
        if bool((positive[~outlier] >= num_clusters).any()):
            raise RuntimeError(f"policy {self.policy.name!r}: memory_entries must list the cluster centres first")
        keep = ~outlier[idx_t]
        if not bool(keep.any()):  # every row of this batch lost its label since the sampler drew it
            return f_t, idx_t, entries, positive
        return f_t[keep], idx_t[keep], entries[:num_clusters], positive

    def _non_finite(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self.cfg["train"]["on_nonfinite"] == "stop":
            raise NonFiniteError("non-finite loss or features; stopping (train.on_nonfinite: stop). "
                                 "The banks were not updated with this batch.")
        self.skipped_steps += 1
        self.log(f"non-finite loss or features: step skipped, banks untouched "
                 f"({self.skipped_steps} so far)")
        return None


__all__ = ["CheckpointError", "NonFiniteError", "Trainer"]

"""Every configuration key streamlabel understands, declared once in :data:`KEYS`.

Each key states its default, the values it accepts (a numeric range or a list of choices)
and whether it counts for resume (the config fingerprint a checkpoint must match).
``DEFAULTS`` (the nested dict YAML files fill in), ``RANGES``, ``CHOICES``, ``FREE_MAPS`` and
``FINGERPRINT_EXCLUDE`` are derived from it.

A key not in ``DEFAULTS`` is an error (except inside ``policy``, whose keys are checked against the
chosen policy's parameters, and inside the free-form ``kwargs`` maps passed to dataset / model
builders). Types follow the defaults: an int may stand where a float is expected; ``None`` defaults
accept any value of the documented type.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from streamlabel.config.limits import MAX_BATCH, MAX_CPU_THREADS, MAX_IMAGE_SIDE, MAX_ITERATIONS, MAX_SEED, MAX_WORKERS

__all__ = ["CHOICES", "DEFAULTS", "FINGERPRINT_EXCLUDE", "FREE_MAPS", "KEYS", "RANGES", "Key"]


@dataclass(frozen=True)
class Key:
    """One configuration key. Bounds apply to a number, or to every item of a list of numbers."""

    default: object
    low: float | None = None  # smallest value allowed
    above: float | None = None  # values must be greater than this (an exclusive ``low``)
    high: float | None = None  # largest value allowed (needs ``low`` or ``above``)
    choices: tuple[str, ...] = ()  # the only values allowed
    resume: bool = True  # False: a checkpoint stays valid when only this key differs
    free: bool = False  # a map of keyword arguments passed through to a builder, keys unchecked

    def __post_init__(self) -> None:
        if self.low is not None and self.above is not None:
            raise ValueError("a key has either low or above, not both")
        if self.high is not None and self.low is None and self.above is None:
            raise ValueError("a key with high needs low or above")


# the order here is the order of a dumped config
KEYS: dict[str, Key] = {
    "seed": Key(0, low=0, high=MAX_SEED),
    "output_dir": Key("runs/demo", resume=False),
    "device": Key("auto", choices=("auto", "cpu", "cuda")),  # auto: accelerate decides
    # torch intra-op threads on the CPU (-1 = all cores but one, 0 = torch's default)
    "cpu_threads": Key(-1, low=-1, high=MAX_CPU_THREADS),
    # modules or .py files imported first: they may register policies, losses, models, datasets
    "imports": Key([]),
    # source: labelled domain (None = unsupervised); target: the unlabelled domain
    "data.source.name": Key("synthetic"),
    "data.source.root": Key("runs/data/synthetic_source"),
    "data.source.kwargs": Key({"domain": "source"}, free=True),
    "data.target.name": Key("synthetic"),
    "data.target.root": Key("runs/data/synthetic_target"),
    "data.target.kwargs": Key({"domain": "target"}, free=True),
    # upper bounds (config/limits.py): an absurd size is refused when the config is loaded, not met as an
    # out-of-memory crash after the datasets are read
    "data.height": Key(256, low=8, high=MAX_IMAGE_SIDE),
    "data.width": Key(128, low=8, high=MAX_IMAGE_SIDE),
    "data.num_instances": Key(4, low=1, high=MAX_BATCH),  # K images per identity in a P x K batch
    "data.num_workers": Key(2, low=0, high=MAX_WORKERS),
    "data.on_bad_image": Key("skip", choices=("skip", "raise")),
    "data.flip_p": Key(0.5, low=0.0, high=1.0),
    "data.pad": Key(10, low=0, high=MAX_IMAGE_SIDE),
    "data.erasing_p": Key(0.5, low=0.0, high=1.0),
    "model.name": Key("resnet50"),
    "model.kwargs": Key({}, free=True),
    "model.pretrained": Key(None),  # local weight file (nothing is downloaded)
    "policy": Key({"name": "hcd"}),  # other keys: the policy's parameters
    "loss.temperature": Key(0.05, above=0.0),  # tau of the hybrid memory (Eq. 1)
    "loss.source_momentum": Key(0.2, low=0.0, high=1.0),  # momentum of the source class centres
    # the hybrid memory loss (Eq. 1); false: only loss.terms train the model
    "loss.hybrid_memory": Key(True),
    # mean | normalised: target cluster entries are the plain mean (SpCL, HCD), or of unit length
    "loss.centres": Key("mean", choices=("mean", "normalised")),
    # extra terms beside the hybrid memory loss: {name: {weight: w, <params>}} (streamlabel.losses)
    "loss.terms": Key({}),
    "optim.lr": Key(3.5e-4, above=0.0),
    "optim.weight_decay": Key(5e-4, low=0.0),
    # iterations where the lr is multiplied by gamma
    "optim.milestones": Key([8000, 16000], low=0),
    "optim.gamma": Key(0.1, above=0.0, high=1.0),
    # a resume may extend a run; the trainer checks the checkpoint is not beyond the end
    "train.iterations": Key(24000, low=1, high=MAX_ITERATIONS, resume=False),
    "train.iters_per_epoch": Key(400, low=1, high=MAX_ITERATIONS),
    "train.source_batch": Key(64, low=0, high=MAX_BATCH),  # global batch of source images
    "train.target_batch": Key(64, low=1, high=MAX_BATCH),  # global batch of target images
    "train.pretrain_iterations": Key(0, low=0, high=MAX_ITERATIONS),  # supervised source-only warm-up before adaptation
    "train.amp": Key(True),  # mixed precision on CUDA only
    # convolutions in NHWC: fp32 still (sums in another order), faster on the CPU (results/channels_last.md)
    "train.channels_last": Key(True, resume=False),
    "train.sync_bn": Key(True),  # every BN sees the global batch, whatever the world size
    # auto | all | labelled: do outliers (-1) enter target batches and the memory?
    "train.target_samples": Key("auto", choices=("auto", "all", "labelled")),
    # BatchNorm in eval mode while training: fixed statistics, train features = eval ones
    "train.freeze_bn": Key(False),
    # how often (0 = never, where allowed)
    "train.log_every": Key(20, low=1, resume=False),
    "train.eval_every_epochs": Key(1, low=0, resume=False),
    "train.smoke": Key(False),  # every phase cut to seconds (engine/smoke.py)
    "train.rolling_refresh": Key(0.0, low=0.0, high=1.0),  # share of the target rows re-embedded per epoch
    "train.checkpoint_every_epochs": Key(1, low=0, resume=False),
    "train.checkpoint_every_iters": Key(0, low=0, resume=False),
    "train.grad_clip": Key(0.0, low=0.0),  # 0 = off
    "train.on_nonfinite": Key("skip", choices=("skip", "stop")),  # a NaN/Inf loss or feature
    "eval.split": Key("target", choices=("target", "source"), resume=False),  # the scored dataset
    "eval.batch_size": Key(128, low=1, high=MAX_BATCH, resume=False),
    "eval.flip": Key(False, resume=False),
    "eval.before_training": Key(True, resume=False),
    "log.tensorboard": Key(True, resume=False),
}


def _defaults(keys: dict[str, Key]) -> dict:
    """The nested dict of defaults, sections in the order of their first key."""
    out: dict = {}
    for path, key in keys.items():
        *parents, leaf = path.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = copy.deepcopy(key.default)
    return out


def _fingerprint_exclude(keys: dict[str, Key]) -> tuple[str, ...]:
    """The paths that do not count for resume: a section whose keys all do not count is named
    whole (``eval``), so the fingerprint drops it rather than keeping an empty mapping."""
    out: list[str] = []
    for path, key in keys.items():
        if key.resume:
            continue
        parts = path.split(".")
        top = path
        for n in range(1, len(parts)):
            prefix = ".".join(parts[:n])
            if not any(k.resume for p, k in keys.items() if p.startswith(prefix + ".")):
                top = prefix
                break
        if top not in out:
            out.append(top)
    return tuple(out)


DEFAULTS: dict = _defaults(KEYS)

# numeric ranges checked after merging: key path -> (low, high, low_inclusive)
RANGES: dict[str, tuple[float, float | None, bool]] = {
    path: (key.low if key.above is None else key.above, key.high, key.above is None)
    for path, key in KEYS.items() if key.low is not None or key.above is not None
}

CHOICES: dict[str, tuple[str, ...]] = {
    path: key.choices for path, key in KEYS.items() if key.choices
}

# maps whose keys are free (passed through to a builder)
FREE_MAPS: tuple[str, ...] = tuple(path for path, key in KEYS.items() if key.free)

# keys (or whole sections) that do not change what is trained: a checkpoint stays valid when only
# these differ
FINGERPRINT_EXCLUDE: tuple[str, ...] = _fingerprint_exclude(KEYS)

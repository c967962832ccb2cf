"""Every configuration key streamlabel understands, with its default: the schema YAML files fill in.

A key not in ``DEFAULTS`` is an error (except inside ``policy``, whose keys are checked against the
chosen policy's parameters, and inside the free-form ``kwargs`` maps passed to dataset / model
builders). Types follow the defaults: an int may stand where a float is expected; ``None`` defaults
accept any value of the documented type.
"""

from __future__ import annotations

DEFAULTS: dict = {
    "seed": 0,
    "output_dir": "runs/demo",
    "device": "auto",  # auto | cpu | cuda: accelerate decides with auto
    "cpu_threads": -1,  # torch intra-op threads on the CPU (-1 = all cores but one, 0 = torch's default)
    "imports": [],  # modules or .py files imported first: they may register policies, losses, models, datasets
    "data": {
        # source: labelled domain (None = unsupervised); target: the unlabelled domain
        "source": {"name": "synthetic", "root": "runs/data/synthetic_source", "kwargs": {"domain": "source"}},
        "target": {"name": "synthetic", "root": "runs/data/synthetic_target", "kwargs": {"domain": "target"}},
        "height": 256,
        "width": 128,
        "num_instances": 4,  # K images per identity in a P x K batch
        "num_workers": 2,
        "on_bad_image": "skip",  # skip | raise
        "flip_p": 0.5,
        "pad": 10,
        "erasing_p": 0.5,
    },
    "model": {
        "name": "resnet50",
        "kwargs": {},
        "pretrained": None,  # local weight file (nothing is downloaded)
    },
    "policy": {"name": "hcd"},  # other keys: the policy's parameters
    "loss": {
        "temperature": 0.05,  # tau of the hybrid memory (Eq. 1)
        "source_momentum": 0.2,  # momentum of the source class centres
        "hybrid_memory": True,  # the hybrid memory loss (Eq. 1); false: only loss.terms train the model
        "centres": "normalised",  # normalised | mean: target cluster entries of unit length, or the plain mean
        # extra terms beside the hybrid memory loss: {name: {weight: w, <params>}} (streamlabel.losses)
        "terms": {},
    },
    "optim": {
        "lr": 3.5e-4,
        "weight_decay": 5e-4,
        "milestones": [8000, 16000],  # iterations where the lr is multiplied by gamma
        "gamma": 0.1,
    },
    "train": {
        "iterations": 24000,
        "iters_per_epoch": 400,
        "source_batch": 64,  # global batch of source images
        "target_batch": 64,  # global batch of target images
        "pretrain_iterations": 0,  # supervised source-only warm-up before adaptation
        "amp": True,  # mixed precision on CUDA only
        "sync_bn": True,  # every BN sees the global batch, whatever the world size
        "target_samples": "auto",  # auto | all | labelled: do outliers (-1) enter target batches and the memory?
        "freeze_bn": False,  # BatchNorm in eval mode while training: fixed statistics, train features = eval ones
        "log_every": 20,
        "eval_every_epochs": 1,
        "checkpoint_every_epochs": 1,
        "checkpoint_every_iters": 0,
        "grad_clip": 0.0,
        "on_nonfinite": "skip",  # skip | stop: a NaN/Inf loss or feature
    },
    "eval": {
        "split": "target",  # which dataset's query/gallery to score
        "batch_size": 128,
        "flip": False,
    },
    "log": {"tensorboard": True},
}

# numeric ranges checked after merging: key path -> (low, high, low_inclusive)
RANGES: dict[str, tuple[float, float | None, bool]] = {
    "cpu_threads": (-1, None, True),
    "loss.temperature": (0.0, None, False),
    "loss.source_momentum": (0.0, 1.0, True),
    "optim.lr": (0.0, None, False),
    "optim.weight_decay": (0.0, None, True),
    "optim.gamma": (0.0, 1.0, False),
    "train.iterations": (1, None, True),
    "train.iters_per_epoch": (1, None, True),
    "train.source_batch": (0, None, True),
    "train.target_batch": (1, None, True),
    "train.pretrain_iterations": (0, None, True),
    "data.height": (8, None, True),
    "data.width": (8, None, True),
    "data.num_instances": (1, None, True),
    "data.num_workers": (0, None, True),
    "data.flip_p": (0.0, 1.0, True),
    "data.erasing_p": (0.0, 1.0, True),
    "eval.batch_size": (1, None, True),
}

CHOICES: dict[str, tuple[str, ...]] = {
    "device": ("auto", "cpu", "cuda"),
    "data.on_bad_image": ("skip", "raise"),
    "train.on_nonfinite": ("skip", "stop"),
    "train.target_samples": ("auto", "all", "labelled"),
    "loss.centres": ("normalised", "mean"),
    "eval.split": ("target", "source"),
}

# maps whose keys are free (passed through to a builder)
FREE_MAPS = ("data.source.kwargs", "data.target.kwargs", "model.kwargs")

# keys that do not change what is trained: a checkpoint stays valid when only these differ
FINGERPRINT_EXCLUDE = (
    "output_dir",
    "log",
    "eval",
    "train.checkpoint_every_epochs",
    "train.checkpoint_every_iters",
    "train.eval_every_epochs",
    "train.iterations",  # a resume may extend a run; the trainer checks the checkpoint is not beyond the end
    "train.log_every",
)
# bounds for keys that RANGES leaves open (0 = never / off where allowed)
EXTRA_RANGES: dict[str, tuple[float, float | None, bool]] = {
    "seed": (0, None, True),
    "data.pad": (0, None, True),
    "optim.milestones": (0, None, True),
    "train.grad_clip": (0.0, None, True),
    "train.log_every": (1, None, True),
    "train.eval_every_epochs": (0, None, True),
    "train.checkpoint_every_epochs": (0, None, True),
    "train.checkpoint_every_iters": (0, None, True),
}

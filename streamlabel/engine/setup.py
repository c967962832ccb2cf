"""Building what a training run needs from its config: datasets, loaders, model, optimiser."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from streamlabel.config.errors import ConfigError
from streamlabel.data import ReidDataset, build_dataset, build_transforms, verify_dataset
from streamlabel.data.image_dataset import ReidImageDataset
from streamlabel.data.samplers import IdentityBatchSampler
from streamlabel.methods import BankUpdatePolicy, build_policy
from streamlabel.methods.param_check import check_fits_samples
from streamlabel.models import build_model, load_pretrained


def build_domain(spec: dict | None, on_bad_image: str) -> ReidDataset | None:
    """The dataset of one domain (``{"name", "root", "kwargs"}``), images checked; None when absent."""
    if spec is None:
        return None
    try:
        dataset = build_dataset(spec["name"], Path(spec["root"]).expanduser(), **dict(spec.get("kwargs") or {}))
    except TypeError as err:  # a kwargs key the builder does not take
        raise ConfigError(f"dataset {spec['name']!r} (root {spec['root']}): bad 'kwargs': {err}") from err
    except FileExistsError as err:  # a generated dataset would have to write over files it did not write
        raise ConfigError(f"dataset {spec['name']!r} (root {spec['root']}): {err}") from err
    if not dataset.train:
        raise ValueError(f"dataset {spec['name']!r} at {spec['root']} has no training images")
    dataset = verify_dataset(dataset, on_error=on_bad_image)
    if not dataset.train:
        raise ValueError(f"dataset {spec['name']!r} at {spec['root']}: every training image is unreadable "
                         "(see the warning above for the files and reasons)")
    return dataset


def check_world_size(cfg: dict, world: int) -> None:
    """Refuse, before any work, a number of processes the batches cannot be split over: each process takes
    an equal share of a batch's identities (``train.*_batch`` / ``data.num_instances`` of them)."""
    per_id = cfg["data"]["num_instances"]
    for key in ("source_batch", "target_batch"):
        batch = cfg["train"][key]
        ids = batch // per_id
        if batch and ids % world:
            raise ConfigError(f"{world} processes cannot share train.{key}={batch} ({ids} identities x {per_id} "
                              f"images): each process takes an equal share of a batch's identities; launch a "
                              f"number of processes that divides {ids}, or change the batch")


def build_target_policy(cfg: dict, num_samples: int, feat_dim: int, device: torch.device) -> BankUpdatePolicy:
    """The bank update policy of ``cfg["policy"]`` for the target set; bad parameters are ConfigErrors."""
    params = dict(cfg["policy"])
    name = params.pop("name")
    try:
        check_fits_samples(name, params, num_samples)
        return build_policy(name, num_samples=num_samples, feat_dim=feat_dim, device=device, **params)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"'policy' (name {name!r}, {num_samples} target samples): {err}") from err


def train_transform(cfg: dict):
    data = cfg["data"]
    return build_transforms(True, data["height"], data["width"], flip_p=data["flip_p"], pad=data["pad"],
                            erasing_p=data["erasing_p"])


def test_transform(cfg: dict):
    return build_transforms(False, cfg["data"]["height"], cfg["data"]["width"])


def eval_loader(samples: list, cfg: dict) -> DataLoader:
    """Deterministic loader over ``samples`` (no augmentation), batch order = sample order."""
    return DataLoader(ReidImageDataset(samples, test_transform(cfg)), batch_size=cfg["eval"]["batch_size"],
                      shuffle=False, num_workers=cfg["data"]["num_workers"])


class _SlotSeededBatches:
    """Batch sampler wrapper: yields (index, slot) pairs, slot = position of the image in the global batch;
    the first ``skip`` batches are drawn (so slots stay where they were) but not yielded, nor loaded."""

    def __init__(self, sampler: IdentityBatchSampler, skip: int = 0) -> None:
        self.sampler = sampler
        self.skip = skip

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        local = self.sampler.batch_size // self.sampler.num_replicas
        for number, batch in enumerate(self.sampler):
            if number < self.skip:
                continue
            first = number * self.sampler.batch_size + self.sampler.rank * local
            yield [(int(index), first + j) for j, index in enumerate(batch)]


class _SlotSeededDataset(torch.utils.data.Dataset):
    """Draws each image's augmentation from a generator seeded by (seed, epoch, global slot).

    So the augmentation of a given image of a given global batch is the same whatever the number of
    processes and workers: a 2-process run sees exactly the batches of a 1-process run.
    """

    def __init__(self, dataset: ReidImageDataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> dict:
        index, slot = item
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + slot) % (2**63 - 1))
            return self.dataset[index]


def identity_batches(
    samples: list, labels: torch.Tensor, cfg: dict, *, batch_size: int, epoch: int, num_batches: int,
    num_replicas: int, rank: int, outliers: str, skip: int = 0,
) -> Iterator[dict]:
    """The P x K batches ``skip``..``num_batches - 1`` of this rank for ``epoch``, cycling the sampler if needed.

    Everything random is seeded from (seed, epoch, round, global slot), so a resume (at an epoch boundary,
    or mid-epoch with ``skip`` = batches already done, which are neither yielded nor loaded) replays the same
    batches, and the world size does not change what a global batch holds.
    """
    sampler = IdentityBatchSampler(labels, batch_size=batch_size, num_instances=cfg["data"]["num_instances"],
                                   outliers=outliers, seed=cfg["seed"], num_replicas=num_replicas, rank=rank)
    produced, round_index = 0, 0
    while produced < num_batches:
        sampler.set_epoch(epoch * 1000 + round_index)
        dataset = _SlotSeededDataset(ReidImageDataset(samples, train_transform(cfg)),
                                     seed=cfg["seed"] * 7919 + epoch * 1000 + round_index)
        resumed_round = produced < skip  # this round's loader was made before the checkpoint being resumed
        skipped = min(skip - produced, len(sampler)) if resumed_round else 0
        produced += skipped
        # making a loader's iterator draws once from the global RNG; a round begun before a mid-epoch
        # checkpoint drew before that checkpoint saved the RNG, so on resume it draws from a private generator
        loader = DataLoader(dataset, batch_sampler=_SlotSeededBatches(sampler, skipped),
                            num_workers=cfg["data"]["num_workers"],
                            generator=torch.Generator().manual_seed(0) if resumed_round else None)
        empty = skipped == 0
        for batch in loader:
            empty = False
            yield batch
            produced += 1
            if produced == num_batches:
                return
        if empty:
            raise ValueError("the identity sampler produced no batches (too few images for one batch?)")
        round_index += 1


def build_network(cfg: dict) -> torch.nn.Module:
    """The backbone of ``model.name`` with ``model.kwargs``, local pretrained weights if given, in the
    memory layout of ``train.channels_last``."""
    name, kwargs = cfg["model"]["name"], dict(cfg["model"]["kwargs"] or {})
    try:
        model = build_model(name, **kwargs)
    except (TypeError, ValueError, RuntimeError) as err:  # what the builder refuses (a plugin's too)
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"model {name!r} refuses model.kwargs {kwargs}: {type(err).__name__}: {err}") from err
    if cfg["model"]["pretrained"]:  # a tensor of another shape is an error here, not a silent re-init
        load_pretrained(model, cfg["model"]["pretrained"], strict_shapes=True)
    if not hasattr(model, "feat_dim"):
        raise ValueError(f"model {cfg['model']['name']!r} does not declare feat_dim")
    if cfg["train"]["channels_last"]:  # 4-D weights in NHWC: every convolution then runs channels-last
        model = model.to(memory_format=torch.channels_last)
    return model


def build_optimizer(
    model: torch.nn.Module, cfg: dict
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Adam with weight decay and a step schedule over iterations (HCD's recipe by default)."""
    optim = cfg["optim"]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=optim["lr"], weight_decay=optim["weight_decay"])
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(optim["milestones"]),
                                                     gamma=optim["gamma"])
    return optimizer, scheduler

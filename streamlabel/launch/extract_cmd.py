"""`streamlabel extract`: embed one split of a dataset with a config's model or a training checkpoint's.

Writes the ``.npz`` that ``streamlabel labels`` and ``streamlabel evaluate`` read: ``feats`` [N, D]
(float32, L2-normalised), ``pids``, ``camids`` [N] and ``names`` [N] (the image file names, in order).
The dataset is the config's (``--domain``), or any registered one with ``--dataset NAME --root DIR``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from streamlabel.launch.arg_checks import checked_device, output_file, path_argument
from streamlabel.launch.errors import InputError

SPLITS = ("train", "query", "gallery")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `streamlabel extract`."""
    model = parser.add_argument_group("model (a config's model.name + model.pretrained, or a checkpoint's)")
    model.add_argument("--config", type=path_argument, default=None, help="YAML config (default: configs/demo.yaml)")
    model.add_argument("--checkpoint", type=path_argument, metavar="CKPT",
                       help="a training checkpoint (file or checkpoints/ folder): its config and trained model")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (with --config)")
    data = parser.add_argument_group("data")
    data.add_argument("--split", choices=SPLITS, default="train", help="which split to embed")
    data.add_argument("--domain", choices=("target", "source"), default="target",
                      help="the config's dataset to embed (unless --dataset)")
    data.add_argument("--dataset", metavar="NAME", help="a registered dataset instead (market1501, folder, ...)")
    data.add_argument("--root", type=path_argument, help="the folder of --dataset")
    parser.add_argument("--out", type=path_argument, required=True, help="the .npz to write")
    parser.add_argument("--batch-size", type=int, default=None, help="images per forward (default: eval.batch_size)")
    parser.add_argument("--device", default=None, help="torch device (default: cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _config_and_weights(args: argparse.Namespace) -> tuple[dict, dict | None, str]:
    """(config, model state dict or None, what the model is) from ``--checkpoint`` or ``--config``."""
    if args.checkpoint is not None:
        if args.config is not None or args.overrides:
            raise InputError("give --checkpoint alone (its config is used), or --config with overrides")
        from streamlabel.engine.checkpoint import CheckpointError, load_checkpoint

        try:
            state = load_checkpoint(args.checkpoint, fingerprint=None)
        except CheckpointError as err:
            raise InputError(str(err)) from err
        cfg = state.get("config")
        if not isinstance(cfg, dict) or "model" not in state:
            raise InputError(f"{args.checkpoint}: checkpoint holds no config/model (not written by streamlabel "
                             f"train)")
        cfg["model"]["pretrained"] = None  # the checkpoint's weights replace any initial weights
        return cfg, state["model"], f"checkpoint {args.checkpoint}"
    from streamlabel.launch import train
    from streamlabel.launch.run_config import load_run_config

    config = args.config or train.default_config()
    cfg = load_run_config(config, args.overrides)
    return cfg, None, f"{cfg['model']['name']} of {config}"


def _dataset_spec(args: argparse.Namespace, cfg: dict) -> dict:
    if (args.dataset is None) != (args.root is None):
        raise InputError("give --dataset and --root together")
    if args.dataset is not None:
        if args.dataset == "synthetic":
            raise InputError("--dataset synthetic: use the config's synthetic domain (--domain) instead")
        return {"name": args.dataset, "root": str(args.root), "kwargs": {}}
    spec = cfg["data"][args.domain]
    if spec is None:
        raise InputError(f"the config has no {args.domain} dataset (data.{args.domain} is null); give --dataset "
                         f"and --root")
    return spec


def run(args: argparse.Namespace) -> dict:
    """Embed the split and write the dump; returns its summary."""
    inputs = [args.config, args.checkpoint, args.root]
    out = output_file(args.out, ".npz", inputs=inputs)
    if args.batch_size is not None and args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    device = checked_device(args.device)
    cfg, weights, source = _config_and_weights(args)
    spec = _dataset_spec(args, cfg)
    if spec["name"] == "synthetic":
        from streamlabel.launch.train import check_generated_datasets

        check_generated_datasets({"data": {"source": None, "target": spec}})
    if args.batch_size is not None:
        cfg["eval"]["batch_size"] = args.batch_size

    from streamlabel.engine.checkpoint import atomic_write
    from streamlabel.engine.setup import build_domain, build_network, eval_loader
    from streamlabel.evaluation import extract_features
    from streamlabel.models.weights import WeightsError, load_model_state

    model = build_network(cfg)
    if weights is not None:
        try:
            load_model_state(model, weights, f"the model of {source}")
        except WeightsError as err:
            raise InputError(str(err)) from err
    dataset = build_domain(spec, cfg["data"]["on_bad_image"])
    samples = getattr(dataset, args.split)
    if not samples:
        raise InputError(f"dataset {dataset.name} at {spec['root']} has no {args.split} images")
    feats = extract_features(model.to(device), eval_loader(samples, cfg), device=device, flip=cfg["eval"]["flip"],
                             progress=not args.quiet, desc=f"extract {dataset.name} {args.split}")
    arrays = {"feats": feats["feats"].numpy().astype(np.float32), "pids": feats["pids"].numpy(),
              "camids": feats["camids"].numpy(),
              "names": np.array([Path(samples[i].path).name for i in feats["indices"].tolist()])}
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda handle: np.savez(handle, **arrays))
    summary = {"out": str(out), "dataset": dataset.name, "split": args.split, "images": int(len(arrays["pids"])),
               "identities": int(len(np.unique(arrays["pids"]))), "cameras": int(len(np.unique(arrays["camids"]))),
               "feat_dim": int(arrays["feats"].shape[1]), "model": source}
    if not args.quiet:
        print(f"extract: {summary['images']} {args.split} images of {dataset.name} ({summary['identities']} ids, "
              f"{summary['cameras']} cameras) -> {out} [{summary['feat_dim']}-d, {source}]")
    return summary

"""`streamlabel labels`: pseudo labels of a feature dump with any bank update policy.

The dump is an .npz with ``feats`` [N, D] and optional ``camids`` and ``pids`` (then label quality is
reported). ``initialize`` runs on all features; ``--passes P`` then streams the samples through
``step`` in shuffled mini-batches of ``--batch-size`` (the online path on a fixed dump), calling
``epoch_end`` after every pass.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from streamlabel.config.errors import ConfigError
from streamlabel.config.limits import MAX_PASSES, MAX_SEED
from streamlabel.config.loading import import_plugins, parse_override_items
from streamlabel.engine.checkpoint import atomic_write
from streamlabel.engine.label_health import degenerate_message
from streamlabel.evaluation import label_quality_report
from streamlabel.launch.arg_checks import checked_device, in_range, output_file, path_argument
from streamlabel.launch.errors import CommandError, error_message
from streamlabel.launch.feature_dump import feature_rank, load_feature_dump, unit_rows
from streamlabel.launch.image_lookup import dump_names, image_paths
from streamlabel.methods import available_policies, build_policy
from streamlabel.methods.param_check import check_fits_samples


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--features", type=path_argument, required=True,
                        help=".npz with feats [N,D], optional camids, pids")
    parser.add_argument("--policy", default="hcd", help=f"bank update policy ({', '.join(available_policies())})")
    parser.add_argument("params", nargs="*", metavar="key=value", help="policy parameters, e.g. k=30 edge_share=0.5")
    parser.add_argument("--imports", nargs="+", default=[], metavar="MODULE_OR_FILE",
                        help="Python modules or .py files to import first: their @register_policy policies "
                             "can then be named by --policy (docs/custom_policy.md); runs their code")
    parser.add_argument("--out", type=path_argument, help="write the labels (int64, -1 = outlier) to this .npy file")
    parser.add_argument("--passes", type=int, default=0, help="streaming passes through step() after initialize")
    parser.add_argument("--batch-size", type=int, default=64, help="rows per step() in the streaming passes")
    parser.add_argument("--level", type=int, default=-1, help="label level to output (-1 = top)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the streaming order")
    parser.add_argument("--no-cameras", action="store_true",
                        help="withhold the dump's camera ids (the policy's rules without camera terms)")
    parser.add_argument("--montage", type=path_argument, metavar="PNG",
                        help="write a montage of a few pseudo-label clusters here (rows of member images, purity "
                             "against the dump's pids; needs --images)")
    parser.add_argument("--montage-clusters", type=int, default=8, help="clusters in the montage, largest to smallest")
    parser.add_argument("--images", type=path_argument, metavar="DIR",
                        help="the folder of the dump's images (for --montage; searched by file name)")
    parser.add_argument("--device", default="cpu", help="torch device for the banks")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _quality(labels: torch.Tensor, pids: np.ndarray | None) -> dict[str, float]:
    labels_np = labels.cpu().numpy()
    if pids is None:
        return {"clusters": int(labels_np.max()) + 1 if (labels_np >= 0).any() else 0,
                "outlier_frac": float((labels_np < 0).mean())}
    return label_quality_report(labels_np, pids)


def run(args: argparse.Namespace) -> dict:
    in_range("--passes", args.passes, 0, MAX_PASSES)
    in_range("--seed", args.seed, 0, MAX_SEED)
    in_range("--batch-size", args.batch_size, 1)
    out = output_file(args.out, ".npy", inputs=[args.features])
    montage = output_file(args.montage, ".png", flag="--montage", inputs=[args.features, args.out])
    in_range("--montage-clusters", args.montage_clusters, 1, 100)
    device = checked_device(args.device)
    try:
        import_plugins(args.imports, "--imports")
    except ConfigError as err:
        raise CommandError(str(err)) from err
    dump = load_feature_dump(args.features, optional=("pids", "camids", *(("names",) if montage else ())))
    if montage is not None:  # every picture input is checked before the labels are computed
        if "pids" not in dump:
            raise CommandError(f"{args.features}: --montage shows purity against true identities: the dump has no pids")
        if args.images is None:
            raise CommandError("--montage needs --images DIR: the folder of the dump's images")
        paths = image_paths(dump_names(dump, args.features), args.images, flag="--images")
    if dump["feats"].shape[0] < 2:
        raise CommandError(f"{args.features}: need at least 2 feature rows, got {dump['feats'].shape[0]}")
    params: dict = {}
    for item in parse_override_items(args.params):  # YAML values: 1e-3 is a float
        params.update(item)
    unit = unit_rows(dump["feats"])
    rank = feature_rank(unit)
    if rank <= 2 < unit.shape[1]:
        print(f"[streamlabel] warning: degenerate features: the {unit.shape[0]} rows span only {rank} "
              f"direction(s) of {unit.shape[1]}; labels cannot tell identities apart", file=sys.stderr)
    feats = torch.from_numpy(unit).to(device)
    with_cameras = "camids" in dump and not args.no_cameras
    cams = torch.from_numpy(dump["camids"]).long().to(device) if with_cameras else None
    pids = dump.get("pids")
    num, dim = feats.shape
    try:
        check_fits_samples(args.policy, params, num)
        policy = build_policy(args.policy, num_samples=num, feat_dim=dim, device=device, **params)
    except ValueError as err:
        raise CommandError(f"{args.features}: {err}") from err
    except (KeyError, TypeError) as err:
        raise CommandError(error_message(err)) from err
    levels = int(getattr(policy, "num_levels", 1))
    in_range(f"--level (policy {args.policy!r} has {levels} level(s))", args.level, -levels, levels - 1)
    start = time.perf_counter()
    policy.initialize(feats, cameras=cams)
    init_seconds = time.perf_counter() - start
    result: dict = {"policy": args.policy, "num_samples": num, "feat_dim": dim}
    result.update({f"init_{k}": v for k, v in _quality(policy.labels(args.level), pids).items()})
    result["init_seconds"] = init_seconds
    generator = torch.Generator().manual_seed(args.seed)
    steps = args.passes * ((num + args.batch_size - 1) // args.batch_size)
    stream_start = time.perf_counter()
    with tqdm(total=steps, desc="streaming steps", disable=args.quiet or steps == 0) as bar:
        for epoch in range(args.passes):
            order = torch.randperm(num, generator=generator).to(device)
            for begin in range(0, num, args.batch_size):
                rows = order[begin : begin + args.batch_size]
                policy.step(rows, feats[rows], None if cams is None else cams[rows])
                bar.update(1)
            policy.epoch_end(epoch)
    stream_seconds = time.perf_counter() - stream_start
    labels = policy.labels(args.level)
    note = degenerate_message(labels, cams)
    if note:  # the labels are written all the same; the researcher should know what they are
        print(f"[streamlabel] warning: {note}", file=sys.stderr)
    result.update(_quality(labels, pids))
    result.update({"passes": args.passes, "steps": steps, "stream_seconds": stream_seconds,
                   "ms_per_step": 1000.0 * stream_seconds / steps if steps else 0.0,
                   "seconds": time.perf_counter() - start})
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        array = labels.cpu().numpy().astype(np.int64)
        atomic_write(out, lambda handle: np.save(handle, array))
        result["out"] = str(out)
    if montage is not None:
        from streamlabel.evaluation.pictures import cluster_montage

        cameras = dump.get("camids", np.zeros(num, dtype=np.int64))
        cluster_montage(paths, labels.cpu().numpy(), pids, cameras, montage, clusters=args.montage_clusters)
        result["montage"] = str(montage)
    _print_summary(result)
    return result


def _print_summary(result: dict) -> None:
    line = f"{result['policy']}: {result['clusters']} clusters, {100 * result['outlier_frac']:.1f}% outliers"
    if "bcubed_f" in result:
        line += (f", BCubed P/R/F {result['bcubed_p']:.3f}/{result['bcubed_r']:.3f}/{result['bcubed_f']:.3f}"
                 f" (after initialize: F {result['init_bcubed_f']:.3f}), NMI {result['nmi']:.3f}")
    line += f", {result['seconds']:.1f} s"
    print(line)

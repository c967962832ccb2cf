"""`streamlabel evaluate`: mAP / CMC of feature dumps (.npz with ``feats``, ``pids``, ``camids``).

Either a query and a gallery file, or one file split by camera (query = ``--query-cam``, gallery = every
other camera). ``--rerank`` applies sparse k-reciprocal re-ranking before scoring.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from streamlabel.config.limits import MAX_NEIGHBOURS
from streamlabel.launch.arg_checks import checked_device, in_range, output_file, path_argument
from streamlabel.launch.errors import InputError
from streamlabel.launch.feature_dump import common_scale, load_feature_dump
from streamlabel.launch.image_lookup import dump_names, image_paths, images_under, split_folders


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("input (either --query and --gallery, or --split-by-camera)")
    src.add_argument("--query", type=path_argument, help="query features .npz (feats, pids, camids)")
    src.add_argument("--gallery", type=path_argument, help="gallery features .npz (feats, pids, camids)")
    src.add_argument("--split-by-camera", type=path_argument, metavar="FILE", help="one .npz split by camera")
    src.add_argument("--query-cam", type=int, default=0, help="query camera id for --split-by-camera")
    src.add_argument("--checkpoint", type=path_argument, metavar="CKPT",
                     help="a training checkpoint (file or checkpoints/ folder): embed its eval dataset's "
                          "query/gallery with its model")
    parser.add_argument("--metric", choices=("cosine", "euclidean"), default="cosine")
    parser.add_argument("--ranks", default="1,5,10", help="comma-separated CMC ranks to report")
    parser.add_argument("--chunk-size", type=int, default=1024, help="queries scored at once")
    parser.add_argument("--device", default=None, help="torch device (default: cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars (--checkpoint extraction)")
    pic = parser.add_argument_group("pictures")
    pic.add_argument("--show", type=path_argument, metavar="PNG",
                     help="write a ranked-retrieval grid here: queries with their top 10 gallery images, green "
                          "right / red wrong, the camera under each")
    pic.add_argument("--show-queries", type=int, default=6, help="queries in the grid, evenly spread")
    pic.add_argument("--images", type=path_argument, nargs="+", metavar="DIR",
                     help="feature dumps: the folder of their images (or two: query, gallery)")
    rr = parser.add_argument_group("re-ranking")
    rr.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (Zhong et al. 2017)")
    rr.add_argument("--k1", type=int, default=20, help="k-reciprocal neighbours that form each query's set")
    rr.add_argument("--k2", type=int, default=6, help="neighbours averaged in the local query expansion")
    rr.add_argument("--lambda-value", type=float, default=0.3,
                    help="weight of the original distance against the Jaccard distance, in [0, 1]")


def load_features(path: Path, names: bool = False) -> dict[str, np.ndarray]:
    """One feature dump with all of ``feats``, ``pids`` and ``camids``."""
    return load_feature_dump(path, required=("feats", "pids", "camids"), optional=("names",) if names else ())


def _select(data: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[mask] for k, v in data.items()}


# what --checkpoint reads from the config a checkpoint carries
_CHECKPOINT_CONFIG_KEYS = ("model.name", "model.kwargs", "eval.split", "eval.flip", "eval.batch_size",
                           "data.on_bad_image", "data.num_workers", "data.height", "data.width",
                           "train.channels_last")


def _config_gap(cfg: dict) -> str | None:
    """The first dotted key ``--checkpoint`` needs that ``cfg`` lacks (None when all are there)."""
    for dotted in _CHECKPOINT_CONFIG_KEYS:
        node: object = cfg
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return dotted
            node = node[part]
    split = cfg["eval"]["split"]
    domain = cfg.get("data", {}).get(split) if isinstance(split, str) else None
    if not isinstance(domain, dict):
        return f"data.{split}"
    return next((f"data.{split}.{k}" for k in ("name", "root") if k not in domain), None)


def _checkpoint_inputs(
    path: Path, device: str | None, progress: bool = True
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], str]:
    """Query and gallery features of the dataset a checkpoint's config evaluates on, with its model."""

    from streamlabel.engine.checkpoint import CheckpointError, load_checkpoint
    from streamlabel.engine.evaluator import check_evaluable
    from streamlabel.engine.setup import build_domain, build_network, eval_loader
    from streamlabel.evaluation import extract_features
    from streamlabel.models.weights import WeightsError, load_model_state

    try:
        state = load_checkpoint(path, fingerprint=None)
    except CheckpointError as err:
        raise InputError(str(err)) from err
    cfg = state.get("config")
    if not isinstance(cfg, dict) or "model" not in state:
        raise InputError(f"{path}: checkpoint holds no config/model (not written by streamlabel train)")
    gap = _config_gap(cfg)
    if gap:
        raise InputError(f"{path}: the config inside the checkpoint has no {gap!r} (written by another version of "
                         "streamlabel, or edited); it cannot say which model and dataset to evaluate")
    cfg["model"]["pretrained"] = None  # the checkpoint's weights replace any initial weights
    model = build_network(cfg)
    try:
        load_model_state(model, state["model"], f"the model of checkpoint {path}")
    except WeightsError as err:
        raise InputError(str(err)) from err
    domain = cfg["data"][cfg["eval"]["split"]]
    root = Path(domain["root"]) if domain and domain.get("root") else None
    if root is not None and not root.exists():  # never regenerate or guess a dataset the checkpoint names
        raise InputError(f"{path}: its dataset root {root} does not exist here; relative roots resolve against "
                         f"the folder `streamlabel train` ran in ({Path.cwd()} now): run from that folder")
    dataset = build_domain(domain, cfg["data"]["on_bad_image"])
    try:  # before any image is embedded
        check_evaluable(dataset, cfg["eval"]["split"])
    except ValueError as err:
        raise InputError(f"{path}: {err}") from err
    dev = checked_device(device)
    out = []
    for split, samples in (("query", dataset.query), ("gallery", dataset.gallery)):
        feats = extract_features(model.to(dev), eval_loader(samples, cfg), device=dev, flip=cfg["eval"]["flip"],
                                 progress=progress, desc=f"extract {dataset.name} {split}")
        out.append({k: feats[k].numpy() for k in ("feats", "pids", "camids")})
        out[-1]["paths"] = np.array([samples[i].path for i in feats["indices"].tolist()])
    return out[0], out[1], f"{path} on {dataset.name}"


def _inputs(args: argparse.Namespace) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], str]:
    if getattr(args, "checkpoint", None) is not None:
        if args.query is not None or args.gallery is not None or args.split_by_camera is not None:
            raise InputError("give --checkpoint alone, or feature files, not both")
        return _checkpoint_inputs(args.checkpoint, args.device, progress=not args.quiet)
    if args.split_by_camera is not None:
        if args.query is not None or args.gallery is not None:
            raise InputError("give either --split-by-camera or --query/--gallery, not both")
        data = load_features(args.split_by_camera, names=args.show is not None)
        is_query = data["camids"] == args.query_cam
        if not is_query.any():
            cams = ", ".join(str(c) for c in np.unique(data["camids"]))
            raise InputError(f"--query-cam {args.query_cam} not in {args.split_by_camera} (has {cams})")
        if is_query.all():
            raise InputError(f"all of {args.split_by_camera} is camera {args.query_cam}: empty gallery")
        source = f"{args.split_by_camera} (query cam {args.query_cam})"
        return _select(data, is_query), _select(data, ~is_query), source
    if args.query is None or args.gallery is None:
        raise InputError("need --query and --gallery, or --split-by-camera FILE")
    show = args.show is not None
    query, gallery = load_features(args.query, names=show), load_features(args.gallery, names=show)
    if query["feats"].shape[1] != gallery["feats"].shape[1]:
        raise InputError(
            f"feature dims differ: query {query['feats'].shape[1]}, gallery {gallery['feats'].shape[1]}"
        )
    return query, gallery, f"{args.query} vs {args.gallery}"


def _picture_paths(args: argparse.Namespace, query: dict, gallery: dict) -> tuple[list[str], list[str]]:
    """The image files of the query and gallery rows: from the checkpoint's dataset, or the dumps' names
    looked up under ``--images``."""
    if "paths" in query:
        return list(query["paths"]), list(gallery["paths"])
    first = args.split_by_camera or args.query
    folders = split_folders(args.images, 2)
    shared = images_under(folders[0]) if folders[0] == folders[1] and folders[0].is_dir() else None  # one scan
    return (image_paths(dump_names(query, first), folders[0], found=shared),
            image_paths(dump_names(gallery, args.split_by_camera or args.gallery), folders[1], found=shared))


def _write_grid(out: Path, count: int, query: dict, gallery: dict, paths: tuple[list[str], list[str]]) -> None:
    """The retrieval grid of ``count`` queries spread evenly over the query set (pictures.retrieval_grid)."""
    from streamlabel.evaluation.pictures import ranked_gallery, retrieval_grid

    rows = np.unique(np.linspace(0, len(query["pids"]) - 1, min(count, len(query["pids"]))).round().astype(int))
    ids = (query["pids"], query["camids"])
    ranked = ranked_gallery(query["feats"], *ids, gallery["feats"], gallery["pids"], gallery["camids"], rows)
    by_query = dict(zip(rows.tolist(), ranked, strict=True))
    retrieval_grid(paths[0], *ids, paths[1], gallery["pids"], gallery["camids"], by_query, out)


MAX_RANK = 1_000_000  # CMC ranks: the largest gallery of the field (MSMT17) holds 82,161 images


def _ranks(text: str) -> tuple[int, ...]:
    try:
        ranks = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError as err:
        raise InputError(f"--ranks must be comma-separated integers, got {text!r}") from err
    if not ranks or min(ranks) < 1 or max(ranks) > MAX_RANK:
        raise InputError(f"--ranks must be integers in [1, {MAX_RANK:,}], got {text!r}")
    return ranks


def run(args: argparse.Namespace) -> dict:
    from streamlabel.evaluation import evaluate_from_distances, evaluate_retrieval, iter_rerank, unscorable_reason

    ranks = _ranks(args.ranks)
    in_range("--chunk-size", args.chunk_size, 1)
    for flag, value in (("--k1", args.k1), ("--k2", args.k2)):
        in_range(flag, value, 1)
        in_range(flag, value, None, MAX_NEIGHBOURS)
    in_range("--lambda-value", args.lambda_value, 0.0, 1.0)
    if args.device is not None:
        checked_device(args.device)
    show = output_file(args.show, ".png", flag="--show",
                       inputs=[args.query, args.gallery, args.split_by_camera, args.checkpoint])
    in_range("--show-queries", args.show_queries, 1, 1000)
    query, gallery, source = _inputs(args)
    if show is not None:
        paths = _picture_paths(args, query, gallery)
    reason = unscorable_reason(query["pids"], query["camids"], gallery["pids"], gallery["camids"])
    if reason:  # an mAP of 0/0: said, not printed as 0 or NaN
        raise InputError(f"{source}: nothing could be scored: {reason}")
    start = time.perf_counter()
    query["feats"], gallery["feats"] = common_scale(query["feats"], gallery["feats"])
    ids = (query["pids"], query["camids"], gallery["pids"], gallery["camids"])
    if args.rerank:
        qf, gf = query["feats"], gallery["feats"]
        if args.metric == "cosine":  # squared Euclidean on unit vectors = 2 - 2 cos
            qf = qf / np.maximum(np.linalg.norm(qf, axis=1, keepdims=True), 1e-12)
            gf = gf / np.maximum(np.linalg.norm(gf, axis=1, keepdims=True), 1e-12)
        blocks = iter_rerank(
            qf, gf, k1=args.k1, k2=args.k2, lambda_value=args.lambda_value,
            chunk_size=min(args.chunk_size, 256), device=args.device,
        )  # fmt: skip
        res = evaluate_from_distances(blocks, *ids, ranks=ranks, device=args.device)
    else:
        res = evaluate_retrieval(
            query["feats"], query["pids"], query["camids"], gallery["feats"], gallery["pids"],
            gallery["camids"], ranks=ranks, chunk_size=args.chunk_size, metric=args.metric,
            device=args.device,
        )  # fmt: skip
    out = {k: v for k, v in res.items() if k != "cmc"}
    out.update(
        num_gallery=int(gallery["feats"].shape[0]),
        metric=args.metric,
        rerank=bool(args.rerank),
        seconds=time.perf_counter() - start,
    )
    if show is not None:
        _write_grid(show, args.show_queries, query, gallery, paths)
        out["show"] = str(show)
    shown = " ".join(f"rank-{k} {100 * out[f'rank{k}']:.1f}%" for k in ranks)
    print(
        f"{source}: mAP {100 * out['mAP']:.1f}% {shown} "
        f"({out['num_valid_queries']}/{out['num_queries']} queries, {out['num_gallery']} gallery"
        f"{', re-ranked' if args.rerank else ''})"
    )
    return out

"""Pseudo-label quality of every registered policy, and of the DBSCAN-Jaccard baselines, on real feature dumps.

For each dump (default: the CUHK03 pair-1 train embeddings in ../shared and the Market-1501 train dump that
``benchmarks/market_dumps.sh`` writes to runs/dumps/) it runs ``streamlabel labels`` (in-process,
``streamlabel.launch.labels_cmd.run``) once per policy with its default parameters, initialize only (the
offline clustering / the online bootstrap on the whole dump), hcd once more without camera ids, nplp and lbg
once more with the paper's eps rule (``PAPER_RULES``; their defaults calibrate eps), and the
baselines of ``streamlabel.methods.baselines.dbscan_jaccard`` (raw and camera-normalised, eps 0.5 and 0.6,
min_samples 4). BCubed P/R/F (outliers as singletons), NMI, clusters, outlier share and seconds go to
OUT/NAME.json and OUT/NAME.md (NAME: ``--name``, default labels_table; OUT: ``--out``, default
``runs/benchmarks/``, git-ignored). With ``--publish`` it writes the committed
``benchmarks/results/labels_table.json`` and ``docs/labels_table.md`` instead. A dump that is absent is
skipped with a note; with none at all it exits 0 and writes nothing.

    OMP_NUM_THREADS=1 python benchmarks/labels_table.py [--features A.npz B.npz] [--policies hcd,spcl]
                                                        [--threads 1] [--out DIR | --publish]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from streamlabel.evaluation.label_quality import label_quality_report
from streamlabel.launch import labels_cmd
from streamlabel.launch.feature_dump import load_feature_dump
from streamlabel.methods import available_policies
from streamlabel.methods.baselines import dbscan_jaccard

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import DOCS, add_output_arguments, commit, output_dir, wrote  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FEATURES = (REPO.parent / "shared" / "embeddings" / "cuhk03p1_train_osnet_x0_25_msmt17.npz",
                    REPO / "runs" / "dumps" / "market1501_train_osnet_x0_25_msmt17.npz")
BASELINES = [(f"dbscan-jaccard eps {eps}" + (" camera-normalised" if cams else ""), eps, cams)
             for cams in (False, True) for eps in (0.5, 0.6)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=Path, nargs="+", default=list(DEFAULT_FEATURES),
                        help="dumps .npz (feats, pids, camids)")
    parser.add_argument("--policies", default=None, help="comma-separated policy names (default: every registered one)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    add_output_arguments(parser, "labels_table", publishes_also="docs/NAME.md")
    return parser.parse_args(argv)


def choose_policies(text: str | None) -> list[str]:
    """The policies to run: all registered ones, or the listed ones (unknown names are an error)."""
    known = available_policies()
    if text is None:
        return known
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise SystemExit(f"labels_table: unknown policy {unknown or text!r}; registered: {', '.join(known)}")
    return names


# a feature dump has no part features: inclr can only cluster the global ones (plain Jaccard + DBSCAN)
DUMP_PARAMS = {"inclr": ["global_only=true"]}
# one more row each, with the paper's rule where the default calibrates it (methods/eps_tightening.py)
PAPER_RULES = {"nplp": ["max_cluster_share=1.0"], "lbg": ["eps=0.35"]}


def run_baseline(dump: dict, name: str, eps: float, with_cameras: bool) -> dict:
    """One DBSCAN-Jaccard baseline on a loaded dump, scored like the policies."""
    feats = torch.from_numpy(np.ascontiguousarray(dump["feats"])).float()
    cams = torch.from_numpy(dump["camids"]).long() if with_cameras else None
    start = time.perf_counter()
    labels = dbscan_jaccard(feats, cams, eps=eps).numpy()
    row = {"policy": name, "baseline": True, "num_samples": int(feats.shape[0])}
    row.update(label_quality_report(labels, dump["pids"]))
    row["seconds"] = time.perf_counter() - start
    return row


def run_policy(features: Path, name: str, *, cameras: bool = True, extra: list[str] | None = None) -> dict:
    """One ``streamlabel labels --features F --policy NAME [extra]`` run (``cameras=False``: the dump's camera
    ids withheld); errors are recorded, not raised."""
    params = DUMP_PARAMS.get(name, []) + (extra or [])
    parser = argparse.ArgumentParser()
    labels_cmd.add_arguments(parser)  # every option of `streamlabel labels` at its default
    args = parser.parse_args(["--features", str(features), "--policy", name, "--quiet", *params,
                              *([] if cameras else ["--no-cameras"])])
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = labels_cmd.run(args)
        except Exception as err:  # noqa: BLE001 - a policy in progress must not stop the table
            return {"policy": name, "error": f"{type(err).__name__}: {err}",
                    "seconds": time.perf_counter() - start}
    result["warnings"] = sorted({str(w.message) for w in caught})
    result["params"] = params + ([] if cameras else ["(no camera ids)"])
    return result


def row_name(row: dict) -> str:
    return " ".join([row["policy"], *row.get("params", [])])


def to_markdown(payload: dict) -> str:
    datasets = payload["datasets"]
    lines = [
        "# Pseudo-label quality of every policy on real feature dumps",
        "",
        "Each policy with its default parameters, `initialize` only (the first offline clustering; for hcd the "
        "first labels of its default rules), and the DBSCAN-Jaccard baselines (k1 30, k2 6, min_samples 4; "
        "`streamlabel.methods.baselines`), labels scored against the true identities (BCubed, outliers as "
        "singletons). Camera ids are given unless a row says otherwise.",
        "",
        f"Command: `{payload['command']}`",
        "",
        f"Commit `{payload.get('commit', '?')}`. Machine: {payload['machine']}; {payload['date']}.",
        "",
        "## BCubed F",
        "",
        "| method | " + " | ".join(d["name"] for d in datasets) + " |",
        "|---|" + "---:|" * len(datasets),
    ]
    names = list(dict.fromkeys(row_name(row) for d in datasets for row in d["rows"]))
    for name in names:
        cells = []
        for d in datasets:
            row = next((r for r in d["rows"] if row_name(r) == name), None)
            cells.append("" if row is None else ("error" if "error" in row else f"{row['bcubed_f']:.3f}"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    notes = []
    for d in datasets:
        lines += ["", f"## {d['name']}: `{d['features']}` ({d['num_samples']} samples)", "",
                  "| method | BCubed P | BCubed R | BCubed F | NMI | clusters | outliers (%) | seconds |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for row in d["rows"]:
            if "error" in row:
                lines.append(f"| {row['policy']} | error | | | | | | {row['seconds']:.1f} |")
                notes.append(f"- {d['name']}: `{row['policy']}` failed: {row['error']}")
                continue
            lines.append(f"| {row_name(row)} | {row['bcubed_p']:.3f} | {row['bcubed_r']:.3f} | "
                         f"{row['bcubed_f']:.3f} | {row['nmi']:.3f} | {row['clusters']} | "
                         f"{100 * row['outlier_frac']:.1f} | {row['seconds']:.1f} |")
            notes += [f"- {d['name']}: `{row['policy']}` warned: {message}" for message in row.get("warnings", [])]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def dataset_name(path: Path) -> str:
    """A short column name for a dump: its file name up to the first underscore."""
    return path.name.split("_")[0]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    present = [path for path in args.features if path.is_file()]
    for path in args.features:
        if not path.is_file():
            print(f"labels_table: skipped {path}: not found (needs ../shared; Market: benchmarks/market_dumps.sh)")
    if not present:
        return 0
    names = choose_policies(args.policies)
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    datasets = []
    failed = False
    for features in present:
        rows = []
        for name in names:
            print(f"[labels_table] {features.name}: {name} ...", flush=True)
            rows.append(run_policy(features, name))
        if "hcd" in names:
            rows.append(run_policy(features, "hcd", cameras=False))
        for name in [name for name in names if name in PAPER_RULES]:
            print(f"[labels_table] {features.name}: {name} {' '.join(PAPER_RULES[name])} ...", flush=True)
            rows.append(run_policy(features, name, extra=PAPER_RULES[name]))
        dump = load_feature_dump(features)
        for label, eps, with_cameras in BASELINES:
            print(f"[labels_table] {features.name}: {label} ...", flush=True)
            rows.append(run_baseline(dump, label, eps, with_cameras))
        failed |= any("error" in row for row in rows)
        ok = [row for row in rows if "error" not in row]
        datasets.append({"name": dataset_name(features), "features": os.path.relpath(features, REPO),
                         "num_samples": ok[0]["num_samples"] if ok else None, "rows": rows})
    command = "OMP_NUM_THREADS=1 python benchmarks/labels_table.py"
    if [p.resolve() for p in args.features] != [p.resolve() for p in DEFAULT_FEATURES]:
        command += " --features " + " ".join(str(p) for p in args.features)
    if args.policies:
        command += f" --policies {args.policies}"
    if args.publish:
        command += " --publish"
    payload = {
        "commit": commit(),
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": (f"{platform.machine()} ({os.cpu_count()} CPUs), torch {torch.__version__} with "
                    f"{torch.get_num_threads()} thread(s), load average {load_start:.1f} at the start and "
                    f"{os.getloadavg()[0]:.1f} at the end (shared machine: seconds are noisy)"),
        "policies": names,
        "datasets": datasets,
    }
    json_path = output_dir(args) / f"{args.name}.json"
    md_path = (DOCS if args.publish else output_dir(args)) / f"{args.name}.md"  # --publish: the docs page
    for path in (json_path, md_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    md_path.write_text(to_markdown(payload))
    print(to_markdown(payload))
    wrote("labels_table", json_path, md_path)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

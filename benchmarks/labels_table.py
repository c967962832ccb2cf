"""Pseudo-label quality of every registered policy on one feature dump (default: the CUHK03 embeddings).

Runs ``streamlabel labels`` (in-process, ``streamlabel.launch.labels_cmd.run``) once per policy with its
default parameters, initialize only (the offline clustering / the online bootstrap on the whole dump),
and writes BCubed P/R/F, NMI, clusters, outlier share and seconds to OUT/NAME.json and OUT/NAME.md (NAME:
``--name``, default labels_table; OUT: ``--out``, default ``runs/benchmarks/``, git-ignored). With ``--publish``
it writes the committed ``benchmarks/results/labels_table.json`` and ``docs/labels_table.md`` instead. Without
the dump it says so and exits 0 (nothing written).

    OMP_NUM_THREADS=1 python benchmarks/labels_table.py [--features F.npz] [--policies hcd,spcl] [--threads 1]
                                                        [--out DIR | --publish]
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

import torch

from streamlabel.launch import labels_cmd
from streamlabel.methods import available_policies

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import DOCS, add_output_arguments, commit, output_dir, wrote  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FEATURES = REPO.parent / "shared" / "embeddings" / "cuhk03p1_train_osnet_x0_25_msmt17.npz"
YARDSTICK = "SpCL-style DBSCAN on the Jaccard distance: BCubed F 0.620 (the reference of this dump)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=Path, default=DEFAULT_FEATURES, help="dump .npz (feats, pids, camids)")
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


def run_policy(features: Path, name: str) -> dict:
    """One ``streamlabel labels --features F --policy NAME`` run; errors are recorded, not raised."""
    params = DUMP_PARAMS.get(name, [])
    args = argparse.Namespace(features=features, policy=name, params=params, out=None, passes=0, batch_size=64,
                              level=-1, seed=0, device="cpu", quiet=True)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = labels_cmd.run(args)
        except Exception as err:  # noqa: BLE001 - a policy in progress must not stop the table
            return {"policy": name, "error": f"{type(err).__name__}: {err}",
                    "seconds": time.perf_counter() - start}
    result["warnings"] = sorted({str(w.message) for w in caught})
    result["params"] = params
    return result


def to_markdown(payload: dict) -> str:
    lines = [
        "# Pseudo-label quality of every policy on one feature dump",
        "",
        f"Feature dump `{payload['features']}` ({payload['num_samples']} samples, camera ids given). Each "
        "policy with its default parameters, `initialize` only (the first offline clustering; for hcd the first "
        "labels of its default rules), labels scored against the true identities."
        + (f" Reference: {YARDSTICK}." if payload["default_features"] else ""),
        "",
        f"Command: `{payload['command']}`",
        "",
        f"Commit `{payload.get('commit', '?')}`. Machine: {payload['machine']}; {payload['date']}.",
        "",
        "| policy | BCubed P | BCubed R | BCubed F | NMI | clusters | outliers (%) | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for row in payload["rows"]:
        if "error" in row:
            lines.append(f"| {row['policy']} | error | | | | | | {row['seconds']:.1f} |")
            notes.append(f"- `{row['policy']}` failed: {row['error']}")
            continue
        name = " ".join([row["policy"], *row.get("params", [])])
        lines.append(f"| {name} | {row['bcubed_p']:.3f} | {row['bcubed_r']:.3f} | {row['bcubed_f']:.3f} "
                     f"| {row['nmi']:.3f} | {row['clusters']} | {100 * row['outlier_frac']:.1f} "
                     f"| {row['seconds']:.1f} |")
        notes += [f"- `{row['policy']}` warned: {message}" for message in row.get("warnings", [])]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.features.is_file():
        print(f"labels_table: skipped, feature dump {args.features} not found (needs ../shared/embeddings)")
        return 0
    names = choose_policies(args.policies)
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    rows = []
    for name in names:
        print(f"[labels_table] {name} ...", flush=True)
        rows.append(run_policy(args.features, name))
    ok = [row for row in rows if "error" not in row]
    command = "OMP_NUM_THREADS=1 python benchmarks/labels_table.py"
    if args.features.resolve() != DEFAULT_FEATURES.resolve():
        command += f" --features {args.features}"
    if args.policies:
        command += f" --policies {args.policies}"
    if args.publish:
        command += " --publish"
    payload = {
        "commit": commit(),
        "features": os.path.relpath(args.features, REPO),
        "num_samples": ok[0]["num_samples"] if ok else None,
        "default_features": args.features.resolve() == DEFAULT_FEATURES.resolve(),
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": (f"{platform.machine()} ({os.cpu_count()} CPUs), torch {torch.__version__} with "
                    f"{torch.get_num_threads()} thread(s), load average {load_start:.1f} at the start and "
                    f"{os.getloadavg()[0]:.1f} at the end (shared machine: seconds are noisy)"),
        "policies": names,
        "rows": rows,
    }
    json_path = output_dir(args) / f"{args.name}.json"
    md_path = (DOCS if args.publish else output_dir(args)) / f"{args.name}.md"  # --publish: the docs page
    for path in (json_path, md_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    md_path.write_text(to_markdown(payload))
    print(to_markdown(payload))
    wrote("labels_table", json_path, md_path)
    return 1 if len(ok) < len(rows) else 0


if __name__ == "__main__":
    sys.exit(main())

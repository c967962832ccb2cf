"""Domain gap of the synthetic re-ID domains: source-trained probe on source vs target vs chance.

A tiny CNN (3 strided conv blocks, BN-neck, identity cross-entropy, flip augmentation) is trained on
the source train split and evaluated (mAP, rank-1) on source and target query/gallery; an "oracle"
probe trained on the target train ids bounds what adaptation could reach, random features give chance.
Also times the generator. Writes OUT/NAME.json and .md (NAME: ``--name``, default synthetic_domain_gap; OUT:
``--out``, default ``runs/benchmarks/``, git-ignored, or the committed ``benchmarks/results/`` with ``--publish``).

    python benchmarks/synthetic_domain_gap.py [--seeds 0,1,2] [--train-ids 150] [--test-ids 100]
                                              [--out DIR | --publish]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from streamlabel.data.synthetic import SyntheticReid
from streamlabel.data.synthetic_probe import probe_retrieval as retrieval
from streamlabel.data.synthetic_probe import train_probe

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import add_output_arguments, output_dir, wrote  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
def run_seed(seed: int, sizes: dict, epochs: int) -> dict:
    """One seed: generate both domains, train source and target probes, evaluate every pairing."""
    t0 = time.perf_counter()
    source = SyntheticReid("source", seed=seed, **sizes)
    target = SyntheticReid("target", seed=seed, **sizes)
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    src_net = train_probe(source.train, epochs, seed)
    tgt_net = train_probe(target.train, epochs, seed)
    train_s = time.perf_counter() - t0
    return {
        "seed": seed,
        "images": {"source": len(source), "target": len(target)},
        "generate_seconds": gen_s,
        "train_seconds": train_s,
        "source->source": retrieval(source, src_net, seed),
        "source->target": retrieval(target, src_net, seed),
        "target->target (oracle)": retrieval(target, tgt_net, seed),
        "chance (source)": retrieval(source, None, seed),
        "chance (target)": retrieval(target, None, seed),
    }


ROWS = ("source->source", "source->target", "target->target (oracle)", "chance (source)", "chance (target)")


def summarise(runs: list[dict]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation over seeds of every row's mAP and rank-1."""
    out = {}
    for row in ROWS:
        for metric in ("mAP", "rank1"):
            values = np.array([r[row][metric] for r in runs])
            out.setdefault(row, {})[metric] = float(values.mean())
            out[row][f"{metric}_std"] = float(values.std())
    return out


def markdown(report: dict) -> str:
    lines = [
        "# Synthetic domain gap",
        "",
        f"Probe: tiny CNN, identity cross-entropy, {report['epochs']} epochs; sizes {report['sizes']}; "
        f"seeds {report['seeds']}. Machine: {report['machine']}.",
        "",
        "| trained on -> evaluated on | mAP (%) | rank-1 (%) |",
        "|---|---|---|",
    ]
    for row, m in report["summary"].items():
        lines.append(
            f"| {row} | {100 * m['mAP']:.1f} ± {100 * m['mAP_std']:.1f} "
            f"| {100 * m['rank1']:.1f} ± {100 * m['rank1_std']:.1f} |"
        )
    gen = report["generator"]
    lines += [
        "",
        f"Generator: {gen['images']} images of {gen['size']} in {gen['seconds']:.1f} s "
        f"({gen['images_per_second']:.0f} images/s, {report['threads']} torch threads, same machine).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--train-ids", type=int, default=150)
    parser.add_argument("--test-ids", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for tiny convs)")
    add_output_arguments(parser, "synthetic_domain_gap")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = {"num_train_ids": args.train_ids, "num_test_ids": args.test_ids}
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = []
    for seed in seeds:
        runs.append(run_seed(seed, sizes, args.epochs))
        r = runs[-1]
        print(
            f"seed {seed}: source {r['source->source']['mAP']:.3f}  target {r['source->target']['mAP']:.3f}  "
            f"oracle {r['target->target (oracle)']['mAP']:.3f}  chance {r['chance (target)']['mAP']:.3f} mAP"
        )
    images = sum(r["images"]["source"] + r["images"]["target"] for r in runs)
    seconds = sum(r["generate_seconds"] for r in runs)
    report = {
        "sizes": sizes,
        "epochs": args.epochs,
        "seeds": seeds,
        "threads": args.threads,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "generator": {
            "images": images,
            "size": "64x32",
            "seconds": seconds,
            "images_per_second": images / seconds,
        },
        "summary": summarise(runs),
        "runs": runs,
    }
    out = output_dir(args)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{args.name}.json", out / f"{args.name}.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    md_path.write_text(text)
    print(text)
    wrote("synthetic_domain_gap", json_path, md_path)


if __name__ == "__main__":
    main()

"""Zero-shot reference on Market-1501: the MSMT17 OSNet-x0.25 before any adaptation, the model of
configs/cpu_market.yaml, through the project's own path (``streamlabel extract`` dumps of query and gallery,
made by benchmarks/market_dumps.sh, scored by ``streamlabel.evaluation.evaluate_retrieval``).

Standard protocol: per query, gallery images of the same identity and camera are removed, junk (-1)
ignored, distractors (0000) kept. Writes OUT/NAME.json and .md (NAME: ``--name``, default
zero_shot_market; OUT: ``--out``, default ``runs/benchmarks/``, or ``benchmarks/results/`` with ``--publish``).

    bash benchmarks/market_dumps.sh && python benchmarks/zero_shot_market.py [--dumps runs/dumps] [--publish]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streamlabel.evaluation import evaluate_retrieval
from streamlabel.launch.feature_dump import load_feature_dump

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import REPO, add_output_arguments, command_line, commit, machine, output_dir, write, wrote  # noqa: E402

DUMP = "market1501_{split}_osnet_x0_25_msmt17.npz"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dumps", type=Path, default=REPO / "runs" / "dumps", help="folder of market_dumps.sh")
    add_output_arguments(parser, "zero_shot_market")
    args = parser.parse_args(argv)
    paths = {split: args.dumps / DUMP.format(split=split) for split in ("query", "gallery")}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        print(f"zero_shot_market: {', '.join(missing)} missing: run benchmarks/market_dumps.sh first")
        return 0
    keys = ("feats", "pids", "camids")
    query, gallery = (load_feature_dump(paths[split], required=keys, optional=()) for split in ("query", "gallery"))
    scores = evaluate_retrieval(*(query[k] for k in keys), *(gallery[k] for k in keys))
    payload = {"commit": commit(), "command": command_line(), "machine": machine(),
               "query": len(query["pids"]), "gallery": len(gallery["pids"]),
               "mAP": float(scores["mAP"]), "rank1": float(scores["rank1"]),
               "rank5": float(scores["rank5"]), "rank10": float(scores["rank10"])}
    markdown = (f"# Zero-shot Market-1501 (MSMT17 OSNet-x0.25, no adaptation)\n\nCommit `{payload['commit']}`. "
                f"Command: `{payload['command']}`\n\n| query | gallery | mAP | rank-1 | rank-5 | rank-10 |\n"
                f"|---|---|---|---|---|---|\n| {payload['query']} | {payload['gallery']} | "
                f"{100 * payload['mAP']:.1f} | {100 * payload['rank1']:.1f} | {100 * payload['rank5']:.1f} | "
                f"{100 * payload['rank10']:.1f} |\n")
    wrote("zero_shot_market", *write(output_dir(args), args.name, payload, markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Zero-shot check: the imported MSMT17 OSNet-x0.25 (ONNX -> PyTorch) on CUHK03 pair-1 val.

Protocol (../shared/data/README.md): images resized to 256x128 (bilinear), RGB [0,1], ImageNet mean/std;
camera A query (shots 00-04) -> camera B gallery (shots 05-09), and the reverse. Reference: A->B rank-1
53.2% / mAP 52.3%, B->A 61.0% / 56.9% (train split: 30.4 / 28.1 and 31.6 / 28.9).
Writes OUT/NAME.json and .md (NAME: ``--name``, default zero_shot_cuhk03; OUT: ``--out``, default
``runs/benchmarks/``, git-ignored, or the committed ``benchmarks/results/`` with ``--publish``).

    python benchmarks/zero_shot_cuhk03.py [--shared ../shared] [--splits val,train] [--out DIR | --publish]
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
from torch.utils.data import DataLoader

from streamlabel.data import ReidImageDataset, build_dataset, build_transforms
from streamlabel.evaluation import evaluate_retrieval
from streamlabel.evaluation.extract import extract_features
from streamlabel.models import build_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import add_output_arguments, output_dir, wrote  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REFERENCE = {  # (rank1 %, mAP %) from ../shared/data/README.md
    ("val", "A->B"): (53.2, 52.3),
    ("val", "B->A"): (61.0, 56.9),
    ("train", "A->B"): (30.4, 28.1),
    ("train", "B->A"): (31.6, 28.9),
}
TOLERANCE = 0.5  # points


def run_split(
    model: torch.nn.Module, root: Path, split: str, batch_size: int, workers: int
) -> tuple[list[dict], dict]:
    """Both retrieval directions on one split; features are extracted once (query A + gallery B)."""
    ds = build_dataset("cuhk03_p1", root, eval_split=split, query_camera="A")
    feats = {}
    for name, samples in (("A", ds.query), ("B", ds.gallery)):
        loader = DataLoader(
            ReidImageDataset(samples, transform=build_transforms(False)), batch_size=batch_size, num_workers=workers
        )
        feats[name] = extract_features(model, loader, progress=False)
    rows = []
    for q, g in (("A", "B"), ("B", "A")):
        fq, fg = feats[q], feats[g]
        res = evaluate_retrieval(fq["feats"], fq["pids"], fq["camids"], fg["feats"], fg["pids"], fg["camids"])
        ref_r1, ref_map = REFERENCE[(split, f"{q}->{g}")]
        r1, mean_ap = 100 * float(res["rank1"]), 100 * float(res["mAP"])
        rows.append(
            {
                "split": split,
                "direction": f"{q}->{g}",
                "queries": len(fq["pids"]),
                "gallery": len(fg["pids"]),
                "rank1": round(r1, 2),
                "rank5": round(100 * float(res["rank5"]), 2),
                "mAP": round(mean_ap, 2),
                "ref_rank1": ref_r1,
                "ref_mAP": ref_map,
                "within_tolerance": abs(r1 - ref_r1) <= TOLERANCE and abs(mean_ap - ref_map) <= TOLERANCE,
            }
        )
    return rows, feats


def embedding_check(feats: dict, shared: Path, split: str, ds_samples: dict) -> float | None:
    """Max abs diff of our L2-normalised embeddings vs ../shared/embeddings (made with onnxruntime)."""
    path = shared / "embeddings" / f"cuhk03p1_{split}_osnet_x0_25_msmt17.npz"
    if not path.is_file():
        return None
    ref = np.load(path)
    row = {str(n): i for i, n in enumerate(ref["names"])}
    diffs = []
    for cam, f in feats.items():
        names = [Path(s.path).name for s in ds_samples[cam]]
        idx = [row[n] for n in names]
        diffs.append(np.abs(f["feats"].numpy() - ref["feats"][idx]).max())
    return float(max(diffs))


def to_markdown(result: dict) -> str:
    """A results table with the reference next to each measurement."""
    lines = [
        "# Zero-shot MSMT17 -> CUHK03 (pair 1), imported OSNet-x0.25",
        "",
        f"Model: `{result['model']}` imported with `build_model('onnx', path=...)` (BN folded, PyTorch).",
        "Protocol: 256x128 bilinear, ImageNet mean/std, cosine distance on L2-normalised embeddings.",
        f"Machine: {result['machine']}; extraction + evaluation {result['seconds']:.1f} s.",
        "",
        "| split | direction | queries | gallery | rank-1 % | ref | mAP % | ref | within 0.5 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        ok = "yes" if r["within_tolerance"] else "NO"
        lines.append(
            f"| {r['split']} | {r['direction']} | {r['queries']} | {r['gallery']} | {r['rank1']:.2f} | "
            f"{r['ref_rank1']} | {r['mAP']:.2f} | {r['ref_mAP']} | {ok} |"
        )
    for split, diff in result["max_abs_diff_vs_shared_embeddings"].items():
        lines.append("")
        lines.append(f"{split}: max abs diff of normalised embeddings vs ../shared/embeddings: {diff:.2e}")
    lines.append("")
    lines.append("Reproduce: `python benchmarks/zero_shot_cuhk03.py --publish` (add `--splits val,train` for train).")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--splits", default="val", help="comma list of val,train")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    add_output_arguments(parser, "zero_shot_cuhk03")
    args = parser.parse_args()

    onnx_path = args.shared / "models" / "osnet_x0_25_msmt17.onnx"
    model = build_model("onnx", path=onnx_path).eval()
    start = time.perf_counter()
    rows, diffs = [], {}
    for split in args.splits.split(","):
        split_rows, feats = run_split(model, args.shared / "data", split, args.batch_size, args.workers)
        rows += split_rows
        ds = build_dataset("cuhk03_p1", args.shared / "data", eval_split=split)
        diff = embedding_check(feats, args.shared, split, {"A": ds.query, "B": ds.gallery})
        if diff is not None:
            diffs[split] = diff
    result = {
        "benchmark": "zero_shot_cuhk03",
        "model": onnx_path.name,
        "rows": rows,
        "max_abs_diff_vs_shared_embeddings": diffs,
        "all_within_tolerance": all(r["within_tolerance"] for r in rows),
        "tolerance_points": TOLERANCE,
        "seconds": time.perf_counter() - start,
        "machine": (
            f"{platform.machine()} {os.cpu_count()} cpus, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads"
        ),
    }
    out = output_dir(args)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{args.name}.json", out / f"{args.name}.md"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    md_path.write_text(to_markdown(result))
    print(to_markdown(result))
    print(json.dumps(result))
    wrote("zero_shot_cuhk03", json_path, md_path)


if __name__ == "__main__":
    main()

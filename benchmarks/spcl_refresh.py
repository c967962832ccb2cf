"""The spcl policy's offline label refresh against a dense reference pipeline, a bare faiss self-k-NN and the
bare N x N product.

In one run, one thread, on the same synthetic bank (``benchmarks/engine.py``'s clustered mixture, N/10
identities, L2-normalised float32), each size and method in its own subprocess:

* ours: ``SpCLPolicy.refresh()`` with its defaults (k1 = 30, k2 = 6, eps 0.6 -+ 0.02, min_samples 4,
  ``knn_backend: torch``): exact blocked self-k-NN, sparse R* and V with the R* distances
  read from the k-NN lists, inverted-index Jaccard pairs within 0.62, three DBSCANs on the pairs and the
  reliability filter. Timed stages: knn, encoding (R*, V, query expansion), pairs, dbscan (3 runs);
* ours_faiss: the same with ``knn_backend: faiss`` (``faiss.knn``, faiss's own BLAS), up to ``--faiss-max``;
* dense: ``benchmarks/dense_kreciprocal.py``, the same algorithm on N x N matrices written from the
  re-ranking paper (distances, R, R*, V, V_qe, Jaccard matrix) and DBSCAN on the dense matrix, then
  the same reliability filter; run up to ``--dense-max``;
* faiss: a bare exact self-k-NN of the bank, ``faiss.IndexFlatIP`` + ``search(bank, 30)``, the floor
  any exact k-reciprocal pipeline pays with faiss; run up to ``--faiss-max``;
* product: the N x N inner product alone in float32 and bfloat16, and a top-31 per row (``run_product``):
  the compute floor of any k-NN, exact or reduced-precision; run up to ``--product-max``.

Ours, ours_faiss and dense must give the same labels (the three DBSCANs and the reliable labels). Memory: peak RSS
of the worker (VmHWM, features and interpreter included) and its growth over the timed part.

    python benchmarks/spcl_refresh.py [--sizes 12936,100000] [--dense-max 12936] [--faiss-max 100000]
                                      [--product-max 12936]
                                      [--dim 2048] [--threads 1] [--out DIR | --publish] [--render]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report as rep  # noqa: E402
from dense_kreciprocal import dense_spcl_labels  # noqa: E402
from engine import PeakMemory, synthetic_features  # noqa: E402

import streamlabel.methods.jaccard_pairs as jp  # noqa: E402
import streamlabel.methods.spcl as spcl_mod  # noqa: E402
from streamlabel.evaluation.reranking import resolve_knn_backend  # noqa: E402
from streamlabel.methods import build_policy  # noqa: E402

K_BARE = 30
LABEL_KEYS = ("tight", "labels", "loose", "reliable")


def _mib(num_bytes: float) -> float:
    return num_bytes / 2**20


def _timed(module, name: str, stages: dict, key: str, sink: list | None = None) -> None:
    """Wrap ``module.name`` so its wall seconds add to ``stages[key]`` (and results go to ``sink``)."""
    inner = getattr(module, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        out = inner(*args, **kwargs)
        stages[key] = stages.get(key, 0.0) + time.perf_counter() - start
        if sink is not None:
            sink.append(out)
        return out

    setattr(module, name, wrapper)


def _refresh(x: torch.Tensor, knn_backend: str) -> torch.Tensor:
    """One spcl refresh of a bank holding ``x`` (the bank's copy of x is made before the timing)."""
    policy = build_policy("spcl", num_samples=x.shape[0], feat_dim=x.shape[1], knn_backend=knn_backend)
    policy.bank.initialize(x)
    policy.initialized = True  # what initialize() does before its first refresh
    del x
    policy.refresh()
    return policy.labels()


def run_ours(x: torch.Tensor, knn_backend: str = "torch") -> tuple[dict, dict]:
    _refresh(x[:300].clone(), knn_backend)  # warm-up: first-touch of library code pages would count as peak RSS
    stages: dict[str, float] = {}
    dbscans: list[torch.Tensor] = []
    _timed(jp, "knn_sqeuclidean", stages, "knn_s")
    _timed(jp, "close_pairs", stages, "pairs_s")
    _timed(spcl_mod, "jaccard_pairs", stages, "jaccard_total_s")
    _timed(spcl_mod, "dbscan_pairs", stages, "dbscan_s", dbscans)
    policy = build_policy("spcl", num_samples=x.shape[0], feat_dim=x.shape[1], knn_backend=knn_backend)
    policy.bank.initialize(x)
    policy.initialized = True
    device = x.device
    del x  # the bank holds the features now
    with PeakMemory(torch.device("cpu")) as mem:
        start = time.perf_counter()
        policy.refresh()
        seconds = time.perf_counter() - start
    stages["encoding_s"] = stages.pop("jaccard_total_s") - stages["knn_s"] - stages["pairs_s"]
    labels = dict(zip(("labels", "tight", "loose"), dbscans, strict=True))  # the order cluster() runs them
    labels["reliable"] = policy.labels()
    return {"seconds": seconds, **stages, "peak_rss_mib": _mib(mem.peak), "peak_growth_mib": _mib(mem.growth),
            "pairs": int(policy.stats["jaccard_pairs"]), "clusters": int(policy.stats["clusters_dbscan"]),
            "knn_backend": resolve_knn_backend(knn_backend, device)}, labels


def run_ours_faiss(x: torch.Tensor) -> tuple[dict, dict]:
    """Ours with ``knn_backend: faiss``: the same refresh on faiss's exact k-NN (its own BLAS)."""
    return run_ours(x, "faiss")


def run_dense(x: torch.Tensor) -> tuple[dict, dict]:
    dense_spcl_labels(x[:300].clone())
    stages: dict[str, float] = {}
    with PeakMemory(torch.device("cpu")) as mem:
        start = time.perf_counter()
        labels = dense_spcl_labels(x, stages=stages)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, **stages, "peak_rss_mib": _mib(mem.peak), "peak_growth_mib": _mib(mem.growth),
            "clusters": int(labels["labels"].max()) + 1}, labels


def run_faiss(x: torch.Tensor) -> tuple[dict, dict]:
    import faiss

    def search(feats: torch.Tensor):
        index = faiss.IndexFlatIP(feats.shape[1])
        index.add(feats.numpy())
        return index.search(feats.numpy(), K_BARE)

    search(x[:300].clone())
    with PeakMemory(torch.device("cpu")) as mem:
        start = time.perf_counter()
        search(x)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_rss_mib": _mib(mem.peak), "peak_growth_mib": _mib(mem.growth)}, {}


def run_product(x: torch.Tensor, block: int = 2048) -> tuple[dict, dict]:
    """The N x N inner product alone, blocked as the torch k-NN does, in float32 (what every exact pipeline
    pays) and in bfloat16 (AMX / AVX512-BF16 where the CPU has them), and a top-31 selection per row of the
    float32 blocks: what a reduced-precision k-NN could at best spend before any exact re-scoring."""
    lowered = x.bfloat16()
    stages = {"product_fp32_s": 0.0, "product_bf16_s": 0.0, "top31_s": 0.0}
    for start in range(0, x.shape[0], block):
        begin = time.perf_counter()
        sims = x[start : start + block] @ x.T
        middle = time.perf_counter()
        sims.topk(31, dim=1)
        stages["product_fp32_s"] += middle - begin
        stages["top31_s"] += time.perf_counter() - middle
        begin = time.perf_counter()
        lowered[start : start + block] @ lowered.T
        stages["product_bf16_s"] += time.perf_counter() - begin
    return {"seconds": stages["product_fp32_s"], **stages, "peak_rss_mib": 0.0, "peak_growth_mib": 0.0}, {}


RUNS = {"ours": run_ours, "ours_faiss": run_ours_faiss, "dense": run_dense, "faiss": run_faiss,
        "product": run_product}


def worker(method: str, n: int, dim: int, seed: int, threads: int, out: Path) -> None:
    torch.set_num_threads(threads)
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except ImportError:
        pass
    # the features are passed without a reference kept here, so ours can drop them once the bank holds them
    result, labels = RUNS[method](synthetic_features(n, dim, seed)[0])
    torch.save(labels, out.with_suffix(".pt"))
    out.write_text(json.dumps({"n": n, "method": method, **result}))


def spawn(method: str, n: int, args: argparse.Namespace) -> tuple[dict, dict]:
    out = rep.output_dir(args) / f".{args.name}_{method}_{n}.json"
    cmd = [sys.executable, __file__, "--worker", method, "--n", str(n), "--dim", str(args.dim),
           "--seed", str(args.seed), "--threads", str(args.threads), "--worker-out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not out.exists():
        return {"failed": f"exit {proc.returncode}: {proc.stderr.strip()[-400:]}", "wall_s": wall}, {}
    result = json.loads(out.read_text())
    labels = torch.load(out.with_suffix(".pt"))
    out.unlink()
    out.with_suffix(".pt").unlink()
    result["wall_s"] = wall
    return result, labels


def compare(ours: dict, dense: dict) -> dict:
    """Samples whose label differs between ours and dense, per labelling (0 everywhere = same labels)."""
    return {key: int((ours[key] != dense[key]).sum()) for key in LABEL_KEYS}


def markdown(report: dict) -> str:
    lines = ["# spcl label refresh: ours vs a dense k-reciprocal + DBSCAN pipeline, a bare faiss self-k-NN and the "
             "bare N x N product", "",
             f"Commit {report['commit']}. Machine: {rep.machine_line(report['machine'])} (shared machine, "
             f"timings are noisy). D = {report['dim']}, synthetic clustered features (benchmarks/engine.py "
             f"mixture, N/10 identities), seed {report['seed']}, one thread everywhere (torch and faiss). "
             f"Command: `{report['command']}`.", "",
             "| N | ours s | ours peak RSS MiB | ours on faiss k-NN s | dense s | dense peak RSS MiB | bare faiss "
             "k-NN s | float32 N x N product s | dense / ours | ours / bare faiss | ours / product "
             "| same labels as dense | same labels on faiss |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [_table_row(row) for row in report["rows"]]
    lines += ["", "Stages (s) and memory growth over the timed part (MiB):", ""]
    for row in report["rows"]:
        for key in ("ours", "ours_faiss", "dense", "faiss"):
            res = row.get(key)
            if res and "failed" not in res:
                stages = ", ".join(f"{k[:-2]} {v:.1f}" for k, v in res.items() if k.endswith("_s") and k != "wall_s")
                extra = f"; {res['pairs']:,} Jaccard pairs <= 0.62" if "pairs" in res else ""
                clusters = f"; {res['clusters']:,} DBSCAN clusters at eps 0.6" if "clusters" in res else ""
                lines.append(f"- N = {row['n']:,} {key}: {stages or 'one search'}; growth "
                             f"{res['peak_growth_mib']:,.0f}{extra}{clusters}")
            elif res:
                lines.append(f"- N = {row['n']:,} {key}: failed ({res['failed'][-200:]})")
    lines += [line for row in report["rows"] for line in _floor_lines(row)]
    lines += ["", *NOTES, *(line for note in report.get("notes", []) for line in ("", note))]
    return "\n".join(lines) + "\n"


def _table_row(row: dict) -> str:
    """One size's row of the results table."""
    ok = {k for k in ("ours", "ours_faiss", "dense", "faiss", "product") if row.get(k) and "failed" not in row[k]}

    def cell(key: str, field: str, fmt: str) -> str:
        res = row.get(key)
        if res is None:
            return "not run"
        return "failed" if "failed" in res else format(res[field], fmt)

    def ratio(num: str, den: str, fmt: str) -> str:
        return format(row[num]["seconds"] / row[den]["seconds"], fmt) + "x" if {num, den} <= ok else "-"

    return (f"| {row['n']:,} | {cell('ours', 'seconds', '.1f')} | {cell('ours', 'peak_rss_mib', ',.0f')} | "
            f"{cell('ours_faiss', 'seconds', '.1f')} | {cell('dense', 'seconds', '.1f')} | "
            f"{cell('dense', 'peak_rss_mib', ',.0f')} | {cell('faiss', 'seconds', '.1f')} | "
            f"{cell('product', 'product_fp32_s', '.1f')} | {ratio('dense', 'ours', '.1f')} | "
            f"{ratio('ours', 'faiss', '.2f')} | {ratio('ours', 'product', '.2f')} | "
            f"{_same(row.get('label_diff'))} | {_same(row.get('faiss_label_diff'))} |")


def _same(diff: dict | None) -> str:
    """"yes", "NO (where)" or "-" for a label comparison."""
    if diff is None:
        return "-"
    return "yes" if not any(diff.values()) else "NO (" + ", ".join(f"{k} {v}" for k, v in diff.items()) + ")"


def _floor_lines(row: dict) -> list[str]:
    """What a 10x-over-dense refresh would have to fit in, next to the bare products (when measured)."""
    product, dense = row.get("product"), row.get("dense")
    if not product or "failed" in product:
        return []
    fp32, bf16, top = product["product_fp32_s"], product["product_bf16_s"], product["top31_s"]
    lines = ["", f"N = {row['n']:,}, the bare N x N product (blocks of 2048 rows, no selection, no re-scoring): "
             f"float32 {fp32:.1f} s, bfloat16 {bf16:.1f} s ({fp32 / bf16:.1f}x faster); a top-31 per row of "
             f"the float32 blocks {top:.1f} s."]
    if dense and "failed" not in dense:
        budget = dense["seconds"] / 10
        lines[-1] += (f" A refresh 10x faster than dense must fit in {budget:.1f} s: the float32 product alone is "
                      f"{fp32 / budget:.1f}x that, a bfloat16 product plus a top-31 {(bf16 + top) / budget:.1f}x.")
    return lines


NOTES = [
    "Peak RSS is the worker's VmHWM over the timed part (reset via /proc/self/clear_refs before it), so it "
    "includes the features (N x D float32: 101 MiB at N = 12,936, 781 MiB at 100,000; for ours, the "
    "policy's bank) and the interpreter; growth is that peak minus the RSS at the start of the timed part. "
    "'ours' is one `SpCLPolicy.refresh()` (the first one: alpha is fixed there), its stages from wrappers "
    "around the functions it calls (encoding = R*, V and query expansion: the Jaccard total less k-NN and pairs). "
    "'same labels' compares the DBSCAN labels at eps 0.58, 0.6, 0.62 and the reliable labels sample by sample.",
    "",
    "Where the time goes. The exact self-k-NN is O(N^2 D) for every method here; ours asks it for 4 k1 = 120 "
    "neighbours (the same cost as 30 on faiss) so that the distance of nearly every R* pair is read from the "
    "lists (the few that are not listed are computed from their feature rows), then everything else is "
    "O(N k1 k2) sparse work plus the inverted-index Jaccard, O(N nnz^2). The dense pipeline stores the N x N "
    "distances and then spends O(N^2 nnz) on the Jaccard matrix (every row reads one N-long column of V per "
    "non-zero), with ~12 N^2 bytes of N x N tensors alive at its peak (74.5 GiB of float32 matrices alone "
    "at N = 100,000, which is why it is not run there). The floor is the O(N^2 D) product itself: the bare "
    "faiss search (faiss's BLAS, a top-30 heap per row) and the float32 product row (torch's BLAS, no "
    "selection) measure it with each library; which BLAS is faster depends on the CPU.",
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="12936,100000", help="comma-separated N")
    parser.add_argument("--dense-max", type=int, default=12936, help="run the dense pipeline up to this N")
    parser.add_argument("--faiss-max", type=int, default=100000, help="run the bare faiss k-NN up to this N")
    parser.add_argument("--product-max", type=int, default=12936,
                        help="time the bare N x N product (float32, bfloat16) and top-31 up to this N")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch and faiss threads")
    parser.add_argument("--note", action="append", default=[], help="a line added under the results")
    parser.add_argument("--render", action="store_true", help="only rewrite OUT/NAME.md from OUT/NAME.json")
    rep.add_output_arguments(parser, "spcl_refresh")
    parser.add_argument("--worker", choices=sorted(RUNS), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.n, args.dim, args.seed, max(1, args.threads), Path(args.worker_out))
        return
    out = rep.output_dir(args)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{args.name}.json", out / f"{args.name}.md"
    if args.render:
        md_path.write_text(markdown(json.loads(json_path.read_text())))
        rep.wrote("spcl_refresh", md_path)
        return
    torch.set_num_threads(max(1, args.threads))
    report = {"commit": rep.commit(), "machine": rep.machine(), "dim": args.dim, "seed": args.seed,
              "threads": args.threads, "command": rep.command_line(), "notes": args.note, "rows": []}
    for n in (int(s) for s in args.sizes.split(",")):
        row: dict = {"n": n}
        row["ours"], ours_labels = spawn("ours", n, args)
        print(f"[N={n}] ours {row['ours']}", flush=True)
        if n <= args.dense_max:
            row["dense"], dense_labels = spawn("dense", n, args)
            print(f"[N={n}] dense {row['dense']}", flush=True)
            if ours_labels and dense_labels:
                row["label_diff"] = compare(ours_labels, dense_labels)
                print(f"[N={n}] label differences {row['label_diff']}", flush=True)
        if n <= args.faiss_max:
            row["ours_faiss"], faiss_labels = spawn("ours_faiss", n, args)
            print(f"[N={n}] ours with faiss k-NN {row['ours_faiss']}", flush=True)
            if ours_labels and faiss_labels:
                row["faiss_label_diff"] = compare(ours_labels, faiss_labels)
            row["faiss"], _ = spawn("faiss", n, args)
            print(f"[N={n}] faiss {row['faiss']}", flush=True)
        if n <= args.product_max:
            row["product"], _ = spawn("product", n, args)
            print(f"[N={n}] product {row['product']}", flush=True)
        report["rows"].append(row)
        rep.write(out, args.name, report, markdown(report))
    print(markdown(report))
    rep.wrote("spcl_refresh", json_path, md_path)


if __name__ == "__main__":
    main()

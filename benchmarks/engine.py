"""Online label engine (hcd) latency: per-mini-batch ``step`` against a bare k-NN of the same batch, and one
full offline ``refresh``.

For every bank size N (D = 2048 by default) a deterministic clustered mixture is generated (N/10
identities around unit-norm centres that themselves sit around N/100 coarse "look-alike" centres,
plus per-sample noise, L2-normalised, float32); ``--features F.npz`` uses a real feature dump instead
(its ``pids`` make the batches, its ``camids`` are given to the policy). The ``hcd`` policy
(``--dynamics``, default tracking) is initialised on it, then B = 64 target rows per step (PK style:
16 identities x 4 samples) are fed as slightly drifted copies of their original features (cos ~0.99).

Bare k-NN: right before each step, the product of the same 64 (drifted) rows with the bank and its
top-k (k = 30, own row excluded), timed in the same process on the same bank: the floor any online
engine that queries batch rows against the bank pays. The table gives the step / bare ratio.

Timing hooks (benchmark only, the engine is not changed): ``KnnGraph.refresh`` / ``KnnGraph.rebuild``
count as k-NN, ``split_blocks`` / ``merge_scores`` (where the presets call them) as label propagation
(LP), everything else of a step is bookkeeping. Nested hooks count once (outermost). CUDA is
synchronised before every clock read. Each size runs in its own subprocess so that peak RSS is per size.

Memory: on CPU the growth of the peak RSS over each phase (VmHWM reset through /proc/self/clear_refs,
falling back to ru_maxrss), and the bytes of every tensor the policy holds; on CUDA
``torch.cuda.max_memory_allocated``.

    python benchmarks/engine.py [--sizes 12936,32621,100000] [--features F.npz] [--dynamics tracking|paper]
                                [--steps 20] [--warmup 3] [--device cpu|cuda] [--out DIR | --publish]
                                [--name engine] [--no-refresh-above N] [--threads 1] [--append]

``--threads 1`` because with 2 OpenMP threads on the oversubscribed box the small batched solves were
~30x slower (spin-waiting), not because the engine wants it.
``--append`` adds sizes to an existing OUT/NAME.json. OUT is ``--out`` (default ``runs/benchmarks/``, git-ignored),
or the committed ``benchmarks/results/`` with ``--publish``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import streamlabel.methods.hcd_paper as paper_module
import streamlabel.methods.linking as linking_module
from streamlabel.banks.knn import topk_inner_product
from streamlabel.banks.knn_graph import KnnGraph
from streamlabel.banks.label_bank import HierarchicalLabelBank
from streamlabel.methods import build_policy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import add_output_arguments, commit, output_dir, wrote  # noqa: E402
from report import machine as report_machine  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BATCH_IDS, BATCH_PER_ID = 16, 4  # B = 64


# ----------------------------------------------------------------------------------------------- data
def synthetic_features(n: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(features [n, dim] float32 unit rows, identity [n]) of a two-level clustered mixture."""
    gen = torch.Generator().manual_seed(seed)
    num_ids = max(1, n // 10)
    num_groups = max(1, n // 100)
    groups = F.normalize(torch.randn(num_groups, dim, generator=gen), dim=1)
    group_of_id = torch.randint(num_groups, (num_ids,), generator=gen)
    centres = F.normalize(groups[group_of_id] + 1.2 * F.normalize(torch.randn(num_ids, dim, generator=gen), dim=1),
                          dim=1)
    identity = torch.arange(n) % num_ids
    identity = identity[torch.randperm(n, generator=gen)]
    feats = torch.empty(n, dim)
    for start in range(0, n, 8192):  # chunked so the temporary noise never doubles the memory
        stop = min(n, start + 8192)
        noise = F.normalize(torch.randn(stop - start, dim, generator=gen), dim=1)
        feats[start:stop] = F.normalize(centres[identity[start:stop]] + 0.8 * noise, dim=1)
    return feats, identity


def batches(identity: torch.Tensor, count: int, seed: int) -> list[torch.Tensor]:
    """``count`` PK batches (16 identities x 4 samples) of bank row indices."""
    gen = torch.Generator().manual_seed(seed + 1)
    order = torch.argsort(identity, stable=True)
    sizes = torch.bincount(identity)
    starts = torch.cumsum(sizes, 0) - sizes
    out = []
    for _ in range(count):
        ids = torch.randperm(sizes.numel(), generator=gen)[:BATCH_IDS]
        pick = [order[starts[i] + torch.randperm(int(sizes[i]), generator=gen)[:BATCH_PER_ID]] for i in ids.tolist()]
        out.append(torch.cat(pick))
    return out


def drifted(feats: torch.Tensor, rows: torch.Tensor, gen: torch.Generator, scale: float = 0.14) -> torch.Tensor:
    """Noisy copies of bank rows (cosine ~0.99 to the originals), like a slowly moving network."""
    base = feats[rows]
    noise = F.normalize(torch.randn(base.shape, generator=gen), dim=1)
    return F.normalize(base + scale * noise, dim=1)


# -------------------------------------------------------------------------------------------- timing
class Clock:
    """Accumulating timers for named categories; nested timed calls count only in the outermost."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.totals: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.depth = 0

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def now(self) -> float:
        self.sync()
        return time.perf_counter()

    def reset(self) -> None:
        self.totals.clear()
        self.calls.clear()

    def wrap(self, name: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            if self.depth:
                return fn(*args, **kwargs)
            self.depth += 1
            start = self.now()
            try:
                return fn(*args, **kwargs)
            finally:
                self.totals[name] = self.totals.get(name, 0.0) + self.now() - start
                self.calls[name] = self.calls.get(name, 0) + 1
                self.depth -= 1

        return timed


@contextlib.contextmanager
def timing_hooks(clock: Clock):
    """Patch the engine's k-NN, LP and centre-normalisation entry points with timers, restore after."""
    patches = [
        (KnnGraph, "refresh", "knn"),
        (KnnGraph, "rebuild", "knn"),
        (paper_module, "split_blocks", "lp"),
        (paper_module, "merge_scores", "lp"),
        (linking_module, "split_blocks", "lp"),
        (HierarchicalLabelBank, "centres", "centres"),
    ]
    saved = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in patches]
    try:
        for owner, attr, name in patches:
            setattr(owner, attr, clock.wrap(name, getattr(owner, attr)))
        yield
    finally:
        for owner, attr, original in saved:
            setattr(owner, attr, original)


# -------------------------------------------------------------------------------------------- memory
def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    """Peak memory growth over a phase: CUDA max allocated, or CPU peak RSS (VmHWM) minus RSS at start."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.resettable = False
            with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
                self.resettable = True
            self.start = (_status_kib("VmRSS") or 0) * 1024
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            hwm = _status_kib("VmHWM") if self.resettable else None
            self.peak = hwm * 1024 if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.growth = max(0, self.peak - self.start)


def policy_bytes(policy) -> dict[str, int]:
    """Bytes of every tensor the policy holds, grouped: bank, label-bank sums, labels+sizes, graphs."""

    def size(t: torch.Tensor) -> int:
        return t.numel() * t.element_size()

    lb = policy.label_bank
    out = {
        "bank": size(policy.bank.features),
        "label_sums": size(lb.sums),
        "labels_sizes": size(lb.labels) + size(lb.sizes),
        "graphs": sum(size(g.idx) + size(g.sims) for g in policy.graphs),
    }
    out["total"] = sum(out.values())
    out["o_nk"] = out["labels_sizes"] + out["graphs"]  # everything except the N x D matrices
    return out


# --------------------------------------------------------------------------------------------- run
def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def cluster_counts(policy) -> list[int]:
    return [policy.label_bank.num_clusters(level) for level in range(policy.num_levels)]


def load_bank(n: int, dim: int, seed: int, features: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(features, identity, cameras or None): the synthetic mixture of size n, or a real dump."""
    if not features:
        feats, identity = synthetic_features(n, dim, seed)
        return feats, identity, None
    data = np.load(features)
    identity = torch.from_numpy(np.unique(data["pids"], return_inverse=True)[1].ravel()).long()
    cams = torch.from_numpy(data["camids"]).long() if "camids" in data else None
    return F.normalize(torch.from_numpy(data["feats"]).float(), dim=1), identity, cams


def bare_knn(queries: torch.Tensor, bank: torch.Tensor, rows: torch.Tensor, k: int, clock: Clock) -> float:
    """Seconds of the B x N product of the batch with the bank and its top-k (own rows excluded)."""
    start = clock.now()
    topk_inner_product(queries, bank, k, query_ids=rows)
    return clock.now() - start


def run_size(n: int, dim: int, steps: int, warmup: int, device: torch.device, seed: int, refresh: bool,
             features: str = "", dynamics: str = "tracking", bank_dtype: str = "float32") -> dict:
    """Initialise, step and refresh one bank of n rows; returns the measurements."""
    log = functools.partial(print, f"[N={n}]", flush=True)
    clock = Clock(device)
    t0 = time.perf_counter()
    feats, identity, cams = load_bank(n, dim, seed, features)
    n, dim = feats.shape
    result: dict = {"n": n, "dim": dim, "batch": BATCH_IDS * BATCH_PER_ID, "steps": steps, "warmup": warmup,
                    "bank": Path(features).name if features else "synthetic", "dynamics": dynamics}
    log(f"features {tuple(feats.shape)} ({result['bank']}) in {time.perf_counter() - t0:.1f}s")
    policy = build_policy("hcd", num_samples=n, feat_dim=dim, device=device, seed=seed, dynamics=dynamics,
                          bank_dtype=bank_dtype, sums_dtype=bank_dtype)
    result["params"] = {k: v for k, v in policy.config.items() if k not in ("num_samples", "feat_dim")}
    feats_dev = feats.to(device)
    cams_dev = None if cams is None else cams.to(device)

    with timing_hooks(clock):
        log("initialize (exact k-NN of the whole bank, first labels) ...")
        clock.reset()
        with PeakMemory(device) as mem:
            start = clock.now()
            policy.initialize(feats_dev, cams_dev)
            init_s = clock.now() - start
        result["init"] = {"seconds": init_s, "knn_s": clock.totals.get("knn", 0.0), "lp_s": clock.totals.get("lp", 0.0),
                          "rounds": policy.stats.get("rounds"), "peak_growth_bytes": mem.growth,
                          "clusters": cluster_counts(policy)}
        log(f"initialize {init_s:.1f}s (k-NN {result['init']['knn_s']:.1f}s, LP {result['init']['lp_s']:.1f}s), "
            f"clusters per level {result['init']['clusters']}")

        gen = torch.Generator().manual_seed(seed + 2)
        plan = batches(identity, warmup + steps, seed)
        records = []
        with PeakMemory(device) as mem:
            for i, rows in enumerate(plan):
                batch = drifted(feats, rows, gen).to(device)
                rows = rows.to(device)
                bare = bare_knn(batch, policy.bank.features, rows, policy.k, clock)
                clock.reset()
                start = clock.now()
                policy.step(rows, batch, None if cams_dev is None else cams_dev[rows])
                total = clock.now() - start
                knn, lp, centres = (clock.totals.get(key, 0.0) for key in ("knn", "lp", "centres"))
                rec = {"total": total, "bare_knn": bare, "knn": knn, "lp": lp, "bookkeeping": total - knn - lp,
                       "centres": centres, "knn_calls": clock.calls.get("knn", 0),
                       "lp_calls": clock.calls.get("lp", 0), "centres_calls": clock.calls.get("centres", 0)}
                if i >= warmup:
                    records.append(rec)
                tag = "warm-up" if i < warmup else "step"
                log(f"{tag} {i + 1}/{len(plan)}: {1e3 * total:.1f} ms, bare k-NN {1e3 * bare:.1f} ms (k-NN lists "
                    f"{1e3 * knn:.1f}, LP {1e3 * lp:.1f}, bookkeeping {1e3 * (total - knn - lp):.1f})")
        totals = [r["total"] for r in records]
        result["step"] = {
            "median_ms": 1e3 * statistics.median(totals),
            "p90_ms": 1e3 * percentile(totals, 0.9),
            "mean_ms": 1e3 * statistics.fmean(totals),
            "bare_knn_median_ms": 1e3 * statistics.median(r["bare_knn"] for r in records),
            "ratio_to_bare_knn": statistics.median(r["total"] / r["bare_knn"] for r in records),
            "breakdown_median_ms": {key: 1e3 * statistics.median(r[key] for r in records)
                                    for key in ("knn", "lp", "bookkeeping", "centres")},
            "peak_growth_bytes": mem.growth,
            "records": records,
        }
        result["policy_bytes"] = policy_bytes(policy)
        result["clusters_after_steps"] = cluster_counts(policy)

        if refresh:
            log("refresh (exact k-NN graphs of every level + dynamics over every unit) ...")
            clock.reset()
            with PeakMemory(device) as mem:
                start = clock.now()
                policy.refresh()
                refresh_s = clock.now() - start
            result["refresh"] = {"seconds": refresh_s, "knn_s": clock.totals.get("knn", 0.0),
                                 "lp_s": clock.totals.get("lp", 0.0), "peak_growth_bytes": mem.growth,
                                 "clusters": cluster_counts(policy)}
            result["ratio_refresh_to_step"] = refresh_s / (result["step"]["median_ms"] / 1e3)
            log(f"refresh {refresh_s:.1f}s, ratio refresh / median step = {result['ratio_refresh_to_step']:.0f}")
    if device.type == "cpu":
        result["process_peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    else:
        result["process_peak_cuda_bytes"] = torch.cuda.max_memory_allocated(device)
    return result


def machine(device: torch.device) -> dict:
    """report.machine() and the device (with the GPU's name on CUDA)."""
    info = {**report_machine(), "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _seconds(phase: dict | None) -> str:
    return f"{phase['seconds']:.1f}" if phase else "-"


def mib(value: float) -> str:
    return f"{value / 2**20:,.0f}"


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Online label engine (hcd): step latency vs a bare k-NN of the batch, and vs an offline refresh",
        "",
        f"Commit `{report.get('commit', '?')}`. Machine: {m['cpu']} ({m['cpu_count']} CPUs, {m['memory_gib']} GiB), "
        f"torch {m['torch']} with {m['torch_threads']} threads, device `{m['device']}`"
        + (f" ({m['gpu']})" if "gpu" in m else "")
        + f"; load average at start {m['load_average_at_start']:.1f} (shared machine).",
        "Bank: a real dump, or the synthetic clustered mixture (N/10 identities, float32, seed "
        f"{report['seed']}); B = 64 rows per step (16 ids x 4, drifted copies of their features, cos ~0.99), "
        f"{report['steps']} timed steps after {report['warmup']} warm-up. Bare k-NN: the 64 x N product of the "
        "same batch with the bank and its top-30, timed right before each step in the same process; ratio = "
        "median of step / bare over the steps. Breakdown: medians per step; k-NN lists = `KnnGraph.refresh`, "
        "LP = `split_blocks` + `merge_scores`, bookkeeping = the rest. Command: `" + report["command"] + "`.",
        "",
        "| bank | N x D | dynamics | step median ms | p90 ms | bare k-NN ms | step / bare | k-NN lists ms "
        "| LP ms | bookkeeping ms | refresh s | init s | policy MiB (O(N k) part) "
        "| RSS peak growth MiB: init / steps / refresh |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        s, b, pb = r["step"], r["step"]["breakdown_median_ms"], r["policy_bytes"]
        ref = r.get("refresh")
        mem = [mib(r["init"]["peak_growth_bytes"]), mib(s["peak_growth_bytes"]),
               mib(ref["peak_growth_bytes"]) if ref else "-"]
        lines.append(
            f"| {r.get('bank', 'synthetic')} | {r['n']:,} x {r['dim']} | {r.get('dynamics', 'paper')} "
            f"| {s['median_ms']:.1f} | {s['p90_ms']:.1f} | {s['bare_knn_median_ms']:.1f} "
            f"| {s['ratio_to_bare_knn']:.2f} | {b['knn']:.1f} | {b['lp']:.1f} | {b['bookkeeping']:.1f} "
            f"| {_seconds(ref)} "
            f"| {r['init']['seconds']:.1f} | {mib(pb['total'])} ({mib(pb['o_nk'])}) | {' / '.join(mem)} |"
        )
    lines += [
        "",
        "Policy bytes = feature bank (N x D) + label-bank sums (H x N x D) + labels/sizes (2 H N int64) + "
        "k-NN graphs (lists of int64 + float32); the last two are the O(N k) part.",
        "",
    ]
    for r in report["results"]:
        lines.append(f"- {r.get('bank', 'synthetic')} N = {r['n']:,} ({r.get('dynamics', 'paper')}): clusters per "
                     f"level after init {r['init']['clusters']}, after steps {r['clusters_after_steps']}"
                     + (f", after refresh {r['refresh']['clusters']}" if "refresh" in r else ""))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="12936,32621,100000", help="comma-separated bank sizes N")
    parser.add_argument("--features", default="", help="a real dump (.npz with feats, pids, camids) instead of "
                        "the synthetic mixture; --sizes is then ignored")
    parser.add_argument("--dynamics", default="tracking", choices=("tracking", "paper"), help="hcd rule set")
    parser.add_argument("--bank-dtype", default="float32", choices=("float32", "float16", "bfloat16"),
                        help="storage of the bank rows and of the cluster sums")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = torch default)")
    parser.add_argument("--no-refresh-above", type=int, default=0,
                        help="skip the offline refresh for N above this (0 = always refresh)")
    parser.add_argument("--append", action="store_true",
                        help="keep the sizes already in OUT/NAME.json (same machine), replacing re-run sizes")
    add_output_arguments(parser, "engine")
    parser.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch.cuda.is_available() is False")
    refresh_for = lambda n: args.no_refresh_above <= 0 or n <= args.no_refresh_above  # noqa: E731

    if args.worker:  # one size in this process (fresh peak RSS)
        result = run_size(args.worker, args.dim, args.steps, args.warmup, device, args.seed, refresh_for(args.worker),
                          args.features, args.dynamics, args.bank_dtype)
        Path(args.worker_out).write_text(json.dumps(result))
        return

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.features:
        sizes = [int(np.load(args.features)["feats"].shape[0])]
    out = output_dir(args)
    out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/engine.py " + " ".join(sys.argv[1:] if argv is None else argv)
    report = {"machine": machine(device), "dim": args.dim, "steps": args.steps, "warmup": args.warmup,
              "seed": args.seed, "command": command.strip(), "commit": commit(), "results": []}
    json_path, md_path = out / f"{args.name}.json", out / f"{args.name}.md"
    if args.append and json_path.exists():
        previous = json.loads(json_path.read_text())
        key = lambda r: (r.get("bank", "synthetic"), r["n"], r.get("dynamics", "paper"))  # noqa: E731
        ran = {(Path(args.features).name if args.features else "synthetic", n, args.dynamics) for n in sizes}
        report["results"] = [r for r in previous["results"] if key(r) not in ran]
        report["command"] = previous["command"] + " ; " + report["command"]
    for n in sizes:
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
            worker_out = tmp.name
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(n), "--worker-out", worker_out,
               "--dim", str(args.dim), "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--device", args.device, "--seed", str(args.seed), "--threads", str(args.threads),
               "--no-refresh-above", str(args.no_refresh_above), "--dynamics", args.dynamics,
               "--bank-dtype", args.bank_dtype]
        if args.features:
            cmd += ["--features", args.features]
        start = time.perf_counter()
        subprocess.run(cmd, check=True)
        result = json.loads(Path(worker_out).read_text())
        os.unlink(worker_out)
        result["wall_s"] = time.perf_counter() - start
        report["results"].append(result)
        report["results"].sort(key=lambda r: (r["n"], r.get("dynamics", "paper")))
        # write after every size so a long run leaves its finished sizes behind
        json_path.write_text(json.dumps(report, indent=1) + "\n")
        md_path.write_text(markdown(report))
        print(f"[N={n}] done in {result['wall_s']:.0f}s; wrote {json_path} and {md_path}", flush=True)
    wrote("engine", json_path, md_path)


if __name__ == "__main__":
    main()

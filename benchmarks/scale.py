"""Scale-out of the online engine: per-step latency, memory per rank and bytes moved, replicated vs sharded banks.

Each configuration ``N:bank:processes:dtype:projection`` (e.g. ``1000000:sharded:2:float16:0``) runs in
its own subprocess (peak RSS per configuration); with 2 processes the ranks are gloo processes started
by torch.multiprocessing, each with ``--threads`` threads. The bank is D = 2048 (``--dim``), the cluster
sums are stored in the bank dtype, and a step is B = 64 rows (16 identities x 4).

The state is synthetic, not ``initialize``d: an exact initialisation is an N x N k-NN (hours at 1M on
this CPU) and the step cost does not depend on how the lists were made. Rows are unit vectors around
N/10 identities (level 0 labels) inside N/100 groups (level 1) inside N/1000 super-groups (level 2);
identity of sample i = i mod N/10, so every identity is spread over every shard; the noise of a row is
one of 8,192 fixed unit vectors picked by its position (drawing N x D Gaussians took minutes). The k-NN lists hold
units of the same parent (cyclically, in label order) with descending similarities. Every rank builds
only its own rows (chunks seeded by their global position), so the state is the same for any world size.

Measured per configuration: step latency (median / max over ``--steps`` after ``--warmup``; with 2
processes the slowest rank, barriers around each step), peak RSS of each rank over the whole run and
over the steps (VmHWM, reset through /proc/self/clear_refs), the bytes each rank holds, the bytes it
handed to collectives per step (counted in ``streamlabel.banks.distributed``), and the cost model of
the step: bytes streamed from memory and matmul flops (counted by hooks on the N x D passes and the
N x (k + slack) list passes, see ``CostHooks``), the time those bytes need at the machine's measured
single-core read bandwidth, and how far the measured step is from that bound.

    python benchmarks/scale.py --configs 100000:replicated:1:float32:0,... [--steps 3] [--warmup 1]
                               [--threads 1] [--out DIR | --publish] [--name scale] [--append]

Writes OUT/NAME.json and OUT/NAME.md; OUT is ``--out`` (default ``runs/benchmarks/``, git-ignored), or the
committed ``benchmarks/results/`` with ``--publish``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

import streamlabel.banks.row_shards as row_shards_module
import streamlabel.banks.sharded_graph as sharded_graph_module
from streamlabel.banks import distributed
from streamlabel.banks.knn_graph import KnnGraph
from streamlabel.banks.replicated_rows import ReplicatedRows
from streamlabel.banks.row_shards import RowShards
from streamlabel.methods import build_policy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import add_output_arguments, output_dir, wrote  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CHUNK = 8192
BATCH_IDS, BATCH_PER_ID = 16, 4


# ----------------------------------------------------------------------------------------- state
def _rows_chunk(c0: int, c1: int, ident: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Rows c0..c1: identity vector + one of the noise rows (picked by position), unit norm."""
    rows = torch.arange(c0, c1)
    pick = (rows * 31 + rows // noise.shape[0]) % noise.shape[0]
    return F.normalize(ident[rows % ident.shape[0]].float() + 0.8 * noise[pick], dim=1)


def _identity_vectors(num_ids: int, num_groups: int, dim: int, seed: int) -> torch.Tensor:
    """[num_ids, dim] float16 identity directions around their group's direction (identity mod groups)."""
    gen = torch.Generator().manual_seed(seed)
    groups = F.normalize(torch.randn(num_groups, dim, generator=gen), dim=1)
    out = torch.empty(num_ids, dim, dtype=torch.float16)
    for a in range(0, num_ids, CHUNK):
        b = min(a + CHUNK, num_ids)
        own = F.normalize(torch.randn(b - a, dim, generator=gen), dim=1)
        out[a:b] = F.normalize(groups[torch.arange(a, b) % num_groups] + 1.2 * own, dim=1).half()
    return out


def _cyclic_lists(graph: KnnGraph, units: torch.Tensor, parent: torch.Tensor, sub: torch.Tensor) -> None:
    """Lists of ``units``: the next units of the same parent in (sub, id) order, descending fake sims."""
    cap, width = graph.capacity, graph.width
    order = torch.argsort((parent * cap + sub) * cap + units)
    su, sp = units[order], parent[order]
    _, counts = torch.unique_consecutive(sp, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    seg = torch.repeat_interleave(torch.arange(counts.numel()), counts)
    pos = torch.arange(su.numel()) - starts[seg]
    step = torch.arange(1, width + 1)
    nb = su[starts[seg].unsqueeze(1) + (pos.unsqueeze(1) + step) % counts[seg].unsqueeze(1)]
    missing = step.unsqueeze(0) >= counts[seg].unsqueeze(1)
    graph.idx[su] = nb.masked_fill(missing, -1)
    graph.sims[su] = torch.linspace(0.9, 0.5, width).expand(su.numel(), -1).masked_fill(missing, float("-inf"))


def build_state(policy, seed: int = 0) -> None:
    """Fill bank, label hierarchy, sums and k-NN lists of an un-initialised 3-level hcd policy (see module doc)."""
    n, dim = policy.num_samples, policy.feat_dim
    num_ids, num_groups, num_super = max(1, n // 10), max(1, n // 100), max(1, n // 1000)
    ident = _identity_vectors(num_ids, num_groups, dim, seed)
    noise = F.normalize(torch.randn(CHUNK, dim, generator=torch.Generator().manual_seed(seed + 1)), dim=1)
    # ReplicatedRows or RowShards: this process's rows start..stop in ``local``
    store = policy.bank.storage
    first, last = store.start, store.stop
    for c0 in range((first // CHUNK) * CHUNK, last, CHUNK):
        c1 = min(c0 + CHUNK, n)
        rows = _rows_chunk(c0, c1, ident, noise)
        a, b = max(c0, first), min(c1, last)
        store.local[a - first : b - first] = rows[a - c0 : b - c0].to(store.dtype)
    if isinstance(store, RowShards):
        store.reproject()
    del ident
    samples = torch.arange(n)
    level0 = samples % num_ids
    labels = torch.stack([level0, level0 % num_groups, level0 % num_groups % num_super])
    lb = policy.label_bank
    lb.labels.copy_(labels)
    lb.recompute(store)
    _cyclic_lists(policy.graphs[0], samples, labels[1], labels[0])
    for level in range(lb.num_levels):
        units = lb.alive[level].nonzero().flatten()
        parent = lb.parent(level)[units] if level + 1 < lb.num_levels else torch.zeros_like(units)
        _cyclic_lists(policy.graphs[level + 1], units, parent, units)
    policy.initialized = True


def batch_rows(n: int, count: int, seed: int) -> list[torch.Tensor]:
    """``count`` PK batches: 16 identities x 4 of their samples (identity = row mod N/10)."""
    gen = torch.Generator().manual_seed(seed + 7)
    num_ids = max(1, n // 10)
    out = []
    for _ in range(count):
        ids = torch.randperm(num_ids, generator=gen)[:BATCH_IDS]
        members = torch.randint(0, 10, (BATCH_IDS, BATCH_PER_ID), generator=gen)
        out.append((ids.unsqueeze(1) + num_ids * members).flatten().clamp_max(n - 1))
    return out


# ------------------------------------------------------------------------------------------ costs
class CostHooks:
    """Bytes streamed from memory and matmul flops of the passes over N rows (the terms that grow with N)."""

    def __init__(self) -> None:
        self.bytes = 0
        self.flops = 0
        self._installed: list[tuple[object, str, object]] = []

    def _patch(self, owner: object, name: str, wrapper) -> None:
        original = getattr(owner, name)
        self._installed.append((owner, name, original))
        setattr(owner, name, wrapper(original))

    def install(self) -> None:
        hooks = self

        def score_blocks(fn):
            def wrapped(self, queries, *, projected=False):
                store = self.local_proj if projected else self.local  # rows in use (compact: slots)
                hooks.bytes += self.used * store.shape[1] * store.element_size()
                hooks.flops += 2 * queries.shape[0] * self.used * store.shape[1]
                return fn(self, queries, projected=projected)
            return wrapped

        def exact_scores(fn):
            def wrapped(self, queries, cand):
                share = cand.numel() / self.world
                hooks.bytes += int(share * self.dim * self.local.element_size())
                hooks.flops += int(2 * share * self.dim)
                return fn(self, queries, cand)
            return wrapped

        def merge_topk(fn):
            def wrapped(sims, idx, k):
                hooks.bytes += sims.numel() * (sims.element_size() + idx.element_size())
                return fn(sims, idx, k)
            return wrapped

        def forget(fn):
            def wrapped(self, rows, alive):
                hooks.bytes += 2 * self.idx.numel() * (self.idx.element_size() + self.sims.element_size())
                return fn(self, rows, alive)
            return wrapped

        def refresh(fn):  # the replicated path: one [R, C] product against the alive units, a pass over lists
            def wrapped(self, rows, centres, alive, norms=None):
                moved = torch.unique(rows)
                units = int(alive.sum())
                if isinstance(centres, torch.Tensor) and moved.numel() * 4 <= units:
                    live = int(alive[moved].sum())
                    cols = units if units * 2 <= self.capacity else self.capacity  # compacted when few alive
                    hooks.bytes += cols * centres.shape[1] * centres.element_size()
                    hooks.bytes += cols * self.width * 12 * 2  # ids + sims: rescored entries, weakest entry
                    hooks.bytes += live * cols * 4 * 3  # the [R, C] scores: written, column max, list top-k
                    hooks.flops += 2 * live * cols * centres.shape[1]
                return fn(self, rows, centres, alive, norms)
            return wrapped

        def centres(fn):  # replicated (rebuilds only): normalising the whole [N, D] sums reads and writes them
            def wrapped(self):
                if self.normalize_rows:
                    hooks.bytes += 2 * self.local.numel() * self.local.element_size()
                return fn(self)
            return wrapped

        self._patch(RowShards, "score_blocks", score_blocks)
        self._patch(RowShards, "exact_scores", exact_scores)
        self._patch(sharded_graph_module, "merge_topk", merge_topk)
        self._patch(row_shards_module, "merge_topk", merge_topk)
        self._patch(KnnGraph, "forget", forget)
        self._patch(KnnGraph, "refresh", refresh)
        self._patch(ReplicatedRows, "centres", centres)


# ---------------------------------------------------------------------------------------- memory
def _vm(field: str) -> int:
    """A /proc/self/status memory field in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _held_bytes(policy) -> int:
    """Bytes of the tensors this rank's policy holds (bank, projected rows, sums, labels, sizes, lists)."""
    tensors = [policy.label_bank.labels, policy.label_bank.sizes]
    for graph in policy.graphs:
        tensors += [graph.idx, graph.sims]
    matrices = [policy.bank.features, *(policy.label_bank.sums if policy.label_bank.sharded
                                        else [policy.label_bank.sums])]
    for m in matrices:
        if isinstance(m, RowShards):
            tensors += [m.local, m.slot, m.slot_row] + ([m.local_proj] if m.local_proj is not None else [])
        else:
            tensors.append(m)
    return sum(t.numel() * t.element_size() for t in tensors)


# ------------------------------------------------------------------------------------------ one run
def measure(cfg: dict, rank: int, world: int, out: Path) -> None:
    """Build the state, time the steps, write this rank's numbers to ``out``/rank{rank}.json."""
    torch.set_num_threads(cfg["threads"])
    n, dim = cfg["n"], cfg["dim"]
    start = time.perf_counter()
    policy = build_policy(
        "hcd",
        num_samples=n,
        feat_dim=dim,
        dynamics="paper",
        bank=cfg["bank"],
        bank_dtype=cfg["dtype"],
        sums_dtype=cfg["dtype"],
        knn_projection=cfg["projection"],
    )
    build_state(policy)
    build_s = time.perf_counter() - start
    hooks = CostHooks()
    hooks.install()
    gen = torch.Generator().manual_seed(11)
    times, cost, traffic = [], [], []
    peak_build = _vm("VmHWM")
    _reset_peak()
    for i, rows in enumerate(batch_rows(n, cfg["warmup"] + cfg["steps"], seed=3)):
        base = policy.bank.storage.gather_rows(rows).float()
        feats = F.normalize(base + 0.14 * F.normalize(torch.randn(base.shape, generator=gen), dim=1), dim=1)
        hooks.bytes = hooks.flops = 0
        distributed.TRAFFIC.update(bytes=0, calls=0)
        if world > 1:
            dist.barrier()
        t0 = time.perf_counter()
        policy.step(rows, feats)
        if world > 1:
            dist.barrier()
        if i >= cfg["warmup"]:
            times.append(time.perf_counter() - t0)
            cost.append((hooks.bytes, hooks.flops))
            traffic.append((distributed.TRAFFIC["bytes"], distributed.TRAFFIC["calls"]))
    result = {
        "rank": rank, "build_s": build_s, "step_s": times,
        "peak_rss_build": peak_build, "peak_rss_steps": _vm("VmHWM"), "rss_now": _vm("VmRSS"),
        "held_bytes": _held_bytes(policy),
        "model_bytes": [c[0] for c in cost], "model_flops": [c[1] for c in cost],
        "comm_bytes": [t[0] for t in traffic], "comm_calls": [t[1] for t in traffic],
        "clusters_top": policy.label_bank.num_clusters(-1),
    }
    (out / f"rank{rank}.json").write_text(json.dumps(result))


def _rank_main(rank: int, world: int, port: int, cfg: dict, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        measure(cfg, rank, world, Path(out))
    finally:
        dist.destroy_process_group()


def run_one(cfg: dict) -> dict:
    """One configuration in this process (1 rank) or in ``processes`` gloo ranks; merged numbers."""
    with tempfile.TemporaryDirectory() as tmp:
        if cfg["processes"] == 1:
            measure(cfg, 0, 1, Path(tmp))
        else:
            import socket
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            mp.spawn(_rank_main, args=(cfg["processes"], port, cfg, tmp), nprocs=cfg["processes"], join=True)
        ranks = [json.loads((Path(tmp) / f"rank{r}.json").read_text()) for r in range(cfg["processes"])]
    steps = [max(r["step_s"][i] for r in ranks) for i in range(cfg["steps"])]
    probe = machine(cfg["threads"])  # the bandwidth under this run's load, for its bound
    return {**cfg, "ranks": ranks, "step_median_s": statistics.median(steps), "step_max_s": max(steps),
            "load_avg_1m": os.getloadavg()[0], "read_gb_s": probe["read_gb_s"]}


# -------------------------------------------------------------------------------------- machine
def machine(threads: int) -> dict:
    """CPU model, cores, RAM, and the single-process read bandwidth / fp32 matmul rate at ``threads`` threads."""
    torch.set_num_threads(threads)
    model = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name")), "?")
    x = torch.ones(1 << 27)  # 512 MiB
    x.sum()
    reads = []
    for _ in range(3):
        t0 = time.perf_counter()
        x.sum()
        reads.append(x.numel() * 4 / (time.perf_counter() - t0))
    del x
    q, b = torch.randn(64, 2048), torch.randn(1 << 15, 2048)
    q @ b.t()
    t0 = time.perf_counter()
    q @ b.t()
    flops = 2 * 64 * b.numel() / (time.perf_counter() - t0)
    return {"cpu": model, "cores": os.cpu_count(), "ram_gib": round(os.sysconf("SC_PAGE_SIZE")
            * os.sysconf("SC_PHYS_PAGES") / 2**30, 1), "threads": threads,
            "read_gb_s": max(reads) / 1e9, "matmul_gflops": flops / 1e9,
            "load_avg": os.getloadavg(), "torch": torch.__version__, "python": platform.python_version()}


# ---------------------------------------------------------------------------------------- report
def _fmt_bytes(b: float) -> str:
    return f"{b / 2**30:.2f} GiB" if b >= 2**30 else f"{b / 2**20:.0f} MiB"


def markdown(results: list[dict], mach: dict) -> str:
    lines = [
        f"Machine: {mach['cpu']}, {mach['cores']} cores, {mach['ram_gib']} GiB RAM, shared with other jobs (load: "
        "1-minute load average at the end of each run); the bound of each row uses the read bandwidth measured "
        "right after that row's steps (column GB/s); at the start of the last invocation (load "
        f"{mach['load_avg'][0]:.1f}): {mach['threads']} thread(s) per process; measured read "
        f"bandwidth {mach['read_gb_s']:.1f} GB/s and fp32 matmul {mach['matmul_gflops']:.0f} GFLOP/s per process. "
        f"torch {mach['torch']}.",
        "",
        "| N | bank | proc | dtype | k-NN proj | step median (max) | peak RSS / rank: run (steps) | held / rank | "
        "streamed / step / rank | GFLOP / step / rank | bound at bandwidth | measured / bound | "
        "collectives / step / rank | load | GB/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rank0 = r["ranks"][0]
        streamed = statistics.median(max(x["model_bytes"][i] for x in r["ranks"]) for i in range(r["steps"]))
        gflop = statistics.median(max(x["model_flops"][i] for x in r["ranks"]) for i in range(r["steps"])) / 1e9
        bound = streamed / (r.get("read_gb_s", mach["read_gb_s"]) * 1e9)
        comm = statistics.median(rank0["comm_bytes"])
        calls = statistics.median(rank0["comm_calls"])
        peak = max(x["peak_rss_steps"] for x in r["ranks"])
        peak_all = max(max(x["peak_rss_build"], x["peak_rss_steps"]) for x in r["ranks"])
        held = max(x["held_bytes"] for x in r["ranks"])
        lines.append(
            f"| {r['n']:,} | {r['bank']} | {r['processes']} | {r['dtype']} | {r['projection'] or '-'} | "
            f"{r['step_median_s']:.2f} s ({r['step_max_s']:.2f}) | {_fmt_bytes(peak_all)} ({_fmt_bytes(peak)}) | "
            f"{_fmt_bytes(held)} | "
            f"{_fmt_bytes(streamed)} | {gflop:.1f} | {bound:.2f} s | {r['step_median_s'] / bound:.1f}x | "
            f"{_fmt_bytes(comm) if comm else '0'} in {calls:.0f} calls | {r.get('load_avg_1m', float('nan')):.1f} | "
            f"{r.get('read_gb_s', mach['read_gb_s']):.1f} |")
    return "\n".join(lines) + "\n"


def parse_config(text: str, args: argparse.Namespace) -> dict:
    n, bank, procs, dtype, proj = text.split(":")
    return {"n": int(n), "bank": bank, "processes": int(procs), "dtype": dtype, "projection": int(proj),
            "dim": args.dim, "steps": args.steps, "warmup": args.warmup, "threads": args.threads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default="100000:replicated:1:float32:0,100000:sharded:1:float32:0,"
                                             "100000:sharded:2:float32:0")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--append", action="store_true",
                        help="add to an existing OUT/NAME.json (a configuration run again replaces its row)")
    add_output_arguments(parser, "scale")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # child: one configuration, JSON on the last line
        print(json.dumps(run_one(json.loads(args.one))), flush=True)
        return
    out = output_dir(args)
    out_json, out_md = out / f"{args.name}.json", out / f"{args.name}.md"
    previous = json.loads(out_json.read_text())["results"] if args.append and out_json.exists() else []
    mach = machine(args.threads)
    configs = [parse_config(text, args) for text in args.configs.split(",")]
    key = ("n", "bank", "processes", "dtype", "projection", "dim")
    fresh = {tuple(c[k] for k in key) for c in configs}
    results = [r for r in previous if tuple(r[k] for k in key) not in fresh]  # a re-run replaces its row
    for cfg, text in zip(configs, args.configs.split(","), strict=True):
        print(f"running {cfg}", file=sys.stderr, flush=True)
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        proc = subprocess.run([sys.executable, __file__, "--one", json.dumps(cfg)], capture_output=True, text=True,
                              env=env, cwd=REPO)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"configuration {text} failed")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(markdown(results[-1:], mach).splitlines()[-1], file=sys.stderr, flush=True)
        out.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps({"machine": mach, "results": results}, indent=1))
        out_md.write_text(markdown(results, mach))
    wrote("scale", out_json, out_md)


if __name__ == "__main__":
    main()

"""Upper bounds of sizes a user gives, and the memory this machine has for an up-front estimate.

A value with no sane upper bound (an image side, a batch, a neighbour count, a thread count) is refused
when the config or the command line is read, with the limit in the message, rather than found as an
out-of-memory crash minutes later. Where a hard limit would refuse legitimate use, the check is an
estimate of the memory needed against :func:`available_memory` instead.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "MAX_BATCH",
    "MAX_CPU_THREADS",
    "MAX_IMAGE_SIDE",
    "MAX_ITERATIONS",
    "MAX_NEIGHBOURS",
    "MAX_PASSES",
    "MAX_SEED",
    "MAX_WORKERS",
    "available_memory",
    "human_bytes",
    "memory_problem",
]

MAX_IMAGE_SIDE = 4096  # pixels: re-ID crops are ~256 x 128; a side of 4096 is 16x that
MAX_BATCH = 4096  # images in one batch (training or evaluation)
MAX_NEIGHBOURS = 10_000  # k, link_k, k1, k2: the k-NN graph holds N x k entries (papers use 20-30)
MAX_CPU_THREADS = 1024  # torch intra-op threads
MAX_WORKERS = 256  # data loader worker processes
MAX_ITERATIONS = 100_000_000  # training iterations (the papers train 40,000-80,000; at 1 ms each: 28 hours)
MAX_PASSES = 100_000  # streaming passes of `labels` over a feature dump
MAX_SEED = 2**32 - 1  # seeds of numpy's and torch's generators (numpy refuses negative and larger ones)


def human_bytes(size: float) -> str:
    """``size`` bytes as ``1.5 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(size) < 1024 or unit == "PiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} EiB"  # unreachable


def _cgroup_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if text.isdigit() and int(text) < 1 << 60:
            return int(text)
    return None


def available_memory() -> int | None:
    """Bytes of memory this process can still get (MemAvailable, capped by a cgroup limit), None when
    unknown (then no estimate refuses anything)."""
    found = None
    try:
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            if line.startswith("MemAvailable:"):
                found = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError, UnicodeDecodeError):
        found = None
    if found is None:
        try:
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    limit = _cgroup_limit()
    return min(found, limit) if limit is not None else found


def memory_problem(needed: float, what: str) -> str | None:
    """Why ``needed`` bytes for ``what`` cannot fit in this machine's available memory (None if they can,
    or if the available memory is unknown)."""
    free = available_memory()
    if free is None or needed <= free:
        return None
    return f"{what} needs about {human_bytes(needed)}, more than the {human_bytes(free)} of memory available here"

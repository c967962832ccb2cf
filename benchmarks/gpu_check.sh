#!/usr/bin/env bash
# GPU check (one script, under 5 minutes on one GPU): the CUDA tests, then the hcd step timed at
# N = 1,000,000, D = 2048 with a float16 bank and sums, against a bare k-NN of the same batches.
# Run from the repository root on a machine with a CUDA device and the package installed:
#   bash benchmarks/gpu_check.sh [OUT_DIR]        (default OUT_DIR: runs/benchmarks, git-ignored)
# The benchmark runs even when a test fails, so one try gives both answers; the exit status is
# non-zero if either failed. OUT_DIR receives gpu_tests.log and engine_gpu.{json,md}.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/benchmarks}"
mkdir -p "$out"
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA device')" || exit 2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python -m pytest -q -m cuda tests -p no:cacheprovider 2>&1 | tee "$out/gpu_tests.log"
tests_rc=$?
python benchmarks/engine.py --device cuda --sizes 1000000 --dim 2048 --steps 10 --warmup 2 \
  --bank-dtype float16 --no-refresh-above 1 --out "$out" --name engine_gpu
bench_rc=$?
echo "gpu_check: tests rc=$tests_rc, benchmark rc=$bench_rc"
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]

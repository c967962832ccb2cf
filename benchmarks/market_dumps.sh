#!/usr/bin/env bash
# Market-1501 feature dumps (train, query, gallery) with the MSMT17 OSNet source model, for
# benchmarks/labels_table.py, benchmarks/tracking.py and `streamlabel evaluate`.
# Research data: the dumps go to runs/dumps/ (git-ignored), never into the repository.
#   OMP_NUM_THREADS=1 bash benchmarks/market_dumps.sh [OUT_DIR]   (about 15 min per thread on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/dumps}"
root="../shared/data/market1501"
if [ ! -d "$root" ]; then echo "market_dumps: $root is absent; nothing to do"; exit 0; fi
mkdir -p "$out"
for split in train query gallery; do
  file="$out/market1501_${split}_osnet_x0_25_msmt17.npz"
  if [ -f "$file" ]; then echo "market_dumps: $file exists, kept"; continue; fi
  python -m streamlabel extract --config configs/cpu_cuhk03.yaml --dataset market1501 --root "$root" \
    --split "$split" --out "$file" --batch-size 64 --quiet
  echo "market_dumps: wrote $file"
done

#!/usr/bin/env bash
# The newcomer's round trip on CUHK03 pair-1 val with the MSMT17 OSNet source model: extract -> evaluate
# (with the retrieval picture), and train -> labels (with the cluster montage). The evaluate line reproduces the
# zero-shot reference, 52.3% mAP / 53.2% rank-1 (benchmarks/results/zero_shot_cuhk03.md). The pictures show
# research-only images, so they go to runs/pictures/ (git-ignored), never into the repository.
#   OMP_NUM_THREADS=1 bash benchmarks/cuhk03_pictures.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/pictures}"
val="../shared/data/cuhk03_p1/val"
train="../shared/data/cuhk03_p1/train"
if [ ! -d "$val" ]; then echo "cuhk03_pictures: $val is absent; nothing to do"; exit 0; fi
mkdir -p "$out"
for split in query gallery; do
  python -m streamlabel extract --config configs/cpu_cuhk03.yaml --split "$split" --out "$out/val_$split.npz" --quiet
done
python -m streamlabel evaluate --query "$out/val_query.npz" --gallery "$out/val_gallery.npz" \
  --show "$out/cuhk03_retrieval.png" --images "$val"
python -m streamlabel extract --config configs/cpu_cuhk03.yaml --split train --out "$out/train.npz" --quiet
python -m streamlabel labels --features "$out/train.npz" --montage "$out/cuhk03_clusters.png" --images "$train" --quiet

#!/usr/bin/env bash
# Issue 12's GPU measurement in one go (H100/H200, about 5-10 minutes; torch + torchvision + numpy only on this path):
# the sync test on CUDA (host reads and cudaStreamSynchronize per step) and the per-stage table at 1024 px (FFHQ
# architecture with random weights, RAFT-large with 20 updates) for the before / official / fast presets.
#   bash bench/gpu_speed.sh            # writes bench/results/gpu/{steps.md,sync_test.txt,command.txt}
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=bench/results/gpu
mkdir -p "$OUT"
echo "bash bench/gpu_speed.sh  # $(date -u +%F)" > "$OUT/command.txt"
HF_HUB_OFFLINE=1 timeout 240 "$PY" -m pytest -q -p no:cacheprovider tests/test_speed.py 2>&1 | tail -5 | tee "$OUT/sync_test.txt" || true
timeout 420 "$PY" -m bench.steps --arch ffhq --size 1024 --raft large --raft-iters 20 --device cuda --steps 2 \
    --frames 150 2>&1 | grep -v "random weights" | tee "$OUT/steps.md"

#!/usr/bin/env bash
# Issue 11's GPU rehearsal in one go (H100/H200; torch, torchvision, numpy, scipy, safetensors, huggingface_hub only):
# the FFHQ path from aligned crops onward on a 150-frame 1024 px clip with full-size random-weight checkpoints.
#   - Preview preset, as the app runs it;
#   - Paper settings with 2 steps / epochs / passes per stage (the full preset is estimated at ~34 min on one GPU, past the
#     device's 10-minute call), whose stage times give the per-unit costs (costs.json, for $TCVE_GPU_COSTS) from
#     which the full preset's duration is then estimated.
#   bash bench/gpu_rehearsal.sh        # writes bench/results/gpu/{rehearsal-preview.md,rehearsal-paper-2steps.md,
#                                      #   costs.json,command.txt}; FRAMES=8 for a quick try
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
FRAMES=${FRAMES:-150}
OUT=bench/results/gpu
ROOT=${TCVE_REHEARSAL_DIR:-/tmp/tcve-rehearsal}
mkdir -p "$OUT"
echo "FRAMES=$FRAMES bash bench/gpu_rehearsal.sh  # $(date -u +%F)" >> "$OUT/command.txt"
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
timeout 240 "$PY" -m bench.rehearsal_crops --root "$ROOT" --frames "$FRAMES" --preset preview \
    2>&1 | tee "$OUT/rehearsal-preview.md"
timeout 300 "$PY" -m bench.rehearsal_crops --root "$ROOT" --frames "$FRAMES" --preset paper --steps 2 \
    --costs-out "$OUT/costs.json" 2>&1 | tee "$OUT/rehearsal-paper-2steps.md"

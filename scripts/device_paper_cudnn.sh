#!/usr/bin/env bash
# Measure the cuDNN tables of the paper reproduction and of the GPU Fashion-MNIST benchmark on a CUDA
# machine (the lent GPU through the device tool), with cudnn.benchmark OFF (PyTorch's default heuristics):
#   1. every conv of ResNet-18, VGG-16 and ResNet-50 at 224x224, batch 1, fp32 (python -m benchmarks.paper_sweep);
#   2. every conv of ResNet-18 and MobileNetV2 at Fashion-MNIST size (1x28x28), batch 256, fp32, every 4th
#      count from 25% to 100% (the tables hwprune plans the GPU Fashion-MNIST runs from;
#      benchmarks/conf/tables_cudnn_fmnist.yaml);
#   3. as 1, in fp16.
# Tables land in $OUT/tables/<target>/ and are packed into $OUT/tables.tgz (the device tool returns at most
# 8 files). A run cut short by BUDGET_S resumes where it stopped (the tables are append-only).
#   Locally: OUT=/tmp/o scripts/device_paper_cudnn.sh [BUDGET_S]
# Needs python3 (or $PYTHON) with hwprune's dependencies (carry the missing wheels as
# scripts/device_model_true.sh does).
set -euo pipefail
OUT=${OUT:-/tmp/hwprune_out}
BUDGET=${1:-500}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT/tables"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv || true
t0=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - t0) )); }
NOTE="lent GPU through the device tool; nothing else ran on it; cudnn.benchmark off; CUDA events"
[ "${ONLY_FMNIST:-0}" = 1 ] || "$PY" -m benchmarks.paper_sweep --target cuda_cudnn_fp32_heuristics --divisor 512 \
  --warmup 3 --repeat 7 --min-repeat-ms 1 --out "$OUT/tables" --budget-s "$(( $(left) * 45 / 100 ))" --no-progress \
  --load-note "$NOTE"
# STEP (default 4) is the channel step of part 2; ONLY_FMNIST=1 runs part 2 alone, with the whole budget.
STEP=${STEP:-4}
ONLY=${ONLY_FMNIST:-0}
SHARE=30; [ "$ONLY" = 1 ] && SHARE=100
"$PY" -m benchmarks.measure_tables --config tables_cudnn_fmnist --out "$OUT/tables" \
  --budget-s "$(( $(left) * SHARE / 100 ))" --set "step=$STEP"
[ "$ONLY" = 1 ] || "$PY" -m benchmarks.paper_sweep --target cuda_cudnn_fp16_heuristics --divisor 512 \
  --warmup 3 --repeat 7 --min-repeat-ms 1 --out "$OUT/tables" --budget-s "$(left)" --no-progress --load-note "$NOTE"
tar -C "$OUT" -czf "$OUT/tables.tgz" tables && rm -rf "$OUT/tables"
echo "done in $(( $(date +%s) - t0 )) s"

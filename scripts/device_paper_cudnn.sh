#!/usr/bin/env bash
# Measure the cuDNN tables of the paper reproduction and of the GPU Fashion-MNIST benchmark on a CUDA
# machine (the lent GPU through the device tool), with cudnn.benchmark OFF (PyTorch's default heuristics):
#   1. every conv of ResNet-18, VGG-16 and ResNet-50 at 224x224, batch 1, fp32 (benchmarks/paper_sweep.py);
#   2. every conv of ResNet-18 and MobileNetV2 at Fashion-MNIST size (1x28x28), batch 256, fp32, every 4th
#      count from 25% to 100% (the tables hwprune plans the GPU Fashion-MNIST runs from);
#   3. as 1, in fp16.
# Tables land in $OUT/tables/<target>/ and are packed into $OUT/tables.tgz (the device tool returns at most
# 8 files). A run cut short by BUDGET_S resumes where it stopped (the tables are append-only).
#   Locally: OUT=/tmp/o scripts/device_paper_cudnn.sh [BUDGET_S]
# Needs python3 (or $PYTHON) with torch and torchvision; nothing else.
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
[ "${ONLY_FMNIST:-0}" = 1 ] || "$PY" benchmarks/paper_sweep.py --target cuda_cudnn_fp32_heuristics --divisor 512 \
  --warmup 3 --repeat 7 --min-repeat-ms 1 --out "$OUT/tables" --budget-s "$(( $(left) * 45 / 100 ))" --no-progress \
  --load-note "$NOTE"
# STEP (default 4) is the channel step of part 2; ONLY_FMNIST=1 runs part 2 alone, with the whole budget.
STEP=${STEP:-4}
ONLY=${ONLY_FMNIST:-0}
SHARE=30; [ "$ONLY" = 1 ] && SHARE=100
"$PY" - "$OUT/tables" "$(( $(left) * SHARE / 100 ))" "$NOTE" "$STEP" <<'PY'
import dataclasses, sys, time
from hwprune.measure import EvaluatorConfig, load_target, measure, model_space
out, budget, note, step = sys.argv[1], float(sys.argv[2]), sys.argv[3], int(sys.argv[4])
t0 = time.perf_counter()
ev = EvaluatorConfig(warmup=3, number=1, repeat=7, min_repeat_ms=1.0)
target = dataclasses.replace(load_target("cuda_cudnn_fp32_heuristics"), batch=256)
for model in ("resnet18", "mobilenet_v2"):
    space = model_space(model, (256, 1, 28, 28), floor=0.25, step=step)
    left = budget - (time.perf_counter() - t0)
    s = measure(target, space, f"{out}/{target.name}/{model}_28_b256.csv", evaluator=ev, progress=False,
                time_budget_s=left, sidecar={"load_note": note})
    print(f"fmnist b256 {model}: {len(space)} configs, measured {s.measured}, failed {s.failed}, "
          f"{s.wall_s:.0f} s", flush=True)
PY
[ "$ONLY" = 1 ] || "$PY" benchmarks/paper_sweep.py --target cuda_cudnn_fp16_heuristics --divisor 512 \
  --warmup 3 --repeat 7 --min-repeat-ms 1 --out "$OUT/tables" --budget-s "$(left)" --no-progress --load-note "$NOTE"
tar -C "$OUT" -czf "$OUT/tables.tgz" tables && rm -rf "$OUT/tables"
echo "done in $(( $(date +%s) - t0 )) s"

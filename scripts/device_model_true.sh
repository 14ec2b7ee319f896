#!/usr/bin/env bash
# Issue 11's GPU figures on the lent H200 (device tool): benchmarks/model_true.py on cuda_cudnn_tf32
# (PyTorch's default for fp32 models: TF32 allowed, cudnn.benchmark off), one or more settings.
#   SETTINGS="resnet18:32:224 resnet18:1:224" RUNS=2 scripts/device_model_true.sh
# Needs python3 with torch, torchvision, scikit-learn, pandas; the rest travels as wheels in .whl/
# (torch-pruning, skops, hydra-core, omegaconf, antlr4, prettytable, wcwidth).
set -euo pipefail
OUT=${OUT:-/tmp/hwprune_out}
PY=${PYTHON:-python3}
if [ -d .whl ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,utilization.gpu --format=csv || true
ARGS=()
for s in ${SETTINGS:-resnet18:32:224}; do ARGS+=(--setting "$s"); done
"$PY" benchmarks/model_true.py --target "${TARGET:-cuda_cudnn_tf32}" "${ARGS[@]}" --runs "${RUNS:-2}" \
  --step "${STEP:-7}" --pairs "${PAIRS:-16}" --repeat "${REPEAT:-5}" --min-repeat-ms "${MIN_MS:-5}" \
  --out "$OUT/work" --json "$OUT/model_true_${TAG:-gpu}.json" 2>&1 | grep -v "cfg/s" | tee "$OUT/log_${TAG:-gpu}.txt" | grep -E "model_true|closed loop|calibrated|Error|error|Traceback|x \|" || true
tar czf "$OUT/tables_${TAG:-gpu}.tgz" -C "$OUT/work" . 2>/dev/null || true
rm -rf "$OUT/work"

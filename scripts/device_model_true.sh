#!/usr/bin/env bash
# Issue 11's GPU figures on the lent H200 (device tool): python -m benchmarks.model_true on cuda_cudnn_tf32
# (PyTorch's default for fp32 models: TF32 allowed, cudnn.benchmark off), one or more settings.
#   SETTINGS="resnet18:32:224 resnet18:1:224" RUNS=2 scripts/device_model_true.sh
# Needs python3 with torch, torchvision, scikit-learn, pandas; the rest travels as wheels in .whl/
# (torch-pruning, skops, hydra-core, omegaconf, antlr4, prettytable, wcwidth), made here with
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 -d .whl torch-pruning==1.6.1 skops==0.16.0 hydra-core==1.3.2 \
#     omegaconf==2.3.0 prettytable==3.18.0 wcwidth==0.2.13
#   python3 -m pip wheel --no-deps -w .whl antlr4-python3-runtime==4.9.3   # sdist only on PyPI
# and carried by the device tool (`carry: [".whl"]`). The results (JSON, log, tables) land in $OUT.
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
"$PY" -m benchmarks.model_true --target "${TARGET:-cuda_cudnn_tf32}" "${ARGS[@]}" --runs "${RUNS:-2}" \
  --step "${STEP:-7}" --pairs "${PAIRS:-16}" --repeat "${REPEAT:-5}" --min-repeat-ms "${MIN_MS:-5}" \
  --out "$OUT/work" --json "$OUT/model_true_${TAG:-gpu}.json" 2>&1 | grep -v "cfg/s" | tee "$OUT/log_${TAG:-gpu}.txt" | grep -E "benchmarks.model_true|closed loop|calibrated|Error|error|Traceback|x \|" || true
tar czf "$OUT/tables_${TAG:-gpu}.tgz" -C "$OUT/work" . 2>/dev/null || true
rm -rf "$OUT/work"

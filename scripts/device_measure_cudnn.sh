#!/usr/bin/env bash
# Measure the shipped cuDNN tables (ResNet-18 and MobileNetV2 layers at 224x224; fp32 and fp16; batch 1
# and 32) on a CUDA machine. Used on the lent GPU through the device tool:
#   run: OUT is set there; tables land in $OUT/cuda_cudnn_{fp32,fp16}/{resnet18,mobilenet_v2}_224.csv
# Locally: OUT=tables scripts/device_measure_cudnn.sh [BUDGET_S]
# The sweeps are benchmarks/conf/tables_cudnn.yaml: first the fine sweeps (every channel count from 25% to
# 100% of 4 ResNet-18 and 2 MobileNetV2 layers) for all four dtype x batch variants, then coarse sweeps of
# every conv of both models. A run cut short by BUDGET_S resumes where it stopped (the tables are
# append-only and skip what is measured). Needs python3 (or $PYTHON) with hwprune's dependencies (carry the
# missing wheels as scripts/device_model_true.sh does).
set -euo pipefail
OUT=${OUT:-tables}
BUDGET=${1:-470}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv || true
"${PYTHON:-python3}" -m benchmarks.measure_tables --config tables_cudnn --out "$OUT" --budget-s "$BUDGET"

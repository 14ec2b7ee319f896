#!/usr/bin/env bash
# The shipped TVM (llvm, this CPU) table for ResNet-18 at 224x224: a frugal sweep
# (benchmarks/conf/tables_tvm_llvm.yaml).
#  1. Tune ONE config (layer3.0.conv2 unpruned, 256->256 at 14x14) with TRIALS MetaSchedule trials into the
#     persistent database tables/cpu_tvm_llvm/tvm_db (a later run reuses it instead of tuning again).
#  2. Sweep 4 layers (layer1.0.conv1 step 8, layer2.0.conv2 step 4, layer3.0.conv2 step 8,
#     layer4.0.conv2 step 16; 25%..100%) untuned: tune_trials 0, so only configs already in the database
#     come out tuned. The `settings` column says which (tuned, tune_s).
# Usage: scripts/device_measure_tvm_llvm.sh [TRIALS]
set -euo pipefail
TRIALS=${1:-16}
PY=${PYTHON:-.venv/bin/python}
"$PY" -m benchmarks.measure_tables --config tables_tvm_llvm --out tables --set "trials=$TRIALS"

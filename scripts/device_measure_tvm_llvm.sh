#!/usr/bin/env bash
# The shipped TVM (llvm, this CPU) table for ResNet-18 at 224x224: a frugal sweep.
#  1. Tune ONE config (layer3.0.conv2 unpruned, 256->256 at 14x14) with TRIALS MetaSchedule trials into the
#     persistent database tables/cpu_tvm_llvm/tvm_db (a later run reuses it instead of tuning again).
#  2. Sweep 4 layers (layer1.0.conv1 step 8, layer2.0.conv2 step 4, layer3.0.conv2 step 8,
#     layer4.0.conv2 step 16; 25%..100%) untuned: tune_trials 0, so only configs already in the database
#     come out tuned. The `settings` column says which (tuned, tune_s).
# Usage: scripts/device_measure_tvm_llvm.sh [TRIALS]
set -euo pipefail
TRIALS=${1:-16}
PY=${PYTHON:-.venv/bin/python}
OUT=tables/cpu_tvm_llvm/resnet18_224.csv
NOTE="2-core VM shared with other agents' tests/training (load average 2-9): absolute times are noisy"
L3=layer3.0.conv2
"$PY" - "$TRIALS" "$OUT" "$NOTE" <<'PY'
import dataclasses
import logging
import sys
import time

from hwprune.measure import EvaluatorConfig, load_target, measure, model_space

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
trials, out, note = int(sys.argv[1]), sys.argv[2], sys.argv[3]
base = load_target("cpu_tvm_llvm")
ev = EvaluatorConfig(warmup=1, number=1, repeat=5, min_repeat_ms=20.0)
shape = (1, 3, 224, 224)
full = [c for c in model_space("resnet18", shape, step=1, layers=["layer3.0.conv2"]) if c["out_channels"] == 256]
tune = dataclasses.replace(base, options={**base.options, "tune_trials": trials, "tune_max_configs": 1})
t0 = time.perf_counter()
s = measure(tune, full, out, evaluator=ev, progress=False, sidecar={"load_note": note})
print(f"tune stage: {s} ({time.perf_counter() - t0:.0f} s)")
space = []
for layer, step in (("layer1.0.conv1", 8), ("layer2.0.conv2", 4), ("layer3.0.conv2", 8), ("layer4.0.conv2", 16)):
    space += model_space("resnet18", shape, step=step, layers=[layer])
sweep = dataclasses.replace(base, options={**base.options, "tune_trials": 0})
s = measure(sweep, space, out, evaluator=ev, progress=False, sidecar={"load_note": note})
print(f"sweep stage: {s}")
PY

#!/usr/bin/env bash
# Measure the shipped cuDNN tables (ResNet-18 and MobileNetV2 layers at 224x224; fp32 and fp16; batch 1
# and 32) on a CUDA machine. Used on the lent GPU through the device tool:
#   run: OUT is set there; tables land in $OUT/cuda_cudnn_{fp32,fp16}/{resnet18,mobilenet_v2}_224.csv
# Locally: OUT=tables scripts/device_measure_cudnn.sh [BUDGET_S]
# Needs only python3 (or $PYTHON) with torch (+torchvision, tqdm, pyyaml); pandas is not needed to measure.
# Order: first the fine sweeps (every channel count from 25% to 100% of 4 ResNet-18 and 2 MobileNetV2
# layers) for all four dtype x batch variants, then coarse sweeps of every conv of both models. A run cut
# short by BUDGET_S resumes where it stopped (the tables are append-only and skip what is measured).
set -euo pipefail
OUT=${OUT:-tables}
BUDGET=${1:-470}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv || true
"${PYTHON:-python3}" - "$OUT" "$BUDGET" <<'PY'
import dataclasses
import logging
import sys
import time

from hwprune.measure import EvaluatorConfig, load_target, measure, model_space

logging.basicConfig(level=logging.WARNING)
out, budget = sys.argv[1], float(sys.argv[2])
t0 = time.perf_counter()
ev = EvaluatorConfig(warmup=3, number=1, repeat=7, min_repeat_ms=2.0)
fine = {"resnet18": ["layer1.0.conv1", "layer2.0.conv2", "layer3.0.conv2", "layer4.0.conv2"],
        "mobilenet_v2": ["features.3.conv.0.0", "features.5.conv.1.0"]}
coarse_step = {"resnet18": 8, "mobilenet_v2": 16}
stages = []
for kind in ("fine", "coarse"):
    for dt in ("fp32", "fp16"):
        for b in (1, 32):
            for model in ("resnet18", "mobilenet_v2"):
                stages.append((kind, dt, b, model))
note = ("lent GPU through the device tool; nothing else ran on it; cudnn.benchmark on; CUDA events; "
        f"evaluator {ev}")
for kind, dt, b, model in stages:
    left = budget - (time.perf_counter() - t0)
    if left < 5:
        print(f"budget spent: skipping {kind} {dt} b{b} {model}")
        continue
    target = dataclasses.replace(load_target(f"cuda_cudnn_{dt}"), batch=b)
    shape = (b, 3, 224, 224)
    space = (model_space(model, shape, step=1, layers=fine[model]) if kind == "fine"
             else model_space(model, shape, step=coarse_step[model]))
    try:
        s = measure(target, space, f"{out}/cuda_cudnn_{dt}/{model}_224.csv", evaluator=ev, progress=False,
                    time_budget_s=left, sidecar={"load_note": note})
        print(f"{kind:6s} {dt} b{b:<2d} {model:12s}: {len(space)} configs, measured {s.measured}, "
              f"failed {s.failed}, skipped {s.skipped}, {s.wall_s:.1f} s (total {time.perf_counter()-t0:.0f} s)")
    except Exception as err:  # noqa: BLE001 - report and go on with the other stages
        print(f"{kind} {dt} b{b} {model}: {type(err).__name__}: {err}")
PY

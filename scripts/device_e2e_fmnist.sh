#!/usr/bin/env bash
# GPU Fashion-MNIST end-to-end benchmark (python -m benchmarks.e2e --stage fmnist --accelerator gpu) for ResNet-18
# and MobileNetV2 on the lent GPU through the device tool. That machine has torch, torchvision,
# pytorch-lightning, scikit-learn and pandas but no network: carry torch-pruning, skops, prettytable, omegaconf
# and antlr4-python3-runtime wheels in .whl/ (see scripts/device_model_true.sh for how to make them) and the four Fashion-MNIST .gz files in .bench/fmnist/ (run's `carry`), e.g.
#   run(carry=[".whl", ".bench/fmnist"], command="HWPRUNE_COMMIT=<sha> bash scripts/device_e2e_fmnist.sh")
# RATIOS (default 0.3,0.7) adds hwprune latency budgets beside 0.5 for the Pareto plot; SMOKE=0 skips the
# --quick run. Raw JSON lands in $OUT/bench_raw_fmnist_<model>_gpu.json.
set -euo pipefail
OUT=${OUT:-/tmp/hwprune_out}
PY=${PYTHON:-python3}
MODELS=${MODELS:-resnet18 mobilenet_v2}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT"
for pkg in torch_pruning:torch_pruning skops:skops prettytable:prettytable omegaconf:omegaconf antlr4:antlr4_python3_runtime; do
  mod=${pkg%%:*}; whl=${pkg##*:}
  "$PY" -c "import $mod" 2>/dev/null || "$PY" -m pip install -q --no-deps --no-index .whl/${whl}-*.whl
done
"$PY" -c "import torch, torchvision, pytorch_lightning, sklearn, torch_pruning, skops; print('torch', torch.__version__, 'tv', torchvision.__version__, 'pl', pytorch_lightning.__version__, 'sklearn', sklearn.__version__, 'tp', torch_pruning.__version__, torch.cuda.get_device_name())"
if [ "${SMOKE:-1}" = 1 ]; then  # a --quick run first: a broken setup fails in seconds, not minutes
  "$PY" -m benchmarks.e2e --stage fmnist --accelerator gpu --fmnist-model resnet18 --fmnist-source .bench/fmnist \
    --quick --out /tmp/quick 2>&1 | grep -E "fmnist|Error|error" | tail -8
fi
for m in $MODELS; do
  t=$(date +%s)
  "$PY" -m benchmarks.e2e --stage fmnist --accelerator gpu --fmnist-model "$m" --fmnist-source .bench/fmnist \
    --ratios "${RATIOS:-0.3,0.7}" --out "$OUT" 2>&1 | grep -E "benchmarks.e2e|Error|error|Traceback" | tail -12
  echo "$m done in $(( $(date +%s) - t )) s"
done

#!/usr/bin/env bash
# Issue 17's GPU figures on the lent H200 (device tool): benchmarks.model_true in a deploy runtime.
#   MODE=smoke scripts/device_runtime.sh                    # CUDA tests + a tiny run of each runtime (~2 min)
#   MODE=start JOBS="cuda_cudnn_fp16_cl_graph=resnet18:32:224 ..." scripts/device_runtime.sh
#                                                           # start the jobs in the background (setsid)
#   MODE=wait WAIT_S=560 scripts/device_runtime.sh          # wait, then copy what is done to $OUT
# Each job is TARGET=SETTING; its JSON, log and tables land in /tmp/hw/ and are copied to $OUT by `wait`.
# The wheels in .whl/ travel with `carry: [".whl"]` (see scripts/device_model_true.sh for how to make them).
set -uo pipefail
OUT=${OUT:-/tmp/hwprune_out}
PY=${PYTHON:-python3}
W=/tmp/hw
mkdir -p "$W"
if [ -d .whl ] && [ ! -d /tmp/site ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
case "${MODE:-smoke}" in
smoke)
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu,utilization.gpu --format=csv
  "$PY" -m pytest -q -p no:cacheprovider tests/measure/test_runtimes.py tests/measure/test_cuda.py 2>&1 | tail -15
  for ts in cuda_cudnn_fp16_cl_graph=resnet18:32:224 cuda_cudnn_fp16_cl_inductor=resnet18:8:64; do
    t=${ts%%=*}
    timeout 400 "$PY" -m benchmarks.model_true --config model_true_runtime --target $t --setting ${ts#*=} \
      --runs 1 --ratios 0.5 --step 32 --pairs 4 --rounds 3 --out "$W/smoke_$t" --json "$OUT/smoke_$t.json" \
      --set baselines_later_ratios=null layer_checks=false 2>&1 | grep -v "cfg/s" | tail -25
  done
  ;;
start)
  cat > "$W/jobs.sh" <<INNER
cd $PWD
for j in ${JOBS}; do
  t=\${j%%=*}; s=\${j#*=}; tag=\${t}_\${s//:/_}
  echo "\$(date +%T) start \$tag" >> $W/progress.txt
  "$PY" -m benchmarks.model_true --config model_true_runtime --target \$t --setting \$s ${EXTRA:-} \
    --out $W/work_\$tag --json $W/mt_\$tag.json > $W/log_\$tag.txt 2>&1
  echo "\$(date +%T) end \$tag rc=\$?" >> $W/progress.txt
done
echo "\$(date +%T) all done" >> $W/progress.txt
INNER
  setsid nohup bash "$W/jobs.sh" > "$W/jobs.out" 2>&1 < /dev/null &
  sleep "${WAIT_S:-5}"
  cat "$W/progress.txt"
  ;;
wait)
  end=$((SECONDS + ${WAIT_S:-540}))
  while [ $SECONDS -lt $end ] && ! grep -q "all done" "$W/progress.txt" 2>/dev/null; do sleep 5; done
  cat "$W/progress.txt"
  cp "$W"/mt_*.json "$OUT"/ 2>/dev/null
  for f in "$W"/log_*.txt; do grep -v "cfg/s" "$f" | grep -E "model_true|closed loop|calibrat|launch-bound|Error|Traceback|prepared" | tail -12; done
  tar czf "$OUT/logs.tgz" -C "$W" $(cd "$W" && ls log_*.txt progress.txt 2>/dev/null) 2>/dev/null
  ;;
esac

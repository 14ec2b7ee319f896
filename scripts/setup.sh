#!/usr/bin/env bash
# Shared setup step for `make run` and `make test`. Idempotent: safe to run again.
# 1. Debian packages (Fashion-MNIST data, PoCL OpenCL, PyArmNN + CpuRef) when apt is usable as root.
# 2. A virtual environment in .venv with hwprune and all of its extras.
set -euo pipefail
PY="${1:-python3.11}"
VENV="${2:-.venv}"
APT_PKGS="${3:-dataset-fashion-mnist pocl-opencl-icd python3-pyarmnn libarmnn-cpuref-backend22}"

say() { printf '[hwprune setup] %s\n' "$*"; }

missing=()
for p in $APT_PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    apt-get update -qq || say "apt-get update failed; trying the install anyway"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
      || say "WARNING: apt-get install failed for: ${missing[*]} (tests needing them will skip or fail with a hint)"
  else
    say "WARNING: apt-get is not usable as root here; missing Debian packages: ${missing[*]}"
    say "         install them with: sudo apt-get install ${missing[*]}"
  fi
else
  say "Debian packages present: $APT_PKGS"
fi

if ! command -v "$PY" >/dev/null 2>&1; then PY=python3; fi
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $("$PY" --version)"
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
say "installing hwprune with extras [tvm,opencl,export,dev] (first run installs torch from local disk: a few minutes)"
"$VENV/bin/python" -m pip install -q -e ".[tvm,opencl,export,dev]"
say "done: $("$VENV/bin/python" -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)')"

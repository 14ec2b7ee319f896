#!/usr/bin/env bash
# Issue 20: a built wheel works on its own, away from the repository. .ci/run calls it after `make test`.
# 1. Build the wheel from a clean copy of this checkout (tracked files and untracked ones git does not
#    ignore; an in-tree build would leave build/ behind, and stale files there would slip into the wheel).
# 2. Install it in a fresh venv with its dependencies, resolved by pip from the indexes it is configured
#    with (on the dev VM: the local mirror that serves torch==2.14.1). No --system-site-packages and no
#    path into .venv: a dependency missing from pyproject.toml, or a file missing from the wheel, fails here.
#    One shortcut: torch and torchvision are pinned (==) in pyproject.toml; when PYTHON's environment holds
#    exactly those releases, their files and those of the NVIDIA/CUDA/triton distributions they require
#    (5.5 GB) are hard-linked into the fresh venv from there, each with its dist-info, so pip finds them
#    installed and installs everything else itself. That saves about 3 minutes of unpacking and 6 GB of
#    writes (and their deletion). HWPRUNE_WHEEL_CHECK_FULL=1, or another file system, installs them too.
# 3. From an empty temporary folder: `hwprune --help` lists the catalogue; cpu_torch, its shipped table and
#    Hydra's pkg://hwprune.conf (with devices=[a,b]) resolve inside the installed package; and
#    `hwprune measure --target cpu_torch` times two configs and writes a table.
# Usage: bash scripts/wheel_check.sh [PYTHON]  (builds the wheel and makes the venv; default .venv/bin/python)
# Cost on the 2-core dev VM: about 1.5 minutes with the hard links, 5-6 with HWPRUNE_WHEEL_CHECK_FULL=1
# (under load); the temporary folder is removed at exit. pip's own cache is reused (the wheels it built
# from sdists, such as antlr4-python3-runtime).
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${1:-.venv/bin/python}"
if [ ! -x "$PY" ] && ! command -v "$PY" >/dev/null 2>&1; then PY=python3.11; fi
work="$(mktemp -d "${TMPDIR:-/tmp}/hwprune-wheel-check.XXXXXX")"
trap 'rm -rf "$work"' EXIT
say() { printf '[wheel check %3ds] %s\n' "$SECONDS" "$*"; }
fail() {
  say "FAIL: $*"
  exit 1
}
SECONDS=0

say "copying the checkout to $work/src"
mkdir "$work/src" "$work/dist" "$work/run"
# A tracked file deleted in the working tree is only warned about (--ignore-failed-read): the copy is
# what the working tree holds.
git ls-files -z --cached --others --exclude-standard |
  tar --null --ignore-failed-read -T - -cf - | tar -xf - -C "$work/src"

say "building the wheel with $("$PY" --version)"
"$PY" -m pip wheel --no-deps -q -w "$work/dist" "$work/src" >"$work/build.log" 2>&1 ||
  { tail -40 "$work/build.log"; fail "pip wheel failed (log above)"; }
wheel="$(ls "$work"/dist/hwprune-*.whl)"
say "built $(basename "$wheel") ($(du -h "$wheel" | cut -f1))"

# Hard-links the pinned torch and torchvision of PYTHON's environment, and the binary distributions they
# require, into the site-packages folder $1 (each with its dist-info); prints what it linked. Exits 3
# without writing anything where PYTHON does not hold exactly the pinned releases.
read -r -d '' LINK_PINNED <<'PYEOF' || true
import os, re, sys, tomllib
from importlib import metadata
from pathlib import Path

site, pyproject = Path(sys.argv[1]), Path(sys.argv[2])
pin = re.compile(r"(torch|torchvision)==(\S+)")
pins = dict(m.groups() for d in tomllib.loads(pyproject.read_text())["project"]["dependencies"]
            if (m := pin.fullmatch(d.replace(" ", ""))))


def dist(name: str) -> metadata.Distribution | None:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None


have = {n: (d.version if (d := dist(n)) else None) for n in pins}
if len(pins) != 2 or have != pins:
    print(f"  {sys.executable} holds {have}, pyproject pins {pins}", file=sys.stderr)
    sys.exit(3)
todo, seen = list(pins), set()  # the pins, then what pip would unpack for them: nvidia-*, cuda-*, triton
while todo:
    d = dist(todo.pop())
    if d is None or d.metadata["Name"].lower() in seen:
        continue
    seen.add(d.metadata["Name"].lower())
    for req in d.requires or []:
        dep = re.match(r"[A-Za-z0-9._-]+", req).group(0).lower().replace("_", "-")
        if dep.startswith(("nvidia-", "cuda-")) or dep == "triton":
            todo.append(dep)
n = 0
for name in sorted(seen):
    d = dist(name)
    for f in d.files or []:
        if f.parts[0] == "..":  # console scripts in bin/ name PYTHON's interpreter: not needed here
            continue
        (site / f).parent.mkdir(parents=True, exist_ok=True)
        os.link(d.locate_file(f), site / f)  # EXDEV across file systems: the caller installs in full
        n += 1
print(f"  hard-linked {n} files of {len(seen)} distributions: {', '.join(sorted(seen))}")
PYEOF

say "installing it with its dependencies in a fresh venv"
"$PY" -m venv "$work/venv"
vpy="$work/venv/bin/python"
if [ "${HWPRUNE_WHEEL_CHECK_FULL:-0}" != 1 ]; then
  site="$("$vpy" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  if ! "$PY" -c "$LINK_PINNED" "$site" "$work/src/pyproject.toml"; then
    say "no hard links (see above): pip installs every dependency"
    rm -rf "$work/venv" && "$PY" -m venv "$work/venv"
  fi
fi
# --no-compile: no .pyc for torch's thousands of modules up front (the check imports a few of them).
"$vpy" -m pip install -q --no-compile "$wheel" >"$work/install.log" 2>&1 ||
  { grep -v "is ignored: it is neither" "$work/install.log" | tail -40; fail "pip install failed (log above)"; }
"$vpy" -m pip check >"$work/check.log" 2>&1 || { cat "$work/check.log"; fail "pip check: broken dependencies"; }
say "installed $("$vpy" -m pip list --format=freeze 2>/dev/null | wc -l) distributions:" \
  "$("$vpy" -m pip list --format=freeze 2>/dev/null | grep -iE '^(hwprune|torch|torchvision|hydra-core)==' | paste -sd' ' -)"

# From here on nothing may come from the repository: an empty folder, no PYTHONPATH, no user site, and a
# cache folder of its own (nothing is written into ~/.cache).
cd "$work/run"
run() { env -u PYTHONPATH PYTHONNOUSERSITE=1 XDG_CACHE_HOME="$work/cache" "$@"; }

say "hwprune --help lists the target catalogue"
run "$work/venv/bin/hwprune" --help >"$work/help.txt" || fail "hwprune --help failed"
grep -q "^targets: .*cpu_torch" "$work/help.txt" || { cat "$work/help.txt"; fail "--help lists no cpu_torch"; }

say "cpu_torch, its shipped table and the Hydra config tree resolve inside the installed package"
run "$vpy" - "$work/venv" <<'PYEOF' || fail "the catalogue does not resolve from the wheel"
import sys
from pathlib import Path

import hwprune
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from hwprune.measure import load_target, read_table

venv = Path(sys.argv[1]).resolve()
here = Path(hwprune.__file__).resolve()
assert here.is_relative_to(venv), f"`hwprune` must be imported from the fresh venv {venv}, got {here}"
target = load_target("cpu_torch")
table = target.table_path
assert table is not None and table.resolve().is_relative_to(venv), f"shipped table not in the wheel: {table}"
assert table.with_suffix(".json").is_file(), f"the table's sidecar is missing: {table.with_suffix('.json')}"
print(f"  cpu_torch table: {table} ({len(read_table(table))} rows)")
with initialize_config_module(config_module="hwprune.conf", version_base="1.3"):
    cfg = compose(config_name="config", overrides=["devices=[cpu_torch,cuda_cudnn_tf32]", "model=resnet18"])
factories = instantiate(cfg.pruning.callbacks.hw_aware.predictor)
assert list(factories) == ["cpu_torch", "cuda_cudnn_tf32"], f"devices=[a,b] gave {list(factories)}"
print(f"  pkg://hwprune.conf: device={cfg.device.name}, devices={list(cfg.devices)} -> {list(factories)}")
PYEOF

say "hwprune measure --target cpu_torch writes a table"
run "$work/venv/bin/hwprune" measure --target cpu_torch --model small_resnet --input 1,1,28,28 \
  --sweep-in coupled --step 16 --layers layers.1.conv2 --limit 2 --warmup 1 --repeat 3 --min-repeat-ms 1 \
  --retime 0 --no-progress --out "$work/run/t.csv" || fail "hwprune measure failed"
rows="$(($(wc -l <"$work/run/t.csv") - 1))"
[ "$rows" -ge 2 ] && [ -f "$work/run/t.json" ] || fail "the table has $rows rows (2 expected) or no sidecar"

say "OK: the wheel resolves the catalogue, its tables and the config tree from $work/run"

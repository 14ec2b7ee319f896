"""Run the main job (`make run`: train.py with the default config) and commit its artifacts to docs/main_job/.

The README's main-job figure (accuracy, wall time, parameters, measured latency) is read from the files this
script writes, so it always points to a run whose report is in the repository:

    python -m benchmarks.main_job                 # ~3 min on the 2-core CI machine when idle
    python -m benchmarks.main_job --out /tmp/mj   # anywhere else (tests use tiny overrides)

It writes ``metrics.json``, ``pruning_report.json``, ``pruning_report.md`` and ``config.yaml`` from the run
folder, plus ``run.json`` (machine, date, commit, command, the cached table's state and the wall time).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, commit, machine

ARTIFACTS = ("metrics.json", "pruning_report.json", "pruning_report.md", "config.yaml")


def run(out: Path, overrides: list[str]) -> dict[str, object]:
    """Run train.py once with ``overrides`` and copy its artifacts into ``out``.

    Args:
        out: Folder for the artifacts (created).
        overrides: Hydra overrides (none for the real main job).

    Returns:
        The ``run.json`` record.

    Raises:
        RuntimeError: If train.py fails.
    """
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(os.path.expanduser("~/.cache/hwprune/tables"))
    cached_before = sorted(str(p.relative_to(cache)) for p in cache.rglob("*.csv")) if cache.is_dir() else []
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "train.py", *overrides, f"hydra.run.dir={tmp}/run"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"train.py failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        for name in ARTIFACTS:
            src = Path(tmp) / "run" / name
            if src.is_file():
                shutil.copy(src, out / name)
    record: dict[str, object] = {
        "command": "python train.py " + " ".join(overrides),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": commit(),
        "machine": machine(),
        "wall_s": round(wall, 1),
        "cached_tables_before": cached_before,
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    (out / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "main_job", help="artifact folder")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides (none for the main job)")
    args = ap.parse_args()
    print(json.dumps(run(args.out, list(args.overrides)), indent=2))


if __name__ == "__main__":
    main()

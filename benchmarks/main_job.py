"""Run the main job (`make run`: train.py with the default config) and commit its artifacts to docs/main_job/.

The README's main-job figure (accuracy, wall time, parameters, measured latency) is read from the files this
script writes, so it always points to a run whose report is in the repository:

    python -m benchmarks.main_job                 # ~3 min on the 2-core CI machine when idle
    python -m benchmarks.main_job --out /tmp/mj   # anywhere else (tests use tiny overrides)

It writes ``metrics.json``, ``pruning_report.json``, ``pruning_report.md`` and ``config.yaml`` from the run
folder, plus ``run.json`` (machine, date, commit, command, the cached table's state, the wall time, and a
``standalone`` timing of the saved ``pruned.pt`` against a fresh dense model in this process, with the same
stopwatch as the run's checks, :data:`hwprune.verify.stopwatch.STOPWATCH`, judged the same way; its
``agrees`` says whether it reaches the report's "met / NOT met").
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
        standalone = standalone_timing(Path(tmp) / "run")
    record: dict[str, object] = {
        "command": "python train.py " + " ".join(overrides),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": commit(),
        "machine": machine(),
        "wall_s": round(wall, 1),
        "cached_tables_before": cached_before,
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "standalone": standalone,
    }
    (out / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def standalone_timing(run_dir: Path) -> dict[str, object] | None:
    """Time a run's saved ``pruned.pt`` against a fresh dense model here, as the run's own checks do.

    The dense model is built from the run's ``config.yaml``, the pruned one rebuilt from the bundle
    (:func:`hwprune.prune.bundle.load_pruned`); both are timed on the run's device with
    :func:`hwprune.verify.stopwatch.time_against_dense` and judged with
    :func:`hwprune.verify.stopwatch.judge` against the run's budget.

    Args:
        run_dir: The run folder (``config.yaml``, ``pruned.pt``, ``pruning_report.json``).

    Returns:
        ``dense_ms``, ``pruned_ms``, their IQRs, ``share`` and its IQR, ``met``, the report's ``report_met``
        and ``agrees``; None when the run has no bundle, no pruning callback, or a device not timed here.
    """
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from hwprune.measure import can_time_models
    from hwprune.prune.bundle import load_pruned
    from hwprune.verify.stopwatch import STOPWATCH, judge, time_against_dense

    bundle, config, report = run_dir / "pruned.pt", run_dir / "config.yaml", run_dir / "pruning_report.json"
    if not (bundle.is_file() and config.is_file() and report.is_file()):
        return None
    cfg = OmegaConf.load(config)
    hw = OmegaConf.select(cfg, "pruning.callbacks.hw_aware")
    if hw is None:
        return None
    target = instantiate(cfg.device)
    if not can_time_models(target):
        return None
    shape = tuple(int(s) for s in hw.input_shape)
    dense = instantiate(cfg.model).eval()
    pruned = load_pruned(bundle, instantiate(cfg.model)).eval()
    dense_t, (pruned_t,) = time_against_dense(target, dense, [pruned], shape)
    ratio = hw.get("latency_ratio")
    r = json.loads(report.read_text())
    budget_ms = r.get("budget_ms")
    verdict = judge(
        pruned_t,
        dense_t,
        latency_ratio=None if ratio is None else float(ratio),
        budget_ms=None if budget_ms is None else float(budget_ms),
    )
    report_met = bool(r["budget"]["met"])
    return {
        "dense_ms": dense_t.median_ms,
        "dense_iqr_ms": dense_t.iqr_ms,
        "pruned_ms": pruned_t.median_ms,
        "pruned_iqr_ms": pruned_t.iqr_ms,
        "share": verdict.share,
        "share_iqr": verdict.share_spread,
        "met": verdict.met,
        "verdict": verdict.describe(),
        "report_met": report_met,
        "agrees": verdict.met == report_met,
        "stopwatch": STOPWATCH.describe(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "main_job", help="artifact folder")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides (none for the main job)")
    args = ap.parse_args()
    print(json.dumps(run(args.out, list(args.overrides)), indent=2))


if __name__ == "__main__":
    main()

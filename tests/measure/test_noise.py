"""Noisy measurements are caught (issue 12, item 15): re-timed, marked, counted, and warned about."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from hwprune.measure import Backend, EvaluatorConfig, RunResult, Target, load_target, measure, read_table
from hwprune.measure.device_info import load_snapshot
from hwprune.measure.sweep import _timed
from hwprune.measure.table import noisy_rows

# Bursts of spinning and sleeping of random length: the load a shared board sees, so that samples of one
# config meet different contention and their spread grows. Stops by itself after 60 s.
_BUSY = """
import random, time
end = time.time() + 60
while time.time() < end:
    t = time.perf_counter() + random.uniform(0.001, 0.02)
    while time.perf_counter() < t:
        pass
    time.sleep(random.uniform(0.0, 0.01))
"""


def _space(n: int) -> list[dict[str, int]]:
    return [
        dict(
            batch=1,
            in_channels=16,
            out_channels=8 + 4 * i,
            height=14,
            width=14,
            kernel_size=3,
            stride=1,
            padding=1,
            groups=1,
        )
        for i in range(n)
    ]


@pytest.fixture
def busy() -> Iterator[None]:
    """One bursty busy loop per core, plus one: the sweep shares every core."""
    procs = [
        subprocess.Popen([sys.executable, "-c", _BUSY], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range((os.cpu_count() or 2) + 1)
    ]
    time.sleep(0.3)
    try:
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def test_sweep_beside_a_busy_process_warns(
    busy: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Asserts on the warning and the marks, not on absolute times.

    How much spread a busy neighbour causes depends on the machine: one CI machine (fast cores, short
    scheduler slices) kept all 12 rows under 5% beside it. The threshold is therefore set at 0.01%, which
    no real timing of 7 samples stays under; the test checks what the sweep does with noisy rows (re-time,
    mark, count, warn, record), not how noisy a given machine is.
    """
    out = tmp_path / "busy.csv"
    ev = EvaluatorConfig(warmup=1, repeat=7, min_repeat_ms=2.0, max_rel_spread=1e-4, retime=1)
    t0 = time.perf_counter()
    with caplog.at_level(logging.INFO, logger="hwprune"):
        summary = measure(load_target("cpu_torch"), _space(12), out, evaluator=ev, progress=False)
    assert time.perf_counter() - t0 < 20
    assert summary.noisy >= 1 and summary.retimed >= summary.noisy
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"{summary.noisy} of 12 rows stayed noisy" in m for m in warning), warning
    df = read_table(out)
    assert int(noisy_rows(df).sum()) == summary.noisy
    run = json.loads(out.with_suffix(".json").read_text())["runs"][-1]
    assert run["noisy"] == summary.noisy and run["retimed"] == summary.retimed
    assert run["load_start"]["loadavg"] is not None and run["load_end"]["cpus"] == os.cpu_count()


def test_load_snapshot_reads_this_machine() -> None:
    snap = load_snapshot()
    assert len(snap["loadavg"]) == 3 and snap["cpus"] == os.cpu_count()
    assert snap["cpu_mhz"] is None or all(f > 0 for f in snap["cpu_mhz"])
    assert snap["gpu_clocks"] is None  # not asked for


def test_noise_settings_are_validated() -> None:
    with pytest.raises(ValueError, match=r"`max_rel_spread` must be a fraction > 0, got 0"):
        EvaluatorConfig(max_rel_spread=0)
    with pytest.raises(ValueError, match=r"`retime` must be >= 0, got -1"):
        EvaluatorConfig(retime=-1)


class _Scripted(Backend):
    """A backend that returns given results in turn (the nn-Meter "debug backend" idea): no device needed."""

    kind = "imported"

    def __init__(self, results: list[RunResult]) -> None:
        super().__init__(Target(name="scripted", backend="imported"))
        self.results = list(results)

    def run(self, config: Mapping[str, int]) -> RunResult:
        return self.results.pop(0)


def test_retime_keeps_the_least_noisy_timing_and_what_happened_before() -> None:
    """A reconnect during the first try stays on the row even when a later, quieter timing is kept."""
    ev = EvaluatorConfig(max_rel_spread=0.1, retime=2)
    first = RunResult(1.0, 0.5, 7, None, {"rpc_reconnects": 1, "rpc": True})
    quiet = RunResult(0.9, 0.01, 7, None, {"rpc": True})
    res, extra = _timed(_Scripted([first, quiet]), {}, ev)
    assert extra == 1 and res.latency_ms == 0.9 and "noisy" not in res.settings
    assert res.settings["rpc_reconnects"] == 1 and res.settings["retimed"] == 1
    # A re-timing that fails ends the re-timing; the noisy first timing is kept and marked.
    res, extra = _timed(_Scripted([first, RunResult(None, None, 0, "board gone")]), {}, ev)
    assert extra == 1 and res.latency_ms == 1.0 and res.settings["noisy"] is True and res.error is None

"""kill -9 of a real sweep process, then resume: nothing lost, nothing duplicated, measured rows skipped."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hwprune.contract import CONFIG_COLUMNS
from hwprune.measure import EvaluatorConfig, Target, measure

_CHILD = """
import sys
from hwprune.measure import EvaluatorConfig, Target, measure
space = [dict(batch=1, in_channels=8, out_channels=c, height=16, width=16, kernel_size=3, stride=1,
              padding=1, groups=1) for c in range(1, 41)]
measure(Target(name="kill", backend="torch_cpu", options={"threads": 1}), space, sys.argv[1],
        evaluator=EvaluatorConfig(warmup=1, number=1, repeat=3, min_repeat_ms=25.0), progress=False)
"""


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_kill_9_then_resume(tmp_path: Path) -> None:
    out = tmp_path / "k.csv"
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(out)],
        env={**os.environ, "PYTHONPATH": os.getcwd()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if out.exists() and out.read_text().count("\n") >= 1 + 8:
                break
            assert proc.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    before = out.read_bytes()
    complete = before[: before.rfind(b"\n") + 1].decode()
    n_before = complete.count("\n") - 1
    assert 8 <= n_before < 40
    first_rows = _rows(out)[: n_before - 1] if not before.endswith(b"\n") else _rows(out)[:n_before]

    space = [
        dict(
            batch=1,
            in_channels=8,
            out_channels=c,
            height=16,
            width=16,
            kernel_size=3,
            stride=1,
            padding=1,
            groups=1,
        )
        for c in range(1, 41)
    ]
    s = measure(
        Target(name="kill", backend="torch_cpu", options={"threads": 1}),
        space,
        out,
        evaluator=EvaluatorConfig(warmup=1, number=1, repeat=3, min_repeat_ms=1.0),
        progress=False,
    )
    rows = _rows(out)
    keys = [tuple(r[c] for c in CONFIG_COLUMNS) for r in rows]
    assert len(rows) == 40 and len(set(keys)) == 40  # 0 lost, 0 duplicated
    assert s.skipped == n_before and s.measured == 40 - n_before  # finished rows were not timed again
    assert rows[: len(first_rows)] == first_rows  # rows written before the kill are untouched

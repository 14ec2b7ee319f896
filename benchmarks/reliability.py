"""Run the reliability suite and count what it shows, for docs/RELIABILITY.md.

    python -m benchmarks.reliability              # tests/reliability only
    python -m benchmarks.reliability --callbacks  # plus the kill -9 fine-tune and DDP tests

It runs pytest on ``tests/reliability`` (and, with ``--callbacks``, the resume and DDP tests of
``tests/callbacks/test_hw_pruning.py``), reads the JUnit XML and the figures the fault and fuzz tests write,
and prints a Markdown summary: bad inputs tried and answered well (per category), fuzz cases run, faults
injected and rows or steps lost. The raw figures go to ``docs/reliability_results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import ROOT as REPO
from hwprune.measure.device_info import cpu_model


def shipped_tables_sentence() -> str:
    """The RELIABILITY.md count of committed tables that pass the table checks, read from the files.

    Every ``tables/**/*.csv`` goes through :func:`hwprune.measure.read_table` (which raises on any check
    that fails), so the sentence counts only tables that passed.
    """
    from hwprune.measure.table import read_table

    paths = sorted(REPO.glob("tables/**/*.csv"))
    frames = [read_table(p) for p in paths]
    names = {"torch_cpu": "CPU", "tvm": "TVM", "cudnn": "cuDNN", "acl": "ACL", "imported": "imported"}
    backends = sorted({str(b) for f in frames for b in f["backend"].unique()}, key=list(names).index)
    kinds = [names.get(b, b) for b in backends]
    listed = ", ".join(kinds[:-1]) + f" and {kinds[-1]}" if len(kinds) > 1 else kinds[0]
    return (
        f"All {len(paths)} committed tables ({sum(len(f) for f in frames):,} rows: {listed}) pass these "
        "checks."
    )


CALLBACK_TESTS = [
    "tests/callbacks/test_hw_pruning.py::test_resume_after_kill_restores_architecture_and_schedule",
    "tests/callbacks/test_hw_pruning.py::test_ddp_ranks_hold_identical_architectures",
]


def main(argv: list[str] | None = None) -> int:
    """Run the suite, print the summary, write the JSON; return pytest's exit code."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--callbacks", action="store_true", help="also run the fine-tune kill -9 and DDP tests")
    ap.add_argument("--out", default=str(REPO / "docs" / "reliability_results.json"))
    ap.add_argument("--select", default=None, help="only the tests that this pytest -k expression selects")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        fuzz = Path(tmp) / "fuzz.json"
        faults = Path(tmp) / "faults.json"
        targets = ["tests/reliability"] + (CALLBACK_TESTS if args.callbacks else [])
        env = {**os.environ, "HWPRUNE_FUZZ_COUNTS": str(fuzz), "HWPRUNE_FAULTS_OUT": str(faults)}
        t0 = time.perf_counter()
        rc = subprocess.call(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                f"--junitxml={junit}",
                *(["-k", args.select] if args.select else []),
                *targets,
            ],
            cwd=REPO,
            env=env,
        )
        wall = time.perf_counter() - t0
        fuzz_counts = json.loads(fuzz.read_text()) if fuzz.is_file() else {}
        fault_figs = json.loads(faults.read_text()) if faults.is_file() else {}
        cases = ET.parse(junit).getroot().iter("testcase")

        tried: Counter[str] = Counter()
        well: Counter[str] = Counter()
        failed: list[str] = []
        skipped: list[str] = []
        other: dict[str, str] = {}
        for case in cases:
            name = case.get("name", "")
            outcome = "passed"
            if case.find("failure") is not None or case.find("error") is not None:
                outcome = "failed"
            elif case.find("skipped") is not None:
                outcome = "skipped"
            if name.startswith("test_bad_input_gets_a_clear_error["):
                cid = name[name.index("[") + 1 : -1]
                category = cid.split("-", 1)[0]
                if outcome == "skipped":
                    skipped.append(cid)
                    continue
                tried[category] += 1
                if outcome == "passed":
                    well[category] += 1
                else:
                    failed.append(cid)
            else:
                other[f"{case.get('classname')}::{name}"] = outcome

    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "wall_s": round(wall, 1),
        "pytest_exit_code": rc,
        "bad_inputs": {
            "tried": dict(tried),
            "answered_well": dict(well),
            "failed": failed,
            "skipped": skipped,
        },
        "fuzz_cases": fuzz_counts,
        "faults": fault_figs,
        "other_tests": other,
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")

    print(f"\n## Reliability figures ({result['date']}, {result['machine']}, {wall:.0f} s)\n")
    print("| category | bad inputs tried | answered well |\n|---|---|---|")
    for cat in sorted(tried):
        print(f"| {cat} | {tried[cat]} | {well[cat]} |")
    print(f"| **all** | **{sum(tried.values())}** | **{sum(well.values())}** |")
    print(f"\n{shipped_tables_sentence()}")
    if skipped:
        print(f"\nskipped here (cannot happen on this machine): {', '.join(skipped)}")
    if failed:
        print(f"\nNOT answered well: {', '.join(failed)}")
    print("\n| fuzz target | cases run |\n|---|---|")
    for k, v in fuzz_counts.items():
        print(f"| {k} | {v} |")
    print(f"| **all** | **{sum(fuzz_counts.values())}** |")
    print("\n| fault | figures |\n|---|---|")
    for k, v in fault_figs.items():
        print(f"| {k} | {', '.join(f'{a}={b}' for a, b in v.items())} |")
    for k, v in other.items():
        if "callbacks" in k:
            print(f"| {k.rsplit('::', 1)[-1]} | {v} |")
    print(f"\nwrote {args.out}; pytest exit code {rc}")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())

"""Every documented ``python -m benchmarks.X`` command runs through its ``main()`` at tiny size (issue 19).

The commands are collected from the README, docs/, the benchmarks' docstrings and scripts/; each module
named there must have a tiny run below, or name the test that already runs its ``main()``. Every run is a
real ``python -m benchmarks.X`` process (what a reader types), writing only into a temp folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
_COMMAND = re.compile(r"python3? -m benchmarks\.([a-z0-9_]+)")


def documented_modules() -> set[str]:
    """Modules of every ``python -m benchmarks.X`` in the README, docs/*.md, benchmarks/*.py, scripts/*."""
    files = [
        ROOT / "README.md",
        *ROOT.glob("docs/*.md"),
        *ROOT.glob("benchmarks/*.py"),
        *ROOT.glob("scripts/*"),
    ]
    found: set[str] = set()
    for f in files:
        if f.is_file():
            found |= set(_COMMAND.findall(f.read_text(encoding="utf-8", errors="replace")))
    return found


# module -> (test file, text there that runs the module's main()): tests elsewhere in the suite.
ELSEWHERE = {
    "measure_tables": ("test_measure_tables.py", "measure_tables.main(["),
    "paper_sweep": ("test_parts.py", "paper_sweep.main(["),
    "multi_target": ("test_multi_target.py", "multi_target.main(argv)"),
    "multi_target_callback": ("test_multi_target.py", "multi_target_callback.main(argv)"),
    "multi_target_report": ("test_multi_target.py", "multi_target_report.main(["),
    "model_true_report": ("test_model_true.py", "model_true_report.main(["),
    "reproduce_paper": ("test_quick.py", '_run("reproduce_paper"'),
}

Check = Callable[[Path, str], None]


def _files(*names: str) -> Check:
    def check(tmp: Path, out: str) -> None:
        for n in names:
            assert (tmp / n).is_file(), f"{n} not written; output:\n{out[-2000:]}"

    return check


def _says(text: str) -> Check:
    def check(tmp: Path, out: str) -> None:
        assert text in out, out[-2000:]

    return check


def _model_true(tmp: Path, out: str) -> None:
    raw = json.loads((tmp / "mt" / "model_true_cpu_torch.json").read_text())
    assert raw["config"]["min_channel_ratio"] == 0.3  # --min-ratio reached the config (it crashed before)
    s = raw["settings"]["small_resnet:1:28"]
    assert {"dense", "hwprune_0.5_run0", "uniform_l1_0.5"} <= set(s["timings"])


# (module, argv with {tmp}, check); at most ~30 s each on 2 cores.
TINY: list[tuple[str, list[str], Check]] = [
    ("readme_figures", [], _says("slow ones have their *in*-channels cut")),
    ("predictor", ["--quick"], _says("within")),
    ("adapt", ["--quick"], _says("scratch")),
    ("zoo", ["--quick", "--out", "{tmp}/zoo"], _files("zoo/zoo.json")),
    (
        "model_true",
        [
            "--setting",
            "small_resnet:1:28",
            "--out",
            "{tmp}/mt",
            "--runs",
            "1",
            "--ratios",
            "0.5",
            "--step",
            "32",
            "--pairs",
            "2",
            "--rounds",
            "2",
            "--repeat",
            "3",
            "--min-repeat-ms",
            "1",
            "--model-sample-ms",
            "5",
            "--min-ratio",
            "0.3",
            "--set",
            "match_iters=2",
        ],
        _model_true,
    ),  # fmt: skip
    (
        "e2e",
        ["--stage", "report", "--out", "{tmp}/docs", "--zoo", "{tmp}/docs/none.json"],
        _files("docs/BENCHMARKS.md"),
    ),
    (
        "layer_check",
        ["--raw", "{tmp}/docs/bench_raw_fmnist.json", "--check", "hwprune:cpu_torch:1"],
        _says("hwprune"),
    ),
    (
        "tvm_time",
        ["--raw", "{tmp}/docs/bench_raw_fmnist.json", "--only", "dense", "--rounds", "1"],
        _says("TVM dense"),
    ),
    (
        "reliability",
        ["--select", "test_corpus_is_large_and_distinct", "--out", "{tmp}/rel.json"],
        _files("rel.json"),
    ),
    (
        "tvm_fleet",
        ["--quick", "--configs", "3", "--out-dir", "{tmp}/fleet", "--no-plot"],
        _files("fleet/FLEET.md"),
    ),
    (
        "main_job",
        [
            "--out",
            "{tmp}/mj",
            "data.datamodule.subset=256",
            "trainer.max_epochs=1",
            "trainer.enable_progress_bar=false",
            "pruning=none",
        ],
        _files("mj/metrics.json", "mj/run.json"),
    ),  # fmt: skip
    ("gpu_time", ["--quick", "--zoo", "{tmp}/zoo.json", "--out", "{tmp}/gpu"], _files("gpu")),
    (
        "runtime_report",
        ["--raw", "docs/runtime", "--out", "{tmp}/RUNTIMES.md", "--plot", "{tmp}/runtime_speedups.png"],
        _files("RUNTIMES.md", "runtime_speedups.png"),
    ),
]
NEEDS_CUDA = {"gpu_time"}


def test_every_documented_command_has_a_tiny_run() -> None:
    documented = documented_modules()
    assert {"model_true", "adapt", "tvm_fleet"} <= documented  # the scan finds them
    covered = {m for m, _, _ in TINY} | set(ELSEWHERE)
    assert documented <= covered, f"documented but never run in a test: {sorted(documented - covered)}"
    for module, (test_file, text) in ELSEWHERE.items():
        assert text in (Path(__file__).parent / test_file).read_text(), (module, test_file)


@pytest.mark.slow
@pytest.mark.parametrize(("module", "argv", "check"), TINY, ids=[m for m, _, _ in TINY])
def test_documented_command_runs_at_tiny_size(
    tmp_path: Path, module: str, argv: list[str], check: Check
) -> None:
    if module in NEEDS_CUDA and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (runs on the lent GPU only)")
    docs = tmp_path / "docs"  # the raw files a re-render or a re-timing reads, never the committed ones
    docs.mkdir()
    for f in (ROOT / "docs").glob("bench_raw_*.json"):
        shutil.copy(f, docs)
    shutil.copy(ROOT / "docs" / "BENCHMARKS.md", docs)
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    check(tmp_path, out)

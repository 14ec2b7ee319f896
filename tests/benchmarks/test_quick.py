"""Smoke test of the benchmark scripts in --quick mode (outputs go to tmp, never to docs/)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIELDS = {
    "speedup_vs_dense",
    "speedup_vs_uninstructed",
    "acc_dense",
    "acc_hwprune",
    "acc_uninstructed",
    "slowdown_decisions",
    "layers_decided",
    "device",
}


def _run(module: str, out: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", "--quick", "--out", str(out)],
        check=True,
        cwd=ROOT,
        timeout=240,
    )


@pytest.mark.skipif(not (ROOT / "tables/cpu_torch/small_resnet_28.csv").is_file(), reason="no shipped table")
def test_quick_benchmarks_write_structured_outputs(tmp_path: Path) -> None:
    _run("reproduce_paper", tmp_path)
    repro = json.loads((tmp_path / "reproduction.json").read_text())
    assert repro["layers"] and {"ratio12", "worst", "best_friendly"} <= set(repro["layers"][0])
    assert "# Reproducing" in (tmp_path / "REPRODUCTION.md").read_text()

    _run("e2e", tmp_path)
    bench = json.loads((tmp_path / "benchmarks.json").read_text())
    assert {"torch_cpu", "tvm_llvm", "cudnn"} <= set(bench)
    for key in ("torch_cpu", "tvm_llvm", "cudnn"):
        assert set(bench[key]) == FIELDS
        for field, value in bench[key].items():
            assert value is None or isinstance(value, str if field == "device" else (int, float))
    assert isinstance(bench["torch_cpu"]["acc_hwprune"], float)
    assert bench["torch_cpu"]["speedup_vs_dense"] > 0
    assert "## Fashion-MNIST" in (tmp_path / "BENCHMARKS.md").read_text()

"""benchmarks.model_true_report: every figure from the raw files (baselines: test_common.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from benchmarks import model_true_report

ROOT = Path(__file__).resolve().parents[2]


def test_report_figures_come_from_the_raw_files(tmp_path: Path) -> None:
    for f in (ROOT / "docs").glob("bench_raw_model_true_*.json"):
        shutil.copy(f, tmp_path)
    (tmp_path / "BENCHMARKS.md").write_text("# Benchmarks\n\nintro\n\n## rest\n")
    assert model_true_report.main(["--docs", str(tmp_path)]) == 0
    page = (tmp_path / "MODEL_TRUE.md").read_text()
    raw = json.loads((tmp_path / "bench_raw_model_true_cpu.json").read_text())
    s = raw["settings"]["resnet18:1:224"]
    g = model_true_report.setting_goals(s, "0.5")
    assert g["measured"] == s["timings"]["hwprune_0.5_run0"]["speedup"]
    assert f"| {g['measured_runs'][0]:.2f}x / {g['measured_runs'][1]:.2f}x |" in page
    assert f"{g['vs_uniform']:.2f}x" in page
    bench = (tmp_path / "BENCHMARKS.md").read_text()
    assert bench.index("model_true:start") < bench.index("## rest")  # spliced after the intro
    model_true_report.main(["--docs", str(tmp_path)])
    assert (tmp_path / "BENCHMARKS.md").read_text().count("model_true:start") == 1  # idempotent
    assert (tmp_path / "model_true_speedups.png").stat().st_size > 10_000

"""benchmarks/model_true.py and its report: the parts that run on this CPU in seconds."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import model_true  # noqa: E402
import model_true_report  # noqa: E402

from hwprune.models import build_model  # noqa: E402


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


def test_baselines_match_the_parameter_count() -> None:
    dense = build_model("small_resnet")
    target = sum(p.numel() for p in dense.parameters()) // 2
    m, ratio = model_true.matched_baseline(dense, (1, 1, 28, 28), target, round_to=8, glob=False)
    params = sum(p.numel() for p in m.parameters())
    # round_to=8 on widths of 32-128 moves the count in coarse steps: the nearest is within ~15%.
    assert abs(params - target) / target < 0.15 and 0 < ratio < 0.95
    convs = [c for c in m.modules() if isinstance(c, torch.nn.Conv2d) and c.in_channels > 1]
    assert all(c.out_channels % 8 == 0 for c in convs)  # round_to=8 held

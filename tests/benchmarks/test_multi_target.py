"""benchmarks.multi_target: the quick run end to end, and the report's figures from the raw file."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from benchmarks import multi_target, multi_target_report
from hwprune.data import DEBIAN_FASHION_MNIST_DIR

ROOT = Path(__file__).resolve().parents[2]
RAW = ROOT / "docs" / "bench_raw_multi_target.json"


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_quick_run_plans_each_target_alone_and_together(tmp_path: Path) -> None:
    out = tmp_path / "raw.json"
    argv = [
        "--quick",
        "--out",
        str(out),
        "--set",
        f"targets.cpu_torch.cache_dir={tmp_path / 'tables'}",
        f"train.data_dir={tmp_path / 'data'}",
    ]
    assert multi_target.main(argv) == 0
    raw = json.loads(out.read_text())
    targets = list(raw["targets"])
    assert targets == ["cpu_torch", "cuda_cudnn_fp32_heuristics"]
    assert raw["targets"]["cuda_cudnn_fp32_heuristics"]["table_devices"] == ["NVIDIA H200"]
    info = raw["ratios"]["0.5"]
    for t in targets:  # each budget is the ratio of that target's predicted dense latency
        assert math.isclose(info["budgets_ms"][t], 0.5 * raw["models"]["dense"]["predicted_ms"][t])
    # The plans were applied as planned: each final model's predicted latency is the plan's.
    for key, plan in info["plans"].items():
        for t, ms in plan.get("predicted_ms_at_plan", {}).items():
            assert math.isclose(raw["models"][f"{key}@0.5"]["predicted_ms"][t], ms, rel_tol=1e-6), (key, t)
    joint = info["plans"]["joint"]
    if joint["feasible"]:
        assert all(
            raw["models"]["joint@0.5"]["predicted_ms"][t] <= info["budgets_ms"][t] * (1 + 1e-9)
            for t in targets
        )
    uniform, jp = raw["models"]["uniform_l1@0.5"]["params"], raw["models"]["joint@0.5"]["params"]
    assert abs(uniform / jp - 1) < 0.15  # matched to the joint plan's parameter count
    cost = info["cost_of_sharing"]
    assert (
        "measured_ratio" in cost["cpu_torch"] and "measured_ratio" not in cost["cuda_cudnn_fp32_heuristics"]
    )
    for t, c in cost.items():
        own = raw["models"][c["own_plan"]]["predicted_ms"][t]
        assert math.isclose(c["predicted_ratio"], raw["models"]["joint@0.5"]["predicted_ms"][t] / own)
    rounds = raw["config"]["timing"]["rounds"]
    for m in raw["models"].values():
        assert len(m["measured_ms"]["cpu_torch"]["rounds"]) == rounds
        assert 0.0 <= m["test_acc"] <= 1.0
    page = (tmp_path / "MULTI_TARGET.md").read_text()
    assert "predicted, not measured: no device time" in page and "short subset run" in page


def test_report_figures_come_from_the_raw_file(tmp_path: Path) -> None:
    shutil.copy(RAW, tmp_path)
    assert multi_target_report.main(["--docs", str(tmp_path)]) == 0
    raw = json.loads(RAW.read_text())
    page = (tmp_path / "MULTI_TARGET.md").read_text()
    for ratio, info in raw["ratios"].items():
        c = info["cost_of_sharing"]["cpu_torch"]
        assert f"{c['measured_ratio']['median']:.3f}x (IQR {c['measured_ratio']['iqr']:.3f}" in page
        g = info["cost_of_sharing"]["cuda_cudnn_fp32_heuristics"]
        assert f"| {g['predicted_ratio']:.3f}x | predicted, not measured: no device time |" in page
        for key in multi_target_report.model_keys(raw, ratio):
            assert f"{100 * raw['models'][key]['test_acc']:.1f}%" in page
    assert f"commit `{raw['stamp']['commit']}`" in page
    assert f"before the final timing {multi_target_report.load_triplet(raw['load_before_timing'])}" in page
    assert (tmp_path / "multi_target.png").stat().st_size > 10_000


def test_page_says_first_what_the_run_is_not(tmp_path: Path) -> None:
    """Issue 19: infeasible joint plan, planner-only run, noise and later planner changes at the top."""
    shutil.copy(RAW, tmp_path)
    multi_target_report.main(["--docs", str(tmp_path)])
    page = (tmp_path / "MULTI_TARGET.md").read_text()
    head = page[page.index("## Read first") : page.index("## What was run")]
    assert "**The joint plan at budget 0.5 is not feasible**: cuda_cudnn_fp32_heuristics +1.1% over" in head
    assert "0.971x of its own plan's latency is **noise**" in head and "[0.931, 1.012] holds 1.0" in head
    assert "the `HardwareAwarePruning` callback was not run" in head
    assert "`d37e0eb`" in head  # the planner change after the run (commit 7470fc3) is named
    assert multi_target_report.sharing_interval({"median": 1.2, "iqr": 0.1}) == pytest.approx((1.15, 1.25))


def test_bad_target_kind_is_named() -> None:
    with pytest.raises(ValueError, match="targets.gpu.kind"):
        multi_target.build_predictors({"gpu": {"kind": "guess", "batch": 1}}, None)  # type: ignore[arg-type]

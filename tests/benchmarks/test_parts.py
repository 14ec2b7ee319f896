"""The benchmark building blocks: paper sweep space, layer-decision check, TVM timing and the report."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from benchmarks import e2e_report, layer_check, paper_sweep, tvm_time
from benchmarks.arch import arch_spec
from hwprune.contract import conv_layer_configs
from hwprune.measure.table import read_table
from hwprune.models import build_model

ROOT = Path(__file__).resolve().parents[2]


def test_paper_space_sweeps_half_of_every_conv_with_the_12_percent_count() -> None:
    space = paper_sweep.paper_space("resnet18", divisor=64)
    convs = conv_layer_configs(build_model("resnet18", 1000, 3, 224), (1, 3, 224, 224))
    by_shape: dict[tuple, list[int]] = {}
    for cfg in space:
        key = (cfg["in_channels"], cfg["height"], cfg["kernel_size"], cfg["stride"])
        by_shape.setdefault(key, []).append(cfg["out_channels"])
    for conv in convs:
        c = conv.config
        counts = by_shape[(c["in_channels"], c["height"], c["kernel_size"], c["stride"])]
        C = c["out_channels"]
        assert C in counts and math.ceil(C / 2) in counts and round(0.88 * C) in counts
        step = max(1, C // 64)
        assert len([n for n in counts if C / 2 <= n <= C]) >= (C // 2) // step
    # identical shapes are timed once, with every conv's name on the row
    merged = [
        cfg
        for cfg in space
        if (cfg["in_channels"], cfg["out_channels"], cfg["height"], cfg["stride"]) == (64, 64, 56, 1)
    ]
    assert len(merged) == 1 and merged[0]["layer"].count(";") == 3
    with pytest.raises(ValueError, match="divisor"):
        paper_sweep.paper_space("vgg16", divisor=0)


def test_paper_sweep_cli_writes_a_readable_table(tmp_path: Path) -> None:
    assert (
        paper_sweep.main(["--target", "cpu_torch", "--models", "vgg16", "--quick", "--out", str(tmp_path)])
        == 0
    )
    df = read_table(tmp_path / "cpu_torch" / "paper_vgg16_224.csv")
    assert len(df) == 3 and (df["latency_ms"] > 0).all() and set(df["height"]) == {224}
    with pytest.raises(SystemExit):
        paper_sweep.main(["--target", "cpu_torch", "--models", "alexnet", "--out", str(tmp_path)])


def _pruned_raw(predictor: object) -> tuple[dict, torch.nn.Module, torch.nn.Module]:
    from hwprune.prune import conv_widths, predicted_latency, prune_to_budget

    shape = (1, 1, 28, 28)
    dense = build_model("small_resnet").eval()
    pruned = build_model("small_resnet").eval()
    budget = 0.5 * predicted_latency(predictor, pruned, shape)  # type: ignore[arg-type]
    prune_to_budget(pruned, predictor, shape, budget, dense_widths=conv_widths(dense))  # type: ignore[arg-type]
    raw = {
        "model": "small_resnet",
        "results": {"dense": {"arch": arch_spec(dense)}, "hw": {"arch": arch_spec(pruned)}},
    }
    return raw, dense, pruned


def test_layer_check_times_every_changed_conv_against_its_dense_shape(predictor: object) -> None:
    raw, dense, pruned = _pruned_raw(predictor)
    dw = {
        n: (m.in_channels, m.out_channels) for n, m in dense.named_modules() if isinstance(m, torch.nn.Conv2d)
    }
    pw = {
        n: (m.in_channels, m.out_channels)
        for n, m in pruned.named_modules()
        if isinstance(m, torch.nn.Conv2d)
    }
    changed = {n for n in dw if dw[n] != pw[n]}
    assert changed
    dec = layer_check.decisions(raw, ["hw"], 1)
    assert {d["layer"] for d in dec} == changed
    assert layer_check.decisions(raw, ["dense"], 1) == []
    rows = layer_check.check(raw, ["hw"], "cpu_torch", 1)
    assert len(rows) == len(changed)
    for r in rows:
        assert r["dense_ms"] > 0 and r["pruned_ms"] > 0
        assert tuple(r["pruned_in_out"]) == pw[r["layer"]] and tuple(r["dense_in_out"]) == dw[r["layer"]]


def test_tvm_times_a_heavily_pruned_model_faster_than_dense(predictor: object) -> None:
    pytest.importorskip("tvm")
    from hwprune.measure import EvaluatorConfig

    raw, dense, pruned = _pruned_raw(predictor)
    ev = EvaluatorConfig(warmup=1, number=1, repeat=3, min_repeat_ms=2.0)
    res = tvm_time.time_tvm_rounds({"dense": dense, "pruned": pruned}, (1, 1, 28, 28), rounds=3, evaluator=ev)
    d, p = res["models"]["dense"], res["models"]["pruned"]
    assert len(d["samples_ms"]) == 3 and res["target_name"] == "cpu_tvm_llvm_untuned"
    # Pruned to half the predicted latency: far fewer MACs; untuned TVM scales with them.
    assert p["median_ms"] < d["median_ms"]


@pytest.mark.skipif(
    not (ROOT / "docs/bench_raw_fmnist_resnet18_gpu.json").is_file(), reason="no shipped GPU raw data"
)
def test_report_renders_the_shipped_gpu_runs(tmp_path: Path) -> None:
    for name in ("bench_raw_fmnist_resnet18_gpu.json", "bench_raw_fmnist_mobilenet_v2_gpu.json"):
        shutil.copy(ROOT / "docs" / name, tmp_path / name)
    e2e_report.write(tmp_path, tmp_path / "no_zoo.json")
    bench = json.loads((tmp_path / "benchmarks.json").read_text())
    raw = json.loads((tmp_path / "bench_raw_fmnist_resnet18_gpu.json").read_text())
    g = raw["gpu"]["b256_fp32_bench0"]
    expect = e2e_report._ratio(g["dense"]["round_medians"], g["hwprune"]["round_medians"])
    assert bench["cudnn"]["speedup_vs_dense"] == pytest.approx(expect)
    assert bench["cudnn"]["acc_hwprune"] == raw["results"]["hwprune"]["test_acc"]
    checks = [c for c in raw["layer_check"] if c["method"].startswith("hwprune")]
    assert bench["cudnn"]["layers_decided"] >= len(checks)
    assert bench["torch_cpu"]["speedup_vs_dense"] is None  # no CPU raw in this folder: not measured
    md = (tmp_path / "BENCHMARKS.md").read_text()
    assert "## Against the goals" in md and "hwprune / uninstructed" in md
    assert (tmp_path / "bench_cudnn_resnet18_pareto.png").stat().st_size > 1000

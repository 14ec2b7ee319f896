"""benchmarks.model_true_report: every figure from the raw files (baselines: test_common.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks import model_true, model_true_report

ROOT = Path(__file__).resolve().parents[2]


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    for f in (ROOT / "docs").glob("bench_raw_model_true_*.json"):
        shutil.copy(f, tmp_path)
    (tmp_path / "BENCHMARKS.md").write_text("# Benchmarks\n\nintro\n\n## rest\n")
    return tmp_path


def test_report_figures_come_from_the_raw_files(docs: Path) -> None:
    raw_before = {f.name: f.read_bytes() for f in docs.glob("bench_raw_*.json")}
    assert model_true_report.main(["--docs", str(docs)]) == 0
    page = (docs / "MODEL_TRUE.md").read_text()
    raw = json.loads((docs / "bench_raw_model_true_cpu.json").read_text())
    s = raw["settings"]["resnet18:1:224"]
    g = model_true_report.setting_goals(s, "0.5")
    run0 = g["runs"][0]
    assert run0["speedup"] == pytest.approx(s["timings"]["hwprune_0.5_run0"]["speedup"])
    assert f"| {run0['speedup']:.2f}x [{run0['lo']:.2f}, {run0['hi']:.2f}] |" in page
    assert f"{run0['speedup'] / g['baselines']['uniform_l1']['speedup']:.2f}x vs uniform L1" in page
    bench = (docs / "BENCHMARKS.md").read_text()
    assert bench.index("model_true:start") < bench.index("## rest")  # spliced after the intro
    model_true_report.main(["--docs", str(docs)])
    assert (docs / "BENCHMARKS.md").read_text().count("model_true:start") == 1  # idempotent
    assert (docs / "model_true_speedups.png").stat().st_size > 10_000
    assert {
        f.name: f.read_bytes() for f in docs.glob("bench_raw_*.json")
    } == raw_before  # raw files untouched


def test_goals_table_shows_every_run_with_its_cut(docs: Path) -> None:
    """Issue 19, item 1: a run 0 that made no cut no longer hides run 1's cut and speedup."""
    model_true_report.main(["--docs", str(docs)])
    goals = (docs / "model_true_goals.md").read_text()
    rows = [
        line
        for line in goals.splitlines()
        if line.startswith("| cuda_cudnn_tf32") or line.startswith("| cpu")
    ]
    results, _ = model_true_report.load_results(docs)
    n_runs = sum(len(s["runs"]) * len(model_true_report.ratios(s)) for _, s in results)
    assert len(rows) == n_runs == 24  # 6 settings x 2 budgets x 2 runs
    # ResNet-50 at 70%: run 0 refused every candidate, run 1 cut to 13.65M parameters and measured 1.29x.
    r50 = [line for line in rows if "resnet50:32:224, 0.7" in line]
    assert "| 0 | no cut (refused" in r50[0]
    assert "| 1 | 13.65M of 25.56M params, 14 of 37 groups | 1.29x [1.29, 1.29] |" in r50[1]
    assert "29% (**not met**): some runs cut, some did not" in r50[1]  # stability counts the "no cut" run
    # ResNet-18 batch 1 at 50%: run 1 cut to 3.65M and measured 1.12x; run 0's +70% whole-model error shows.
    r18b1 = [line for line in rows if "resnet18:1:224, 0.5" in line and "cuda" in line]
    assert "+70% / +72% (**not met**)" in r18b1[0]
    assert "| 1 | 3.65M of 11.69M params, 10 of 12 groups | 1.12x [1.06, 1.12] |" in r18b1[1]
    # ResNet-18 batch 32 at 50%: one group changed (conv1), and its 1.16x lies in noise; the uniform L1
    # baseline it beats 1.81x is shown with its parameter count (0.4% pruned).
    r18 = [line for line in rows if "resnet18:32:224, 0.5" in line][0]
    assert "11.56M of 11.69M params, 1 of 12 groups | 1.16x [0.89, 1.17] **noise** | **no**" in r18
    assert "1.81x vs uniform L1 at 11.59M params" in r18


def test_noise_and_stability_rules() -> None:
    assert model_true_report.is_noise(0.9, 1.1) and not model_true_report.is_noise(1.01, 1.2)
    rows = [{"speedup": 1.0}, {"speedup": 1.29}]
    assert model_true_report.stability(rows) == pytest.approx(0.29)
    assert model_true_report.stability(rows[:1]) is None
    assert model_true_report.closed_loop_verdict("measured 1 ms against a budget of 2 ms: met") == "met"
    assert model_true_report.closed_loop_verdict("measured 2 ms ...: NOT met (best kept)") == "NOT met"
    assert model_true_report.closed_loop_verdict("refused: every candidate ...") == "refused"


def test_readme_states_every_model_true_run() -> None:
    results, _ = model_true_report.load_results(ROOT / "docs")
    sentence = model_true_report.readme_sentence(results)
    assert "resnet50:32:224 at 0.7: no cut (budget missed), 1.29x [1.29, 1.29]" in sentence
    assert _flat(sentence) in _flat((ROOT / "README.md").read_text(encoding="utf-8"))


def test_committed_goals_table_is_the_renderers_output(docs: Path) -> None:
    """docs/model_true_goals.md is regenerated from the raw files, not edited by hand."""
    model_true_report.main(["--docs", str(docs)])
    assert (docs / "model_true_goals.md").read_text() == (ROOT / "docs" / "model_true_goals.md").read_text()


def test_min_ratio_flag_reaches_the_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Issue 19, item 6: ``--min-ratio`` crashed main() with an AttributeError before any work."""
    seen: dict[str, object] = {}

    def fake(spec: str, cfg: dict[str, object], out: Path) -> dict[str, object]:
        seen.update(cfg)
        return {"setting": spec, "timings": {"dense": {"median_ms": 1.0, "speedup": 1.0}}}

    monkeypatch.setattr(model_true, "run_setting", fake)
    # main() configures logging for a command-line run (a root handler at INFO); in-process that would
    # outlive this test and change what later tests' log captures see.
    monkeypatch.setattr(model_true.logging, "basicConfig", lambda **kw: None)
    argv = [
        "--setting",
        "small_resnet:1:28",
        "--out",
        str(tmp_path),
        "--target",
        "cpu_torch",
        "--min-ratio",
        "0.3",
    ]
    assert model_true.main(argv) == 0
    assert seen["min_channel_ratio"] == 0.3


def test_renderer_follows_the_raw_file_of_a_deploy_runtime(tmp_path: Path) -> None:
    """The lead's runtime runs (config model_true_runtime) add baselines, references, build_s, a stopwatch."""
    raw = json.loads((ROOT / "docs" / "bench_raw_model_true_cpu.json").read_text())
    s = raw["settings"]["resnet18:1:224"]
    t = s["timings"]
    fast = [0.3 * m for m in t["dense"]["rounds_ms"]]  # a 3.3x baseline the four old names do not have
    t["round_to_64_0.5"] = {
        **t["round_to_32_0.5"],
        "rounds_ms": fast,
        "speedup": 3.33,
        "build_s": 7.5,
        "params": 4_600_000,
    }
    s["baselines"]["round_to_64_0.5"] = {"pruning_ratio": 0.3, "params": 4_600_000}
    t["uniform_12pct"] = {**t["uniform_l1_0.7"], "build_s": 6.0}
    s["baselines"]["uniform_12pct"] = {"pruning_ratio": 0.12, "params": 9_000_000, "reference": True}
    s["layer_checks"] = {}
    s["stopwatch"] = {"dense": {"median_ms": 2.0, "iqr_ms": 0.01, "samples_ms": [2.0], "build_s": 1.0}}
    raw["settings"] = {"resnet18:1:224": s}
    (tmp_path / "bench_raw_model_true_cpu_graph.json").write_text(json.dumps(raw))
    assert model_true_report.main(["--docs", str(tmp_path)]) == 0
    assert model_true_report.baseline_names(s)[-1] == "round_to_64"
    goals = (tmp_path / "model_true_goals.md").read_text()
    run0 = [line for line in goals.splitlines() if "resnet18:1:224, 0.5 | 0 |" in line][0]
    assert "vs round_to_64 at 4.60M params" in run0 and run0.endswith("| not timed |")
    page = (tmp_path / "MODEL_TRUE.md").read_text()
    assert "prepare s (capture, compile)" in page and "| 7.5 |" in page
    assert "uniform_12pct: pruning ratio 0.12" in page and "Standalone stopwatch" in page

"""The README states figures that its shipped data bears out (issue 12, items 10 and 16)."""

from __future__ import annotations

from pathlib import Path

from benchmarks import e2e_report, predictor, readme_figures, reliability

ROOT = Path(__file__).resolve().parents[2]


def _flat(text: str) -> str:
    return " ".join(text.split())


README = _flat((ROOT / "README.md").read_text(encoding="utf-8"))


def test_opening_figure_is_computed_from_a_shipped_table() -> None:
    s = readme_figures.slowdowns(readme_figures.OPENING_TABLE, "layer2.0.conv2", 1, 32, 112, 128)
    assert (s.counts, s.slower, round(s.worst, 2), s.worst_count) == (81, 11, 5.57, 56)
    assert s.device == "NVIDIA H100 80GB HBM3" and s.cudnn == "9.19"
    assert _flat(readme_figures.opening_sentence()) in README


def test_main_job_figure_points_to_committed_artifacts() -> None:
    folder = readme_figures.MAIN_JOB
    for name in ("metrics.json", "pruning_report.json", "run.json", "config.yaml"):
        assert (folder / name).is_file(), f"docs/main_job/{name} is not committed"
    assert _flat(readme_figures.main_job_sentence()) in README
    assert "docs/main_job/" in README


def test_benchmark_prose_is_computed_from_the_raw_json() -> None:
    """Issue 12, item 11: no hand-written figure in the report's sentences."""
    import json

    docs = ROOT / "docs"
    raw = json.loads((docs / "bench_raw_cudnn.json").read_text())
    tf32 = json.loads((docs / "bench_raw_cudnn_tf32.json").read_text())
    bench = _flat((docs / "BENCHMARKS.md").read_text())
    sentence = e2e_report.fp16_b32_sentence(raw)
    assert "up to 1.21x slower than dense" in sentence and _flat(sentence) in bench
    a, b = e2e_report.tf32_reference(tf32)
    assert (round(a, 2), round(b, 3)) == (1.50, 1.386)
    assert f"reproduce as {a:.2f}x/{b:.3f}x" in bench
    addendum = "\n".join(e2e_report.tf32_addendum(tf32)) + "\n"
    assert (docs / "bench_addendum_tf32.md").read_text() == addendum
    assert _flat(addendum) in bench
    assert "~15%" not in bench and "reproduce exactly" not in bench
    assert "1.50x slower than dense** (1.386x with `round_to=8`)" in README and "up to 1.21x slower" in README


def test_slow_decision_explanation_is_regenerated_from_the_data() -> None:
    """Issue 12, item 12: the explanation holds for each of the 7, or names the ones it does not fit."""
    slow = readme_figures.slow_decisions()
    assert len(slow) == 7
    by_layer = {d.layer: d for d in slow}
    assert by_layer["layer2.0.downsample.0"].pruned_in_out[0] == 32  # even, not odd
    dw = by_layer["features.14.conv.1.0"]
    assert dw.depthwise and dw.measured
    assert _flat(readme_figures.slow_decisions_sentence()) in README
    assert "every slow one has its *in*-channels cut to an odd count" not in README


def test_reliability_table_count_comes_from_the_files() -> None:
    """Issue 12, item 13: no stale count of the shipped tables."""
    sentence = reliability.shipped_tables_sentence()
    n_tables = len(list(ROOT.glob("tables/**/*.csv")))
    assert sentence.startswith(f"All {n_tables} committed tables (")
    assert _flat(sentence) in _flat((ROOT / "docs" / "RELIABILITY.md").read_text(encoding="utf-8"))


def test_predictor_doc_counts_come_from_the_files() -> None:
    sentence = predictor.table_counts()
    n_tables = len(list(ROOT.glob("tables/**/*.csv")))
    assert sentence.startswith(f"The project ships {n_tables} tables with ")
    assert _flat(sentence) in _flat((ROOT / "docs" / "PREDICTOR.md").read_text(encoding="utf-8"))


def test_adaptation_leads_with_adapted_against_scratch_at_equal_n() -> None:
    """Issue 19, item 4: the README and the section head state adapted vs scratch at equal N, every pair."""
    import json

    from benchmarks import adapt

    raw = json.loads((ROOT / "docs" / "bench_raw_adapt.json").read_text())
    assert "H200 fp32 -> TF32" in {p["name"] for p in raw["pairs"]}  # the pair the issue asked for
    assert _flat(adapt.readme_sentence(raw)) in README
    doc = (ROOT / "docs" / "PREDICTOR.md").read_text(encoding="utf-8")
    section = doc[doc.index("## Adapting to a new target") :]
    summary = adapt.equal_n_summary(adapt.doc_pairs(raw), raw["results"])
    assert section.index(summary) < section.index("A full sweep of a model's layer space")  # at the head
    assert "checked at tiny scale only" not in doc  # the stale line about the CPU pair

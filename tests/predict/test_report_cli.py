"""`hwprune fit` / `hwprune report` on a real table, and the report's staircase logic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hwprune.cli import main
from hwprune.measure import read_table
from hwprune.predict import LatencyPredictor
from hwprune.predict.report import evaluate, format_report
from hwprune.predict.stairs import stair_series
from hwprune.staircase import friendly_mask


def test_friendly_mask_marks_right_stair_edges() -> None:
    lat = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 1.5, 3.0])
    # count 2 (index 2) is the right edge of the first stair; indices 3-4 are slower than index 5
    assert friendly_mask(lat).tolist() == [False, False, True, False, False, True, True]
    assert friendly_mask(np.array([])).tolist() == []


def test_stair_series_groups_sweeps(tiny_table: Path) -> None:
    df = read_table(tiny_table)
    series = stair_series(df)
    assert series and all(s.swept == "out_channels" for s in series)
    for s in series:
        assert list(s.counts) == sorted(s.counts)
        assert df.loc[list(s.index), "in_channels"].nunique() == 1


def test_evaluate_scores_families_and_fidelity(fitted: LatencyPredictor, tiny_table: Path) -> None:
    rep, rows = evaluate(fitted, tiny_table)
    assert rep.n_rows == len(rows) == len(read_table(tiny_table))
    assert {f.family for f in rep.families} == {"conv1x1", "conv3x3"}
    assert sum(f.n for f in rep.families) == rep.n_rows
    assert 0.0 <= rep.within5 <= rep.within10 <= 1.0
    assert 0.0 <= rep.staircase_fidelity <= 1.0 and rep.n_predicted_friendly > 0
    assert "staircase fidelity" in format_report(rep)


def test_evaluate_refuses_other_target(fitted: LatencyPredictor, tiny_table: Path) -> None:
    df = read_table(tiny_table).assign(target="jetson")
    with pytest.raises(ValueError, match="must hold rows of the predictor's target 'cpu_torch'"):
        evaluate(fitted, df)


def test_cli_fit_then_report(tiny_table: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred_path = tmp_path / "p.skops"
    rc = main(
        [
            "fit",
            str(tiny_table),
            "--out",
            str(pred_path),
            "--estimator",
            "extra_trees",
            "--transform",
            "log",
            "--cv-folds",
            "2",
        ]
    )
    assert rc == 0 and pred_path.is_file()
    assert "target cpu_torch" in capsys.readouterr().out
    plots = tmp_path / "plots"
    rc = main(["report", str(pred_path), str(tiny_table), "--json", "--plot-dir", str(plots)])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["target"] == "cpu_torch" and rep["n_rows"] == len(pd.read_csv(tiny_table))
    assert {"mape", "within5", "within10", "families", "staircase_fidelity"} <= set(rep)
    assert (plots / "predicted_vs_measured.png").stat().st_size > 1000
    assert (plots / "staircase.png").stat().st_size > 1000


def test_cli_report_refuses_pickle(
    tmp_path: Path, tiny_table: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.skops"
    bad.write_bytes(b"\x80\x04K\x01.")
    assert main(["report", str(bad), str(tiny_table)]) == 2
    assert "not a skops zip archive" in capsys.readouterr().err


def test_report_on_the_training_table_is_labelled_in_sample(
    fitted: LatencyPredictor, tiny_table: Path, saved: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 12, item 8: in-sample scores say so, and the CV held-out scores stand beside them."""
    rep, _ = evaluate(fitted, tiny_table)
    assert rep.in_sample is True and rep.held_out == fitted.validation_
    assert main(["report", str(saved), str(tiny_table)]) == 0
    text = capsys.readouterr().out
    assert "in-sample (the predictor was fitted on this table: these scores say little)" in text
    held = fitted.validation_
    assert "cross-validated held-out (from fit):" in text
    assert f"within ±10% {100 * held['count_within10']:.1f}%" in text
    assert f"within ±10% {100 * held['layer_within10']:.1f}%" in text
    other, _ = evaluate(fitted, read_table(tiny_table).iloc[:10])
    assert other.in_sample is False
    assert "not the predictor's training table" in format_report(other)


def test_report_knows_its_training_table_by_digest_not_row_count(
    fitted: LatencyPredictor, tiny_table: Path, saved: Path
) -> None:
    """Issue 18, item 6: a table of the same size, measured again, is not called in-sample."""
    from hwprune.predict import LatencyPredictor as Loaded

    again = read_table(tiny_table)
    again["latency_ms"] = again["latency_ms"] * 1.01  # another measurement of the same configs
    assert len(again) == fitted.n_train_rows_
    rep, _ = evaluate(fitted, again)
    assert rep.in_sample is False and "its digest differs" in format_report(rep)
    loaded = Loaded.load(saved)  # the digest travels in the file
    assert loaded.train_digest_ == fitted.train_digest_ != ""
    assert evaluate(loaded, tiny_table)[0].in_sample is True
    loaded.train_digest_ = ""  # a file written before digests: unknown, and the label says so
    rep, _ = evaluate(loaded, tiny_table)
    assert rep.in_sample is None and "records no digest" in format_report(rep)


def test_held_out_by_count_never_trains_on_a_copy_of_a_scored_row(tiny_table: Path) -> None:
    """Issue 12, item 13: configs repeated across combined tables stay on one side of every split."""
    from hwprune.predict.report import held_out_predictions

    df = read_table(tiny_table)
    doubled = pd.concat([df, df], ignore_index=True)  # every config twice, as in combined tables
    fixed = LatencyPredictor(estimator="extra_trees", target_transform="log", n_estimators=20)
    rows = held_out_predictions(fixed, doubled, by="count", folds=3)
    exact = np.isclose(rows["predicted_ms"], rows["latency_ms"], rtol=1e-9, atol=0)
    assert not exact.any()  # with a copy in training, extra trees would return its latency exactly


def test_held_out_chooses_the_model_without_the_scored_rows(tiny_table: Path) -> None:
    """A fitted 'auto' predictor's choice (made on every row) is not reused: each fold chooses anew."""
    from hwprune.predict.report import held_out_predictions

    auto = LatencyPredictor(cv_folds=2, n_estimators=10)
    fitted = LatencyPredictor(cv_folds=2, n_estimators=10).fit(tiny_table)
    a = held_out_predictions(auto, tiny_table, by="count", folds=2)
    b = held_out_predictions(fitted, tiny_table, by="count", folds=2)
    np.testing.assert_array_equal(a["predicted_ms"].to_numpy(), b["predicted_ms"].to_numpy())

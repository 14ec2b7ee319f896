"""Adaptive profiling on a tiny real space (torch on this CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwprune.measure import CONFIG_COLUMNS, EvaluatorConfig, model_space, read_table
from hwprune.predict.adapt import AdaptiveResult, adaptive_measure

FAST = EvaluatorConfig(warmup=1, repeat=3, min_repeat_ms=2.0)


@pytest.fixture(scope="module")
def space() -> list[dict]:
    return model_space("small_resnet", (1, 1, 28, 28), layers=["layers.2.shortcut"])


def test_stops_at_goal_and_measures_less_than_dense(space: list[dict], tmp_path: Path) -> None:
    out = tmp_path / "ad.csv"
    res = adaptive_measure(
        "cpu_torch", space, out, goal_within10=0.01, coarse_step=8, batch_size=8, min_probes=2, evaluator=FAST
    )
    assert isinstance(res, AdaptiveResult)
    assert res.stop_reason == "goal"
    assert res.n_space == len(space)
    assert 0 < res.n_measured < res.n_space
    table = read_table(out)
    assert len(table) == res.n_measured and set(table["target"]) == {"cpu_torch"}
    assert [r.n_measured for r in res.rounds] == sorted(r.n_measured for r in res.rounds)
    assert res.rounds[0].n_measured >= 2  # coarse grid: both ends of the sweep at least


def test_resume_counts_existing_rows(space: list[dict], tmp_path: Path) -> None:
    out = tmp_path / "ad.csv"
    first = adaptive_measure(
        "cpu_torch", space, out, goal_within10=0.01, min_probes=2, batch_size=4, evaluator=FAST
    )
    again = adaptive_measure(
        "cpu_torch", space, out, goal_within10=0.01, min_probes=2, batch_size=4, evaluator=FAST
    )
    assert again.rounds[0].n_measured >= first.n_measured
    assert len(read_table(out)) == again.n_measured


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"goal_within10": 1.5}, "`goal_within10` must be in"),
        ({"time_budget_s": 0}, "`time_budget_s` must be > 0"),
        ({"coarse_step": 0}, "`coarse_step` must be an int >= 1"),
        ({"batch_size": 1}, "`batch_size` must be an int >= 2"),
        ({"probe_fraction": 1.0}, "`probe_fraction` must be in"),
    ],
)
def test_validates_arguments(kwargs: dict, match: str, space: list[dict], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=match):
        adaptive_measure("cpu_torch", space, tmp_path / "x.csv", **kwargs)
    assert not (tmp_path / "x.csv").exists()


def test_replay_on_a_real_table_respects_budget_and_reveals_table_rows(tiny_table: Path) -> None:
    from hwprune.predict.adapt import replay_adaptive

    df = read_table(tiny_table)
    res, picked = replay_adaptive(df, max_measurements=20, batch_size=6, min_probes=2)
    assert res.stop_reason in {"time_budget", "goal"}
    assert res.n_space == len(df.drop_duplicates(subset=list(CONFIG_COLUMNS)))
    assert len(picked) == res.n_measured <= 20
    merged = picked.merge(df, on=list(CONFIG_COLUMNS), suffixes=("", "_table"))
    assert len(merged) == len(picked)
    assert (merged["latency_ms"] == merged["latency_ms_table"]).all()

"""Adaptive profiling: measure a coarse grid, fit, then measure where the predictor is least sure.

``hwprune measure --adaptive`` calls :func:`adaptive_measure`. It times every ``coarse_step``-th channel
count of each sweep (plus both ends) with :func:`hwprune.measure.measure`, then runs the rounds of
:func:`~hwprune.predict.adapt.rounds.run_rounds`: fit an extra-trees predictor, score every unmeasured
config by the disagreement of the ensemble's trees plus a bonus next to a predicted stair edge, and
measure the ``batch_size`` highest-scoring ones together with a few random ones (*probes*).

The probes give the held-out accuracy: the share of probes within ±10% estimates the accuracy on the
configs that remain unmeasured. The loop stops when that share (over the last ``min_probes`` probes or
more) reaches ``goal_within10``, when ``time_budget_s`` is spent, or when the whole space has been
measured. Every row goes through the regular append-only table, so an interrupted run resumes like any
sweep. :func:`replay_adaptive` runs the same rounds on a table measured densely.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from hwprune.contract import CONFIG_COLUMNS
from hwprune.measure.sweep import measure, normalize_space
from hwprune.measure.table import read_table
from hwprune.measure.targets import load_target
from hwprune.predict.adapt.rounds import AdaptiveResult, RoundSettings, config_key, run_rounds, table_keys

__all__ = ["adaptive_measure", "replay_adaptive"]


class _HarnessMeasurer:
    """Measures configs of a space on a target with the harness, into an append-only table."""

    def __init__(
        self,
        target: Any,
        configs: list[dict[str, Any]],
        out_path: Path,
        *,
        evaluator: Any,
        progress: bool,
        time_budget_s: float | None,
        t0: float,
    ) -> None:
        self.target, self.configs, self.out_path = target, configs, out_path
        self.evaluator, self.progress = evaluator, progress
        self.time_budget_s, self.t0 = time_budget_s, t0
        self.keys = {config_key(c) for c in configs}

    def remaining_s(self) -> float | None:
        """Seconds left of the budget (None: no budget)."""
        return None if self.time_budget_s is None else self.time_budget_s - (time.perf_counter() - self.t0)

    def run(self, positions: Iterable[int]) -> None:
        """Time the configs at ``positions`` (the harness stops when the budget is spent)."""
        todo = [self.configs[i] for i in sorted(positions)]
        rem = self.remaining_s()
        if todo and (rem is None or rem > 0):
            measure(
                self.target,
                todo,
                self.out_path,
                evaluator=self.evaluator,
                progress=self.progress,
                time_budget_s=rem,
            )

    def measured(self) -> pd.DataFrame:
        """The table's rows of this target and dtype that are configs of the space, the last of each."""
        if not self.out_path.is_file():
            return pd.DataFrame(columns=[*CONFIG_COLUMNS, "latency_ms"])
        df = read_table(self.out_path, allow_mixed_targets=True)
        df = df[(df["target"] == self.target.name) & (df["dtype"] == self.target.dtype)]
        in_space = [k in self.keys for k in table_keys(df)]
        return df[in_space].drop_duplicates(subset=list(CONFIG_COLUMNS), keep="last").reset_index(drop=True)

    def out_of_budget(self) -> bool:
        """Whether the time budget is spent."""
        rem = self.remaining_s()
        return rem is not None and rem <= 0


class _ReplayMeasurer:
    """Stands in for the harness on a densely measured table: measuring a config reveals its row."""

    def __init__(self, dense: pd.DataFrame, max_measurements: int | None) -> None:
        self.dense, self.max_measurements = dense, max_measurements
        self.revealed: set[int] = set()

    def run(self, positions: Iterable[int]) -> None:
        """Reveal the rows at ``positions`` while the budget lasts."""
        for p in positions:
            if self.max_measurements is None or len(self.revealed) < self.max_measurements:
                self.revealed.add(int(p))

    def measured(self) -> pd.DataFrame:
        """The revealed rows."""
        return self.dense.iloc[sorted(self.revealed)].reset_index(drop=True)

    def out_of_budget(self) -> bool:
        """Whether ``max_measurements`` rows are revealed."""
        return self.max_measurements is not None and len(self.revealed) >= self.max_measurements


def adaptive_measure(
    target: Any,
    space: Iterable[Mapping[str, Any]],
    out_path: str | os.PathLike[str],
    *,
    goal_within10: float = 0.99,
    time_budget_s: float | None = None,
    coarse_step: int = 8,
    batch_size: int = 24,
    probe_fraction: float = 0.25,
    min_probes: int = 24,
    evaluator: Any = None,
    progress: bool = False,
    random_state: int = 0,
) -> AdaptiveResult:
    """Measure a layer space adaptively until a held-out accuracy goal or a time budget.

    Args:
        target: A :class:`hwprune.measure.Target`, a catalogue name (``cpu_torch``) or a YAML path.
        space: Config dicts keyed by the table's config columns (plus an optional ``layer``), e.g. from
            :func:`hwprune.measure.model_space`.
        out_path: The measurement table (appended to; rows already there count as measured).
        goal_within10: Stop once this share of held-out probes is predicted within ±10%, in (0, 1].
        time_budget_s: Stop starting new measurements after this many seconds (None: no budget).
        coarse_step: Channel step of the first, coarse grid (>= 1).
        batch_size: Configs measured per round (>= 2).
        probe_fraction: Share of each round picked at random as held-out probes, in (0, 1).
        min_probes: Probes the accuracy estimate needs before it may stop the loop (>= 1).
        evaluator: A :class:`hwprune.measure.EvaluatorConfig` (default: the harness's).
        progress: Show the harness's progress bars.
        random_state: Seed for the probes and the predictor.

    Returns:
        An :class:`~hwprune.predict.adapt.rounds.AdaptiveResult`.

    Raises:
        ValueError: If an argument is out of range or ``space`` is empty or malformed.
        RuntimeError: If the backend cannot start.

    Example:
        >>> from hwprune.measure import model_space
        >>> res = adaptive_measure("cpu_torch", model_space("small_resnet", (1, 1, 28, 28)),
        ...                        "t.csv", goal_within10=0.9, time_budget_s=120)  # doctest: +SKIP
        >>> res.n_measured < res.n_space  # doctest: +SKIP
        True
    """
    settings = RoundSettings(goal_within10, coarse_step, batch_size, probe_fraction, min_probes, random_state)
    if time_budget_s is not None and time_budget_s <= 0:
        raise ValueError(f"`time_budget_s` must be > 0 seconds or None, got {time_budget_s}")
    t0 = time.perf_counter()
    tgt = load_target(target)
    configs = normalize_space(space, tgt.batch)
    if not configs:
        raise ValueError("`space` must hold at least one configuration, got none")
    out = Path(out_path)
    measurer = _HarnessMeasurer(
        tgt, configs, out, evaluator=evaluator, progress=progress, time_budget_s=time_budget_s, t0=t0
    )
    return run_rounds(configs, measurer, settings, out_path=out, t0=t0)


def replay_adaptive(
    table: pd.DataFrame,
    *,
    goal_within10: float = 0.99,
    max_measurements: int | None = None,
    coarse_step: int = 8,
    batch_size: int = 24,
    probe_fraction: float = 0.25,
    min_probes: int = 24,
    random_state: int = 0,
) -> tuple[AdaptiveResult, pd.DataFrame]:
    """Replay adaptive profiling on a table measured densely: "measuring" a config reveals its row.

    This isolates the sampling strategy from the machine's measurement noise, and lets the accuracy be
    checked on every config that was not picked.

    Args:
        table: A measurement table (one target); duplicate configs are averaged.
        goal_within10: As :func:`adaptive_measure`.
        max_measurements: Stop once this many configs are revealed (the replay's time budget).
        coarse_step: As :func:`adaptive_measure`.
        batch_size: As :func:`adaptive_measure`.
        probe_fraction: As :func:`adaptive_measure`.
        min_probes: As :func:`adaptive_measure`.
        random_state: As :func:`adaptive_measure`.

    Returns:
        The result (``wall_s`` is compute time only) and the revealed rows.

    Raises:
        ValueError: If the table lacks config columns or ``latency_ms``, or a setting is out of range.

    Example:
        >>> res, rows = replay_adaptive(read_table("tables/cuda_cudnn_fp32/resnet18_224.csv"),
        ...                             max_measurements=400)  # doctest: +SKIP
    """
    settings = RoundSettings(goal_within10, coarse_step, batch_size, probe_fraction, min_probes, random_state)
    missing = [c for c in (*CONFIG_COLUMNS, "latency_ms") if c not in table.columns]
    if missing:
        raise ValueError(
            f"`table` must have the columns {[*CONFIG_COLUMNS, 'latency_ms']}, missing {missing}"
        )
    extra = [c for c in ("target", "backend", "device", "dtype", "layer") if c in table.columns]
    dense = table.groupby(list(CONFIG_COLUMNS), as_index=False, sort=False).agg(
        {"latency_ms": "mean", **{c: "first" for c in extra}}
    )
    configs = dense[[*CONFIG_COLUMNS, *(["layer"] if "layer" in dense.columns else [])]].to_dict("records")
    measurer = _ReplayMeasurer(dense, max_measurements)
    res = run_rounds(configs, measurer, settings, out_path=Path("<replay>"), t0=time.perf_counter())
    return res, measurer.measured()

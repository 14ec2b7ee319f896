"""Adaptive profiling: measure a coarse grid, fit, then measure where the predictor is least sure.

``hwprune measure --adaptive`` calls :func:`adaptive_measure`. It times every ``coarse_step``-th channel
count of each sweep (plus both ends) with :func:`hwprune.measure.measure`, fits an extra-trees predictor,
and then repeats: score every unmeasured config by the disagreement of the ensemble's trees (std of log
latency) plus a bonus next to a predicted stair edge (where neighbouring counts' predictions jump), and
measure the ``batch_size`` highest-scoring ones, together with a few random ones (*probes*).

The probes give the held-out accuracy: before a probe is measured the current predictor predicts it, so the
share of probes within ±10% estimates the accuracy on the configs that remain unmeasured. The loop stops
when that share (over the last ``min_probes`` probes or more) reaches ``goal_within10``, when
``time_budget_s`` is spent, or when the whole space has been measured. Every row goes through the regular
append-only table, so an interrupted run resumes like any sweep.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hwprune.contract import CONFIG_COLUMNS
from hwprune.measure.sweep import measure, normalize_space
from hwprune.measure.table import read_table
from hwprune.measure.targets import load_target

# Adaptive sampling is a way of measuring that asks a predictor where to measure next: the one module of
# the measuring stage that uses the predicting stage (which itself needs only hwprune.contract and the table).
from hwprune.predict.predictor import LatencyPredictor, within_share
from hwprune.predict.report import stair_series

log = logging.getLogger(__name__)

__all__ = ["AdaptiveResult", "AdaptiveRound", "adaptive_measure", "replay_adaptive"]


@dataclass(frozen=True)
class AdaptiveRound:
    """One round of adaptive profiling.

    Attributes:
        round: 0 for the coarse grid, then 1, 2, ...
        n_measured: Configs of the space in the table after this round.
        probe_within10: Held-out share of the probes within ±10% (NaN in round 0).
        wall_s: Seconds since the start.
    """

    round: int
    n_measured: int
    probe_within10: float
    wall_s: float


@dataclass(frozen=True)
class AdaptiveResult:
    """What :func:`adaptive_measure` did.

    Attributes:
        table: The measurement table.
        n_space: Configs in the dense space.
        n_measured: Configs of the space measured (including rows already in the table).
        held_out_within10: Last held-out estimate (share of recent probes within ±10%).
        stop_reason: ``goal``, ``time_budget`` or ``exhausted``.
        wall_s: Total wall time in seconds.
        rounds: One :class:`AdaptiveRound` per round.
    """

    table: Path
    n_space: int
    n_measured: int
    held_out_within10: float
    stop_reason: str
    wall_s: float
    rounds: tuple[AdaptiveRound, ...]

    @property
    def fraction_measured(self) -> float:
        """Share of the dense space that was measured."""
        return self.n_measured / self.n_space if self.n_space else float("nan")


def _key(cfg: Mapping[str, Any]) -> tuple[int, ...]:
    return tuple(int(cfg[c]) for c in CONFIG_COLUMNS)


def _coarse(frame: pd.DataFrame, step: int) -> set[int]:
    """Positions of the coarse grid: every ``step``-th count of each sweep, both ends, and lone configs."""
    chosen: set[int] = set()
    in_series: set[int] = set()
    for s in stair_series(frame, min_points=2):
        if s.swept == "in_channels" and any(i in in_series for i in s.index):
            continue
        idx = list(s.index)
        in_series.update(idx)
        hi = len(idx) - 1
        chosen.update(idx[j] for j in range(hi, -1, -step))
        chosen.update((idx[0], idx[hi]))
    chosen.update(set(range(len(frame))) - in_series)
    return chosen


def _edge_bonus(frame: pd.DataFrame, log_pred: np.ndarray, jump: float = 0.05) -> np.ndarray:
    """1.0 for configs next to a predicted stair edge (a jump of more than ``jump`` in log latency)."""
    bonus = np.zeros(len(frame))
    for s in stair_series(frame, min_points=3):
        idx = np.asarray(s.index)
        d = np.abs(np.diff(log_pred[idx])) > jump
        bonus[idx[:-1][d]] = 1.0
        bonus[idx[1:][d]] = 1.0
    return bonus


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
        An :class:`AdaptiveResult`.

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
    if not 0 < goal_within10 <= 1:
        raise ValueError(f"`goal_within10` must be in (0, 1], got {goal_within10}")
    if time_budget_s is not None and time_budget_s <= 0:
        raise ValueError(f"`time_budget_s` must be > 0 seconds or None, got {time_budget_s}")
    if isinstance(coarse_step, bool) or not isinstance(coarse_step, int) or coarse_step < 1:
        raise ValueError(f"`coarse_step` must be an int >= 1, got {coarse_step!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
        raise ValueError(f"`batch_size` must be an int >= 2, got {batch_size!r}")
    if not 0 < probe_fraction < 1:
        raise ValueError(f"`probe_fraction` must be in (0, 1), got {probe_fraction}")
    if isinstance(min_probes, bool) or not isinstance(min_probes, int) or min_probes < 1:
        raise ValueError(f"`min_probes` must be an int >= 1, got {min_probes!r}")

    t0 = time.perf_counter()
    tgt = load_target(target)
    configs = normalize_space(space, tgt.batch)
    if not configs:
        raise ValueError("`space` must hold at least one configuration, got none")
    keys = [_key(c) for c in configs]
    pos_of = {k: i for i, k in enumerate(keys)}
    out_path = Path(out_path)

    def remaining_s() -> float | None:
        return None if time_budget_s is None else time_budget_s - (time.perf_counter() - t0)

    def run(positions: Iterable[int]) -> None:
        todo = [configs[i] for i in sorted(positions)]
        rem = remaining_s()
        if todo and (rem is None or rem > 0):
            measure(tgt, todo, out_path, evaluator=evaluator, progress=progress, time_budget_s=rem)

    def measured() -> pd.DataFrame:
        if not out_path.is_file():
            return pd.DataFrame(columns=[*CONFIG_COLUMNS, "latency_ms"])
        df = read_table(out_path, allow_mixed_targets=True)
        df = df[(df["target"] == tgt.name) & (df["dtype"] == tgt.dtype)]
        in_space = [tuple(k) in pos_of for k in _measured_keys(df)]
        return df[in_space].drop_duplicates(subset=list(CONFIG_COLUMNS), keep="last").reset_index(drop=True)

    def out_of_budget() -> bool:
        rem = remaining_s()
        return rem is not None and rem <= 0

    return _loop(
        configs,
        run,
        measured,
        out_of_budget,
        out_path=out_path,
        goal_within10=goal_within10,
        coarse_step=coarse_step,
        batch_size=batch_size,
        probe_fraction=probe_fraction,
        min_probes=min_probes,
        random_state=random_state,
        t0=t0,
    )


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
        ValueError: If the table lacks config columns or ``latency_ms``.

    Example:
        >>> res, rows = replay_adaptive(read_table("tables/cuda_cudnn_fp32/resnet18_224.csv"),
        ...                             max_measurements=400)  # doctest: +SKIP
    """
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
    revealed: set[int] = set()

    def run(positions: Iterable[int]) -> None:
        for p in positions:
            if max_measurements is None or len(revealed) < max_measurements:
                revealed.add(int(p))

    def measured() -> pd.DataFrame:
        return dense.iloc[sorted(revealed)].reset_index(drop=True)

    def out_of_budget() -> bool:
        return max_measurements is not None and len(revealed) >= max_measurements

    res = _loop(
        configs,
        run,
        measured,
        out_of_budget,
        out_path=Path("<replay>"),
        goal_within10=goal_within10,
        coarse_step=coarse_step,
        batch_size=batch_size,
        probe_fraction=probe_fraction,
        min_probes=min_probes,
        random_state=random_state,
        t0=time.perf_counter(),
    )
    return res, measured()


def _loop(
    configs: list[dict[str, Any]],
    run: Callable[[Iterable[int]], None],
    measured: Callable[[], pd.DataFrame],
    out_of_budget: Callable[[], bool],
    *,
    out_path: Path,
    goal_within10: float,
    coarse_step: int,
    batch_size: int,
    probe_fraction: float,
    min_probes: int,
    random_state: int,
    t0: float,
) -> AdaptiveResult:
    """The adaptive loop, independent of how a config gets measured."""
    frame = pd.DataFrame(configs)
    keys = [_key(c) for c in configs]
    pos_of = {k: i for i, k in enumerate(keys)}
    rng = np.random.default_rng(random_state)
    window = max(min_probes, 2 * batch_size)

    def done_positions(table: pd.DataFrame) -> set[int]:
        return {pos_of[tuple(k)] for k in _measured_keys(table)}

    run(_coarse(frame, coarse_step) - done_positions(measured()))
    rounds = [AdaptiveRound(0, len(measured()), float("nan"), time.perf_counter() - t0)]
    probe_hits: list[bool] = []
    stop = "exhausted"
    while True:
        table = measured()
        done = done_positions(table)
        left = np.array(sorted(set(range(len(configs))) - done), dtype=int)
        recent = probe_hits[-window:]
        if len(left) == 0:
            stop = "exhausted"
            break
        if len(recent) >= min_probes and np.mean(recent) >= goal_within10:
            stop = "goal"
            break
        if out_of_budget():
            stop = "time_budget"
            break
        pred = LatencyPredictor(
            estimator="extra_trees",
            target_transform="log",
            cv_folds=0,
            n_estimators=48,
            random_state=random_state,
        ).fit(table)
        members = np.log(pred.predict_members(frame))
        log_mean = members.mean(axis=0)
        score = members.std(axis=0)
        score = score + _edge_bonus(frame, log_mean) * float(np.median(score))
        n_probe = max(1, int(round(batch_size * probe_fraction)))
        probes = rng.choice(left, size=min(n_probe, len(left)), replace=False)
        rest = np.setdiff1d(left, probes)
        chosen = rest[np.argsort(-score[rest], kind="stable")[: batch_size - len(probes)]]
        run(np.concatenate([probes, chosen]).tolist())
        table = measured()
        got = dict(zip(map(tuple, _measured_keys(table)), table["latency_ms"].to_numpy(), strict=True))
        for p in probes:
            if keys[p] in got:
                probe_hits.append(bool(within_share(np.exp(log_mean[[p]]), np.array([got[keys[p]]]), 0.10)))
        recent = probe_hits[-window:]
        rounds.append(
            AdaptiveRound(
                len(rounds),
                len(table),
                float(np.mean(recent)) if recent else float("nan"),
                time.perf_counter() - t0,
            )
        )
        log.info(
            "adaptive round %d: %d/%d measured, held-out within ±10%% %.3f",
            rounds[-1].round,
            rounds[-1].n_measured,
            len(configs),
            rounds[-1].probe_within10,
        )
        if len(done_positions(table)) == len(done):  # the budget cut the round before anything was timed
            stop = "time_budget"
            break
    recent = probe_hits[-window:]
    result = AdaptiveResult(
        table=out_path,
        n_space=len(configs),
        n_measured=len(done_positions(measured())),
        held_out_within10=float(np.mean(recent)) if recent else float("nan"),
        stop_reason=stop,
        wall_s=time.perf_counter() - t0,
        rounds=tuple(rounds),
    )
    log.info(
        "adaptive profiling stopped (%s): %d of %d configs measured in %.1f s",
        stop,
        result.n_measured,
        len(configs),
        result.wall_s,
    )
    return result


def _measured_keys(table: pd.DataFrame) -> list[tuple[int, ...]]:
    if table.empty:
        return []
    return [tuple(r) for r in table[list(CONFIG_COLUMNS)].astype(int).to_numpy().tolist()]

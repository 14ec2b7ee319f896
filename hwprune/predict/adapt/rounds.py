"""The rounds of adaptive profiling: fit, score the unmeasured configs, measure the best and some probes.

:func:`run_rounds` is the loop of :func:`~hwprune.predict.adapt.adaptive_measure` and
:func:`~hwprune.predict.adapt.replay_adaptive`, independent of how a config gets measured (a
:class:`Measurer` does that). Each round fits an extra-trees predictor on the rows measured so far and
scores every unmeasured config by the disagreement of its trees (std of log latency) plus a bonus next to
a predicted stair edge (:func:`~hwprune.predict.stairs.stair_edge_bonus`, the same bonus that
:func:`~hwprune.predict.adapt.select_configs` weighs). It measures the ``batch_size`` highest-scoring
configs, a ``probe_fraction`` of them picked at random instead (*probes*): the current predictor predicts
each probe before it is measured, so the share of probes within ±10% estimates the held-out accuracy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from hwprune.contract import CONFIG_COLUMNS
from hwprune.predict.predictor import LatencyPredictor
from hwprune.predict.stairs import stair_edge_bonus, stair_series
from hwprune.predict.tables import within_share

log = logging.getLogger(__name__)

__all__ = [
    "AdaptiveResult",
    "AdaptiveRound",
    "Measurer",
    "RoundSettings",
    "coarse_grid",
    "config_key",
    "run_rounds",
    "table_keys",
]


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
    """What :func:`~hwprune.predict.adapt.adaptive_measure` did.

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


@dataclass(frozen=True)
class RoundSettings:
    """How adaptive profiling samples (the arguments of :func:`~hwprune.predict.adapt.adaptive_measure`).

    Attributes:
        goal_within10: Stop once this share of held-out probes is predicted within ±10%, in (0, 1].
        coarse_step: Channel step of the first, coarse grid (>= 1).
        batch_size: Configs measured per round (>= 2).
        probe_fraction: Share of each round picked at random as held-out probes, in (0, 1).
        min_probes: Probes the accuracy estimate needs before it may stop the loop (>= 1).
        random_state: Seed for the probes and the predictor.

    Raises:
        ValueError: If a setting is out of range.
    """

    goal_within10: float = 0.99
    coarse_step: int = 8
    batch_size: int = 24
    probe_fraction: float = 0.25
    min_probes: int = 24
    random_state: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.goal_within10 <= 1:
            raise ValueError(f"`goal_within10` must be in (0, 1], got {self.goal_within10}")
        for name, low in (("coarse_step", 1), ("batch_size", 2)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"`{name}` must be an int >= {low}, got {v!r}")
        if not 0 < self.probe_fraction < 1:
            raise ValueError(f"`probe_fraction` must be in (0, 1), got {self.probe_fraction}")
        m = self.min_probes
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ValueError(f"`min_probes` must be an int >= 1, got {m!r}")

    @property
    def window(self) -> int:
        """The recent probes the held-out estimate averages over."""
        return max(self.min_probes, 2 * self.batch_size)


class Measurer(Protocol):
    """How :func:`run_rounds` measures: by the harness (a live run) or by revealing table rows (a replay)."""

    def run(self, positions: Iterable[int]) -> None:
        """Measure the configs at these positions of the space (as far as the budget allows)."""

    def measured(self) -> pd.DataFrame:
        """The rows of the space measured so far, one per config."""

    def out_of_budget(self) -> bool:
        """Whether the budget is spent."""


def config_key(cfg: Mapping[str, Any]) -> tuple[int, ...]:
    """A config's values of :data:`~hwprune.contract.CONFIG_COLUMNS`, as ints."""
    return tuple(int(cfg[c]) for c in CONFIG_COLUMNS)


def table_keys(table: pd.DataFrame) -> list[tuple[int, ...]]:
    """:func:`config_key` of every row of ``table``."""
    if table.empty:
        return []
    return [tuple(r) for r in table[list(CONFIG_COLUMNS)].astype(int).to_numpy().tolist()]


def coarse_grid(frame: pd.DataFrame, step: int) -> set[int]:
    """Positions of the coarse grid: every ``step``-th count of each sweep, both ends, and lone configs.

    Args:
        frame: The space, one config per row.
        step: Channel step (>= 1).

    Returns:
        Row positions of ``frame``.

    Example:
        >>> sorted(coarse_grid(pd.DataFrame(space), 8))[:3]  # doctest: +SKIP
        [0, 8, 16]
    """
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


def _scores(table: pd.DataFrame, frame: pd.DataFrame, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """Fit on the measured rows; the mean log prediction of every config and its score."""
    pred = LatencyPredictor(
        estimator="extra_trees",
        target_transform="log",
        cv_folds=0,
        n_estimators=48,
        random_state=random_state,
    ).fit(table)
    members = np.log(pred.predict_members(frame))
    log_mean = members.mean(axis=0)
    spread = members.std(axis=0)
    return log_mean, spread + stair_edge_bonus(frame, log_mean) * float(np.median(spread))


def _picks(
    left: np.ndarray, score: np.ndarray, rng: np.random.Generator, settings: RoundSettings
) -> tuple[np.ndarray, np.ndarray]:
    """The round's random probes among the unmeasured positions, and the highest-scoring of the rest."""
    n_probe = max(1, int(round(settings.batch_size * settings.probe_fraction)))
    probes = rng.choice(left, size=min(n_probe, len(left)), replace=False)
    rest = np.setdiff1d(left, probes)
    chosen = rest[np.argsort(-score[rest], kind="stable")[: settings.batch_size - len(probes)]]
    return probes, chosen


def _probe_hits(
    table: pd.DataFrame, keys: list[tuple[int, ...]], probes: np.ndarray, log_mean: np.ndarray
) -> list[bool]:
    """Whether each probe that got measured was predicted within ±10% before it was."""
    got = dict(zip(map(tuple, table_keys(table)), table["latency_ms"].to_numpy(), strict=True))
    return [
        bool(within_share(np.exp(log_mean[[p]]), np.array([got[keys[p]]]), 0.10))
        for p in probes
        if keys[p] in got
    ]


def _share(hits: list[bool]) -> float:
    return float(np.mean(hits)) if hits else float("nan")


def _stop_reason(n_left: int, recent: list[bool], settings: RoundSettings, measurer: Measurer) -> str | None:
    """Why the loop stops before another round, or None to go on."""
    if n_left == 0:
        return "exhausted"
    if len(recent) >= settings.min_probes and np.mean(recent) >= settings.goal_within10:
        return "goal"
    if measurer.out_of_budget():
        return "time_budget"
    return None


def run_rounds(
    configs: list[dict[str, Any]], measurer: Measurer, settings: RoundSettings, *, out_path: Path, t0: float
) -> AdaptiveResult:
    """Measure the coarse grid, then rounds until the goal, the budget or the end of the space.

    Args:
        configs: The space, one config dict per distinct config.
        measurer: Measures configs by their position in ``configs``.
        settings: How to sample.
        out_path: The table (recorded in the result).
        t0: ``time.perf_counter()`` at the start (wall times count from it).

    Returns:
        The :class:`AdaptiveResult`.

    Example:
        >>> res = run_rounds(configs, measurer, RoundSettings(), out_path=Path("t.csv"),
        ...                  t0=time.perf_counter())  # doctest: +SKIP
    """
    frame = pd.DataFrame(configs)
    keys = [config_key(c) for c in configs]
    pos_of = {k: i for i, k in enumerate(keys)}
    rng = np.random.default_rng(settings.random_state)

    def done_positions(table: pd.DataFrame) -> set[int]:
        return {pos_of[k] for k in table_keys(table)}

    measurer.run(coarse_grid(frame, settings.coarse_step) - done_positions(measurer.measured()))
    rounds = [AdaptiveRound(0, len(measurer.measured()), float("nan"), time.perf_counter() - t0)]
    hits: list[bool] = []
    stop = "exhausted"
    while True:
        table = measurer.measured()
        done = done_positions(table)
        left = np.array(sorted(set(range(len(configs))) - done), dtype=int)
        why = _stop_reason(len(left), hits[-settings.window :], settings, measurer)
        if why is not None:
            stop = why
            break
        log_mean, score = _scores(table, frame, settings.random_state)
        probes, chosen = _picks(left, score, rng, settings)
        measurer.run(np.concatenate([probes, chosen]).tolist())
        table = measurer.measured()
        hits += _probe_hits(table, keys, probes, log_mean)
        rounds.append(
            AdaptiveRound(len(rounds), len(table), _share(hits[-settings.window :]), time.perf_counter() - t0)
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
    result = AdaptiveResult(
        table=out_path,
        n_space=len(configs),
        n_measured=len(done_positions(measurer.measured())),
        held_out_within10=_share(hits[-settings.window :]),
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

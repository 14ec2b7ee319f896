"""One round of the closed loop (:mod:`hwprune.verify.loop`): time a candidate on every target.

:func:`time_round` times the current model and the planned candidate end to end on each target that can be
timed here (against the dense model in the same rounds when the budget is a share of dense), lets each
predictor learn both measurements, judges each target's budget, and, where a target missed it for a reason
its table can fix, measures the candidate's conv configs that table lacks and refits (:func:`grow_table`).
Its records are :class:`LoopRound` (per target) in a :class:`RoundTimings`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from hwprune.contract import conv_layer_configs
from hwprune.prune.model_latency import floor_ms
from hwprune.prune.multi_target import MultiTargetPlan
from hwprune.verify.stopwatch import NOISY_SPREAD, Stopwatch, judge, time_against_dense

log = logging.getLogger(__name__)

__all__ = ["LoopRound", "RoundTimings", "TimedSide", "grow_table", "log_round", "time_round"]


@dataclass(frozen=True)
class LoopRound:
    """One plan-and-time round.

    Attributes:
        predicted_ms: The plan's predicted latency (before this round's measurements were learnt).
        measured_ms: The candidate's measured latency.
        current_ms: The current (unpruned-by-this-step) model's measured latency in the same rounds.
        new_configs: Conv configs measured and added to the table after this round.
        noisy: Whether the timings spread too much (> :data:`NOISY_SPREAD`) to be learnt from.
        dense_ms: The dense model timed in the same rounds (a budget that is a share of dense), else None.
        measured_budget_ms: The budget the measurement was judged against (a share budget: the share of
            ``dense_ms``), else None.
        measured_spread_ms: The candidate's IQR over the rounds.
        share: The candidate's per-round share of dense (median), or None without a dense timing.
        met: Whether the candidate met the budget within the tolerance
            (:func:`hwprune.verify.stopwatch.judge`).
        build_s: Seconds the target's runtime spent preparing the networks of this round (graph capture,
            ``torch.compile``): the cost of checking a step in a deploy runtime.
        target: The target's name.
        round: The round's number (0-based).
    """

    predicted_ms: float
    measured_ms: float
    current_ms: float
    new_configs: int
    noisy: bool = False
    dense_ms: float | None = None
    measured_budget_ms: float | None = None
    measured_spread_ms: float | None = None
    share: float | None = None
    met: bool | None = None
    build_s: float = 0.0
    target: str = ""
    round: int = 0


@dataclass(frozen=True)
class TimedSide:
    """One target as the loop sees it.

    Attributes:
        name: The target's name (a key of the budgets).
        predictor: Its predictor (learns from each round).
        batch: The batch it runs at.
        timing: The :class:`~hwprune.measure.Target` to time it on here, or None (open loop).
        share: Its step budget as a share of dense (judged on the measured share), or None (ms).
    """

    name: str
    predictor: Any
    batch: int
    timing: Any = None
    share: float | None = None


def grow_table(predictor: Any, target: Any, cand: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Measure the candidate's conv configs the predictor's table lacks; refit. Returns rows added."""
    from hwprune.measure import measure

    table = getattr(predictor, "source_table_", None)
    if not table or not hasattr(predictor, "refit"):
        return 0
    rows = [{**c.config, "layer": f"closed_loop:{c.name}"} for c in conv_layer_configs(cand, input_shape)]
    try:
        summary = measure(dataclasses.replace(target, batch=input_shape[0]), rows, table, progress=False)
    except ValueError as err:  # the table is another device's (or target's): do not mix this one's rows in
        log.warning("closed loop: not growing %s: %s", table, err)
        return 0
    if summary.measured:
        predictor.refit(table)
    return int(summary.measured)


@dataclass
class RoundTimings:
    """One round's timings on every timed target, and what the round asks of the loop."""

    entries: dict[str, LoopRound]
    missed: list[str]
    retry: bool
    faster: bool


def time_round(
    i: int,
    sides: Sequence[TimedSide],
    model: nn.Module,
    cand: nn.Module,
    joint: MultiTargetPlan,
    budgets: Mapping[str, float],
    shape: tuple[int, ...],
    *,
    dense: nn.Module | None,
    stopwatch: Stopwatch,
    tolerance: float,
    max_rounds: int,
) -> RoundTimings:
    """Time the candidate on every timed target, let each predictor learn, and say what the round asks."""
    from hwprune.measure.model_timing import time_models

    entries: dict[str, LoopRound] = {}
    missed: list[str] = []
    structural: dict[str, bool] = {}
    timings: dict[str, Any] = {}
    for s in sides:
        at = (s.batch, *shape[1:])
        if dense is not None:
            dense_t, (cur_t, cand_t) = time_against_dense(
                s.timing, dense, [model, cand], at, stopwatch=stopwatch
            )
        else:
            dense_t = None
            cur_t, cand_t = time_models(
                s.timing, [model, cand], at, rounds=stopwatch.rounds, evaluator=stopwatch.evaluator
            )
        timings[s.name] = (dense_t, cur_t, cand_t)
        verdict = judge(
            cand_t, dense_t, latency_ratio=s.share, budget_ms=budgets[s.name], tolerance=tolerance
        )
        noisy = max(cur_t.spread, cand_t.spread) > NOISY_SPREAD
        if noisy:
            log.warning(
                "closed loop round %d on %s: timings are noisy (spread %.0f%% / %.0f%%): not learnt from",
                i,
                s.name,
                100 * cur_t.spread,
                100 * cand_t.spread,
            )
        learn = getattr(s.predictor, "calibrate", None)
        if learn is not None and not noisy:
            learn([(model, at, cur_t.median_ms), (cand, at, cand_t.median_ms)], append=True)
        if not verdict.met:
            missed.append(s.name)
        # A budget under the dispatch floor is missed for a reason no table row can fix: do not re-plan.
        structural[s.name] = floor_ms(s.predictor) >= budgets[s.name]
        entries[s.name] = LoopRound(
            joint.targets[s.name].latency_after_ms,
            cand_t.median_ms,
            cur_t.median_ms,
            0,
            noisy,
            dense_ms=None if dense_t is None else dense_t.median_ms,
            measured_budget_ms=verdict.budget_ms,
            measured_spread_ms=cand_t.iqr_ms,
            share=verdict.share,
            met=verdict.met,
            build_s=cur_t.build_s + cand_t.build_s + (0.0 if dense_t is None else dense_t.build_s),
            target=s.name,
            round=i,
        )
    retry = bool(missed) and i < max_rounds and not all(structural[n] for n in missed)
    if retry:
        for s in sides:
            if s.name in missed and not structural[s.name]:
                grown = grow_table(s.predictor, s.timing, cand, (s.batch, *shape[1:]))
                entries[s.name] = dataclasses.replace(entries[s.name], new_configs=grown)
    faster = all(timings[s.name][2].median_ms < timings[s.name][1].median_ms for s in sides)
    return RoundTimings(entries, missed, retry, faster)


def log_round(i: int, rnd: RoundTimings, budgets: Mapping[str, float], sides: Sequence[TimedSide]) -> None:
    """Log each target's round: the runtime's build time, the prediction, the measurement and its verdict."""
    for s in sides:
        e = rnd.entries[s.name]
        if e.build_s > 0:
            log.info(
                "closed loop round %d: runtime %s prepared the networks in %.1f s",
                i,
                s.timing.runtime,
                e.build_s,
            )
        shown = f" on {s.name}" if len(sides) > 1 else ""
        verdict = f"measured {e.measured_ms:.4g} ms (budget {e.measured_budget_ms:.4g} ms): " + (
            "met" if e.met else "NOT met"
        )
        log.info(
            "closed loop round %d%s: predicted %.4g ms (planner budget %.4g ms); %s (current %.4g ms)%s",
            i,
            shown,
            e.predicted_ms,
            budgets[s.name],
            verdict,
            e.current_ms,
            f"; measured {e.new_configs} new configs and refitted" if e.new_configs else "",
        )

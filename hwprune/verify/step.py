"""One prune step, decided for any number of targets: plan, time on every target that can be timed, accept.

:func:`decide` is the one decision path of :class:`~hwprune.callbacks.HardwareAwarePruning`; one target is
a list of one. It plans the step (:func:`hwprune.prune.multi_target.plan_for_targets`: for one target that
is :func:`~hwprune.prune.planner.plan_pruning` itself), checks it on every target this process can time
(the closed loop, :func:`hwprune.verify.loop.verify_plan`: re-plan on a miss, refuse a step that measures
no faster), and returns a :class:`PruneDecision`: plain data, which the callback broadcasts to every rank.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

from hwprune.prune.multi_target import MultiTargetPlan, plan_for_targets
from hwprune.verify.loop import VerifiedPlan, verify_plan
from hwprune.verify.report import PruneStepLog
from hwprune.verify.rounds import TimedSide
from hwprune.verify.sides import TargetSide

log = logging.getLogger(__name__)

__all__ = ["PruneDecision", "decide"]


@dataclass(frozen=True)
class PruneDecision:
    """What rank 0 decided for one prune step; broadcast to every rank, which applies it.

    The single-number fields are the primary (first) target's; ``per_target`` holds every target's.

    Attributes:
        removals: Group root conv name -> channel indices to remove (empty: a no-op step).
        budget_ms: The step's predicted-latency budget.
        before_ms: Predicted latency before the step.
        after_ms: Predicted latency of the plan.
        feasible: Whether the plan meets every target's budget.
        plan_seconds: Wall time of planning (and of the closed loop's timing).
        measured_before_ms: The current model timed on the target, or None (open loop).
        measured_after_ms: The candidate timed on the target (the current model's time for a no-op).
        closed_loop: The closed loop's rounds, as dicts (one per timed target and round).
        closed_loop_note: Why the closed loop accepted or refused the step.
        per_target: Each target's budget, predicted and measured latency, and where it gave way.
        measured_dense_ms: The dense model timed in the same rounds as the step, or None.
        measured_share: The applied model's measured share of dense (per-round median), or None.
        measured_budget_ms: The budget the measurement was judged against, or None (open loop).
        measured_met: Whether the measurement met it within the stated tolerance, or None.
    """

    removals: dict[str, list[int]]
    budget_ms: float
    before_ms: float
    after_ms: float
    feasible: bool
    plan_seconds: float
    measured_before_ms: float | None = None
    measured_after_ms: float | None = None
    closed_loop: tuple[dict[str, Any], ...] = ()
    closed_loop_note: str = ""
    per_target: tuple[dict[str, Any], ...] = ()
    measured_dense_ms: float | None = None
    measured_share: float | None = None
    measured_budget_ms: float | None = None
    measured_met: bool | None = None

    def to_log(self, step: int, epoch: int, score_before: float | None, apply_seconds: float) -> PruneStepLog:
        """The step as reported, once applied (``"pruned"``, or ``"no-op"`` without removals).

        Args:
            step: The step's number (0-based, counting attempts).
            epoch: The epoch at whose start it ran.
            score_before: The monitored metric at the time of the step.
            apply_seconds: Wall time of applying it (added to the planning time).

        Returns:
            The :class:`~hwprune.verify.report.PruneStepLog`.
        """
        fields = {k: v for k, v in asdict(self).items() if k not in ("removals", "before_ms", "after_ms")}
        fields.update(
            step=step,
            epoch=epoch,
            latency_before_ms=self.before_ms,
            latency_after_ms=self.after_ms,
            plan_seconds=self.plan_seconds + apply_seconds,
            score_before=score_before,
            outcome="pruned" if self.removals else "no-op",
        )
        return PruneStepLog(**fields)


def _per_target(
    sides: Sequence[TargetSide], joint: MultiTargetPlan, vp: VerifiedPlan, applied: bool
) -> list[dict[str, Any]]:
    """Each target's side of the step: its budget, predicted and measured latency, where it gave way."""
    last = vp.last
    rows = []
    for s in sides:
        r = joint.targets[s.name]
        m = last.get(s.name)
        rows.append(
            {
                "target": s.name,
                "batch": s.batch,
                "budget_ms": r.budget_ms,
                "before_ms": r.latency_before_ms,
                "after_ms": r.latency_after_ms if applied else r.latency_before_ms,
                "met": bool(r.met),
                "weight": r.weight,
                "gave_way_ms": r.gave_way_ms,
                "conflicts": [
                    [c.root, c.width, c.friendly_below, round(c.extra_ms, 6)]
                    for c in joint.conflicts
                    if c.target == s.name
                ],
                "measured_before_ms": None if m is None else m.current_ms,
                "measured_after_ms": None if m is None else (m.measured_ms if applied else m.current_ms),
                "measured_dense_ms": None if m is None else m.dense_ms,
                "measured_share": None if m is None or not applied else m.share,
                "measured_met": None if m is None or not applied else m.met,
            }
        )
    return rows


def decide(
    net: nn.Module,
    sides: Sequence[TargetSide],
    input_shape: Sequence[int],
    budgets_ms: Mapping[str, float],
    *,
    planner_options: Mapping[str, Any],
    shares: Mapping[str, float | None] | None = None,
    closed_loop_rounds: int = 2,
    ignored_layers: Sequence[str] = (),
    dense: nn.Module | None = None,
) -> PruneDecision:
    """Plan the step that brings ``net`` to every target's budget, checked where the targets can be timed.

    Args:
        net: The current network (not changed: the closed loop prunes a copy).
        sides: The targets (:class:`~hwprune.verify.sides.TargetSide`), the primary one first; one target
            is a list of one. Their predictors may be refitted and recalibrated by the closed loop.
        input_shape: The run's input shape (each target is planned and timed at its own batch).
        budgets_ms: Target name -> the step's predicted-latency budget.
        planner_options: Keyword arguments of :func:`hwprune.prune.planner.plan_pruning` beyond the
            grouped model and budget (importance, snap, dense widths, minimum ratio).
        shares: Target name -> the step's budget as a share of dense (a ``latency_ratio`` budget, judged
            on the measured share of ``dense`` timed in the same rounds), or None (judged against ms).
        closed_loop_rounds: Re-plans of a step that misses a budget when timed.
        ignored_layers: Layers whose output channels stay.
        dense: The dense network, timed in the same rounds as each candidate.

    Returns:
        The decision (no removals when the closed loop refused the step).
    """
    t0 = time.perf_counter()
    shares = shares or {}
    preds = {s.name: s.predictor for s in sides}
    batches = {s.name: int(s.batch) for s in sides}

    def planner(gm: Any, budgets: Mapping[str, float]) -> MultiTargetPlan:
        return plan_for_targets(gm, preds, input_shape, budgets, batches, **planner_options)

    timed = [
        TimedSide(s.name, s.predictor, s.batch, s.timing, shares.get(s.name) if dense is not None else None)
        for s in sides
    ]
    vp = verify_plan(
        net,
        timed,
        input_shape,
        budgets_ms,
        planner,
        max_rounds=closed_loop_rounds,
        ignored_layers=ignored_layers,
        dense=dense,
    )
    if not vp.accepted:
        log.warning("prune step refused by the closed loop: %s", vp.reason)
    elif vp.rounds:
        log.info("prune step checked on %s: %s", ", ".join(s.name for s in timed if s.timing), vp.reason)
    assert vp.joint is not None
    joint = vp.joint
    if not joint.feasible and len(sides) > 1:
        _warn_infeasible(joint)
    applied = bool(vp.plan.removals) and bool(vp.rounds)
    rows = _per_target(sides, joint, vp, bool(vp.plan.removals))
    first = rows[0]
    lead = vp.last.get(sides[0].name)
    return PruneDecision(
        removals=vp.plan.removals,
        budget_ms=float(budgets_ms[sides[0].name]),
        before_ms=float(first["before_ms"]),
        after_ms=float(first["after_ms"]),
        feasible=bool(joint.feasible),
        plan_seconds=time.perf_counter() - t0,
        measured_before_ms=None if lead is None else lead.current_ms,
        measured_after_ms=None
        if lead is None
        else (lead.measured_ms if vp.plan.removals else lead.current_ms),
        closed_loop=tuple(asdict(r) for r in vp.rounds),
        closed_loop_note=vp.reason,
        per_target=tuple(rows),
        measured_dense_ms=None if lead is None else lead.dense_ms,
        measured_share=lead.share if applied and lead is not None else None,
        measured_budget_ms=None if lead is None else lead.measured_budget_ms,
        measured_met=lead.met if applied and lead is not None else None,
    )


def _warn_infeasible(joint: MultiTargetPlan) -> None:
    missed = [r for r in joint.targets.values() if not r.met]
    gave = max(joint.targets.values(), key=lambda r: r.gave_way_ms)
    log.warning(
        "the joint plan cannot meet every target's budget: %s over budget; %s gave way most (%.4f ms on "
        "counts that are not friendly there)",
        ", ".join(f"{r.target} {r.latency_after_ms:.4f} > {r.budget_ms:.4f} ms" for r in missed),
        gave.target,
        gave.gave_way_ms,
    )

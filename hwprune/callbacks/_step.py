"""One prune step of :class:`~hwprune.callbacks.HardwareAwarePruning`: decided on rank 0, applied on all.

:func:`decide_step` plans the step to a budget and checks it on the target where it can (the closed loop,
:func:`hwprune.prune.closed_loop.plan_and_verify`); its :class:`PruneDecision` is plain data, which the
callback broadcasts. :func:`apply_step` removes the decided channels on every rank and rebuilds the
optimizers, carrying the kept channels' momentum/Adam state over (:mod:`hwprune.prune.optim`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from torch import nn

from hwprune.callbacks._lightning import rank_zero_only
from hwprune.callbacks._trainer import rebuild_optimizers
from hwprune.callbacks.report import PruneStepLog
from hwprune.prune.graph import PruneRecord, apply_removals, build_groups
from hwprune.prune.optim import carry_optimizer_state, optimizer_states_by_name, prune_tracking_kept
from hwprune.prune.planner import plan_pruning
from hwprune.staircase import Predictor

if TYPE_CHECKING:  # either package works at run time (see hwprune.callbacks._lightning)
    import pytorch_lightning as pl

log = logging.getLogger(__name__)

__all__ = ["PruneDecision", "apply_step", "decide_step"]


@dataclass(frozen=True)
class PruneDecision:
    """What rank 0 decided for one prune step; broadcast to every rank, which applies it.

    Attributes:
        removals: Group root conv name -> channel indices to remove (empty: a no-op step).
        budget_ms: The step's predicted-latency budget.
        before_ms: Predicted latency before the step.
        after_ms: Predicted latency of the plan.
        feasible: Whether the plan meets the budget.
        plan_seconds: Wall time of planning (and of the closed loop's timing).
        measured_before_ms: The current model timed on the target, or None (open loop).
        measured_after_ms: The candidate timed on the target (the current model's time for a no-op).
        closed_loop: The closed loop's rounds, as dicts.
        closed_loop_note: Why the closed loop accepted or refused the step.
        per_target: With several targets, each target's budget, predicted and measured latency, and
            where it gave way (see :mod:`hwprune.callbacks._multi`); empty with one target.
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
            The :class:`~hwprune.callbacks.report.PruneStepLog`.
        """
        return PruneStepLog(
            step=step,
            epoch=epoch,
            budget_ms=self.budget_ms,
            latency_before_ms=self.before_ms,
            latency_after_ms=self.after_ms,
            feasible=self.feasible,
            plan_seconds=self.plan_seconds + apply_seconds,
            score_before=score_before,
            outcome="pruned" if self.removals else "no-op",
            measured_before_ms=self.measured_before_ms,
            measured_after_ms=self.measured_after_ms,
            closed_loop=self.closed_loop,
            closed_loop_note=self.closed_loop_note,
            per_target=self.per_target,
            measured_dense_ms=self.measured_dense_ms,
            measured_share=self.measured_share,
            measured_budget_ms=self.measured_budget_ms,
            measured_met=self.measured_met,
        )


def _plan_step(gm: Any, budget_ms: float, **kwargs: Any) -> Any:
    """One step's planner call, in the ``planner(grouped_model, budget)`` form the closed loop takes."""
    return plan_pruning(gm, budget_ms=budget_ms, **kwargs)


def decide_step(
    net: nn.Module,
    predictor: Predictor,
    input_shape: tuple[int, ...],
    budget_ms: float,
    *,
    planner_options: dict[str, Any],
    target: Any,
    closed_loop_rounds: int,
    ignored_layers: Sequence[str],
    dense: nn.Module | None = None,
    budget_share: float | None = None,
) -> PruneDecision:
    """Plan the step that brings ``net`` to ``budget_ms``, checked on ``target`` where it can be timed.

    Args:
        net: The current network (not changed: the closed loop prunes a copy).
        predictor: The latency predictor (the closed loop may refit and recalibrate it).
        input_shape: The planned input shape.
        budget_ms: The step's predicted-latency budget.
        planner_options: Keyword arguments of :func:`hwprune.prune.planner.plan_pruning` beyond the
            grouped model and budget (importance, snap, dense widths, minimum ratio).
        target: The :class:`~hwprune.measure.Target` to time on, or None (open loop).
        closed_loop_rounds: Re-plans of a step that misses its budget when timed.
        ignored_layers: Layers whose output channels stay.
        dense: The dense network, timed in the same rounds as each candidate.
        budget_share: The step's budget as a share of dense (a ``latency_ratio`` budget), judged on the
            measured share; None judges the measurement against ``budget_ms``.

    Returns:
        The decision (no removals when the closed loop refused the step).
    """
    from hwprune.prune.closed_loop import plan_and_verify

    t0 = time.perf_counter()
    planner = partial(_plan_step, predictor=predictor, input_shape=input_shape, **planner_options)
    vp = plan_and_verify(
        net,
        predictor,
        input_shape,
        budget_ms,
        planner,
        target=target,
        max_rounds=closed_loop_rounds,
        ignored_layers=ignored_layers,
        dense=dense,
        budget_share=budget_share,
    )
    if not vp.accepted:
        rank_zero_only(log.warning)("prune step refused by the closed loop: %s", vp.reason)
    elif vp.rounds:
        rank_zero_only(log.info)("prune step checked on %s: %s", target.name, vp.reason)
    plan = vp.plan
    last = vp.rounds[-1] if vp.rounds else None
    applied = bool(plan.removals) and last is not None
    return PruneDecision(
        removals=plan.removals,
        budget_ms=float(budget_ms),
        before_ms=float(plan.latency_before_ms),
        after_ms=float(plan.latency_after_ms),
        feasible=bool(plan.feasible),
        plan_seconds=time.perf_counter() - t0,
        measured_before_ms=vp.current_ms,
        measured_after_ms=vp.measured_ms if plan.removals else vp.current_ms,
        closed_loop=tuple(asdict(r) for r in vp.rounds),
        closed_loop_note=vp.reason,
        measured_dense_ms=None if last is None else last.dense_ms,
        measured_share=last.share if applied else None,
        measured_budget_ms=None if last is None else last.measured_budget_ms,
        measured_met=last.met if applied else None,
    )


def apply_step(
    trainer: pl.Trainer,
    pl_module: pl.LightningModule,
    net: nn.Module,
    input_shape: tuple[int, ...],
    removals: dict[str, list[int]],
    ignored_layers: Sequence[str],
) -> list[PruneRecord]:
    """Remove ``removals`` from ``net`` in place and rebuild the optimizers with the kept channels' state.

    Args:
        trainer: The Trainer (its optimizers are rebuilt when fitting).
        pl_module: The LightningModule (its parameter names are the optimizers' view).
        net: The network inside ``pl_module`` to prune.
        input_shape: The input shape to trace the dependency graph at.
        removals: :attr:`PruneDecision.removals`.
        ignored_layers: Layers whose output channels stay.

    Returns:
        The step's Torch-Pruning records, for :func:`hwprune.prune.replay_history`.
    """
    shapes = {n: p.shape for n, p in pl_module.named_parameters()}
    states = optimizer_states_by_name(pl_module, trainer.optimizers)
    gm = build_groups(net, input_shape, ignored_layers)
    history, kept = prune_tracking_kept(pl_module, lambda: apply_removals(gm, removals))
    rebuild_optimizers(
        trainer,
        lambda old: carry_optimizer_state(pl_module, old, trainer.optimizers, states, kept, shapes),
    )
    return history

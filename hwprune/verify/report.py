"""The report rows of a verified prune run: each step's log entry and each target's final figures.

:class:`PruneStepLog` is one scheduled prune step as reported (the callback's state keeps them).
:func:`measured_latency` times the dense and the pruned model on a target with the one stopwatch
(:mod:`hwprune.verify.stopwatch`); :func:`report_targets` gives every target's predicted and measured
latency against its budget, and :func:`summary` the verdict over all targets, first words first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hwprune.prune.model_latency import predicted_latency
from hwprune.verify.budget import Budget
from hwprune.verify.sides import TargetSide
from hwprune.verify.stopwatch import MET_TOLERANCE, STOPWATCH, Stopwatch, share_of_dense, time_against_dense

__all__ = ["PruneStepLog", "measured_latency", "report_targets", "summary"]


@dataclass(frozen=True)
class PruneStepLog:
    """One scheduled prune step, as reported.

    Attributes:
        step: Step number (0-based, counting attempts).
        epoch: Epoch at whose start it ran.
        budget_ms: The step's predicted-latency budget.
        latency_before_ms: Predicted latency before.
        latency_after_ms: Predicted latency after.
        feasible: Whether the budget was met.
        plan_seconds: Planning + pruning wall time.
        score_before: Monitored metric at the time of the step.
        outcome: ``"pruned"``, ``"no-op"`` or ``"rolled back"``.
        measured_before_ms: Measured latency on the target before the step (the closed loop), else None.
        measured_after_ms: Measured latency of the applied step's model; the closed loop never applies
            one above ``measured_before_ms``.
        closed_loop: The closed loop's rounds (predicted, measured, current ms, configs added).
        closed_loop_note: Why the step was accepted or refused.
        per_target: With several targets, each target's side of the step (empty with one target).
        measured_dense_ms: The dense model timed in the same rounds as the step, or None.
        measured_share: The applied model's measured share of dense, or None.
        measured_budget_ms: The budget the step's measurement was judged against, or None.
        measured_met: Whether the step's measurement met it (within the stated tolerance), or None.
    """

    step: int
    epoch: int
    budget_ms: float
    latency_before_ms: float
    latency_after_ms: float
    feasible: bool
    plan_seconds: float
    score_before: float | None
    outcome: str
    measured_before_ms: float | None = None
    measured_after_ms: float | None = None
    closed_loop: tuple[dict[str, Any], ...] = ()
    closed_loop_note: str = ""
    per_target: tuple[dict[str, Any], ...] = ()
    measured_dense_ms: float | None = None
    measured_share: float | None = None
    measured_budget_ms: float | None = None
    measured_met: bool | None = None


def measured_latency(
    target: Any,
    dense: nn.Module,
    pruned: nn.Module,
    input_shape: Sequence[int],
    *,
    verify: bool = True,
    target_name: str | None = None,
    stopwatch: Stopwatch = STOPWATCH,
) -> dict[str, Any]:
    """The dense and pruned networks timed end to end on ``target``, with the one stopwatch.

    The same timing as every prune step's check (:func:`hwprune.verify.stopwatch.time_against_dense`,
    :data:`~hwprune.verify.stopwatch.STOPWATCH`): the dense model and the pruned one in the same interleaved
    rounds, so their per-round ratio holds under a shared machine's bursts of load.

    Args:
        target: The :class:`~hwprune.measure.Target` to time on, which times whole models here
            (:func:`hwprune.measure.can_time_models`); None when it cannot be timed in this process. Its
            backend sets the target's threads for the timing and hands training's back when it closes.
        dense: The dense network.
        pruned: The pruned network.
        input_shape: The input shape, including the deployment batch.
        verify: False: nothing is timed (the note says so).
        target_name: The name the note gives an untimed target.
        stopwatch: The timing settings (default: the one every check uses).

    Returns:
        ``{"before_ms", "after_ms", "before_iqr_ms", "after_iqr_ms", "share", "share_iqr", "rounds",
        "note"}``; the note names the target, its settings, torch and the stopwatch, or why nothing was
        timed (times are then None).
    """
    empty = {"before_ms": None, "after_ms": None, "before_iqr_ms": None, "after_iqr_ms": None}
    if not verify:
        return {**empty, "share": None, "share_iqr": None, "rounds": 0, "note": "verify=False"}
    if target is None:
        name = target_name or "the target"
        return {
            **empty,
            "share": None,
            "share_iqr": None,
            "rounds": 0,
            "note": f"target {name!r} cannot be timed in this process",
        }
    a, (b,) = time_against_dense(target, dense, [pruned], input_shape, stopwatch=stopwatch)
    share, share_iqr = share_of_dense(b, a)
    opts = ", ".join(f"{k}={v}" for k, v in sorted(target.options.items()))
    note = (
        f"measured on target {target.name} ({target.backend}, {target.dtype}, batch {input_shape[0]}, "
        f"{opts}), torch {torch.__version__}, {stopwatch.describe()}"
    )
    return {
        "before_ms": a.median_ms,
        "after_ms": b.median_ms,
        "before_iqr_ms": a.iqr_ms,
        "after_iqr_ms": b.iqr_ms,
        "before_rounds_ms": list(a.rounds_ms),
        "after_rounds_ms": list(b.rounds_ms),
        "share": share,
        "share_iqr": share_iqr,
        "rounds": stopwatch.rounds,
        "note": note,
    }


def report_targets(
    sides: Sequence[TargetSide],
    dense: nn.Module,
    pruned: nn.Module,
    input_shape: Sequence[int],
    budget: Budget,
    dense_ms: Mapping[str, float],
    last_step: Mapping[str, Any] | None,
    verify: bool,
) -> list[dict[str, Any]]:
    """Every target's predicted (and, where reachable, measured) latency of the dense and pruned networks.

    Each target is timed once (:func:`measured_latency`, the one stopwatch): the report's single-target
    figures are the primary target's entry, not a second timing. A target is met when its measurement is
    within its budget plus :data:`~hwprune.verify.stopwatch.MET_TOLERANCE` where it was timed (a
    ``latency_ratio`` on its measured share of dense), else when the prediction is.

    Args:
        sides: The targets, the primary one first.
        dense: The dense network.
        pruned: The pruned network.
        input_shape: The run's input shape (each target is timed at its batch).
        budget: The run's budget.
        dense_ms: Target name -> the dense model's predicted latency the final budget is a share of.
        last_step: The last step's log entry as a dict (its ``per_target`` rows), or None.
        verify: False: nothing is timed.

    Returns:
        One dict per target: ``target``, ``batch``, ``budget_ms``, ``latency_ratio``, ``predicted_ms``,
        ``measured_ms``, ``met``, ``gave_way_ms`` and ``conflicts`` (from the last step that planned).
    """
    last = {p["target"]: p for p in (last_step or {}).get("per_target", ())}
    out = []
    for s in sides:
        n = s.name
        shape = s.shape(input_shape)
        before = predicted_latency(s.predictor, dense, shape)
        after = predicted_latency(s.predictor, pruned, shape)
        meas = measured_latency(s.timing, dense, pruned, shape, verify=verify, target_name=n)
        final = budget.final_ms(n, dense_ms[n])
        ratio = budget.ratio_of(n)
        if meas["after_ms"] is not None and ratio is not None and meas["share"] is not None:
            met = meas["share"] <= float(ratio) * (1.0 + MET_TOLERANCE)
        elif meas["after_ms"] is not None:
            met = meas["after_ms"] <= final * (1.0 + MET_TOLERANCE)
        else:
            met = after <= final * (1.0 + 1e-6)
        out.append(
            {
                "target": n,
                "batch": s.batch,
                "budget_ms": final,
                "latency_ratio": None if ratio is None else float(ratio),
                "predicted_ms": {"before": before, "after": after},
                "measured_ms": meas,
                "met": bool(met),
                "gave_way_ms": (last.get(n) or {}).get("gave_way_ms", 0.0),
                "conflicts": (last.get(n) or {}).get("conflicts", []),
            }
        )
    return out


def summary(targets: Sequence[Mapping[str, Any]], steps: Sequence[Any]) -> dict[str, Any]:
    """The several-target verdict, first words first: met or not, which target missed, which gave way.

    Args:
        targets: :func:`report_targets`' entries.
        steps: The callback's :class:`PruneStepLog` entries.

    Returns:
        ``{"met": bool, "summary": str, "joint_plan_feasible": bool}``; the summary starts with
        ``budget met`` or ``budget NOT met on <targets>``, and says where the joint plan could not meet
        every budget and which target gave way.
    """
    missed = [str(t["target"]) for t in targets if not t["met"]]
    last = next((s for s in reversed(steps) if s.per_target), None)
    feasible = bool(last.feasible) if last is not None else True
    head = f"budget {'NOT met on ' + ', '.join(missed) if missed else 'met'}"
    if not feasible:
        gave = max(targets, key=lambda t: float(t["gave_way_ms"]))
        head += (
            f"; the joint plan could not meet every target's budget, {gave['target']} gave way most "
            f"({float(gave['gave_way_ms']):.4f} ms on counts not friendly there)"
        )

    def one(t: Mapping[str, Any]) -> str:
        m = t["measured_ms"]
        text = f"{t['target']} predicted {t['predicted_ms']['after']:.4f} ms"
        if m.get("after_ms") is not None:
            text += f", measured {m['after_ms']:.4f} ms (IQR {m.get('after_iqr_ms') or 0.0:.4f})"
            if m.get("share") is not None:
                text += f" = {m['share']:.3f} of dense"
        return text + f" vs budget {t['budget_ms']:.4f} ms"

    body = "; ".join(one(t) for t in targets)
    text = (
        f"{head} ({len(targets) - len(missed)} of {len(targets)} targets met, {MET_TOLERANCE:.0%} tolerance: "
        f"{body})"
    )
    return {"met": not missed, "summary": text, "joint_plan_feasible": feasible}

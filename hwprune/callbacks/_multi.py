"""Several targets for one :class:`~hwprune.callbacks.HardwareAwarePruning`: one model for every target.

With ``predictor={"cpu_torch": p1, "cuda_cudnn_tf32": p2}`` the callback plans each step with
:func:`hwprune.prune.multi_target.plan_for_targets`: one architecture that meets every target's budget,
each target priced by its own predictor at its own batch. Each step is then timed on every target this
process can reach (the current model against the candidate, interleaved); a step that measures more than
:data:`~hwprune.staircase.SLOWDOWN_TOLERANCE` slower on any of them is refused. Unlike the single-target
closed loop, a miss does not trigger a refit: the per-target predictors stay as they were resolved.

The first target of the mapping is the *primary* one: the callback's single-number fields (the step's
budget, the logged predicted latency) are its; every target's figures are in each step's ``per_target``
and in the report's ``targets``.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from hwprune.callbacks._lightning import rank_zero_only
from hwprune.callbacks._resolve import calibrate_for_run, resolve_predictor, resolve_target
from hwprune.callbacks._step import PruneDecision
from hwprune.prune.graph import apply_removals, build_groups
from hwprune.prune.model_latency import predicted_latency
from hwprune.prune.multi_target import plan_for_targets
from hwprune.prune.stopwatch import MET_TOLERANCE
from hwprune.staircase import SLOWDOWN_TOLERANCE, Predictor, is_slowdown

log = logging.getLogger(__name__)

__all__ = [
    "TargetSide",
    "budgets_ms",
    "check_multi",
    "decide",
    "is_multi",
    "report_targets",
    "resolve_sides",
    "summary",
]


def is_multi(predictor: Any) -> bool:
    """Whether the callback's ``predictor`` names several targets (a mapping of name -> predictor)."""
    return isinstance(predictor, Mapping)


def _names(arg: Any) -> list[str]:
    return [str(k) for k in arg]


def check_multi(predictor: Mapping[str, Any], latency_ratio: Any, latency_ms: Any, target: Any) -> None:
    """Check the multi-target arguments: the mappings must name the same targets.

    Args:
        predictor: Target name -> predictor, path or factory.
        latency_ratio: One fraction for every target, a mapping of them, or None.
        latency_ms: One budget in ms for every target (rarely meaningful), a mapping, or None.
        target: None, or a mapping target name -> Target (or catalogue name) to time on.

    Raises:
        ValueError: If ``predictor`` is empty, or a budget or target mapping names other targets, or a
            value is out of range.
    """
    names = _names(predictor)
    if not names:
        raise ValueError("`predictor` must name at least one target, got an empty mapping")
    for what, arg in (("latency_ratio", latency_ratio), ("latency_ms", latency_ms), ("target", target)):
        if isinstance(arg, Mapping) and sorted(_names(arg)) != sorted(names):
            raise ValueError(
                f"`{what}` must name the same targets as `predictor` ({names}), got {_names(arg)}"
            )
    if target is not None and not isinstance(target, Mapping):
        raise ValueError(
            f"`target` must be None or a mapping of target name -> target when `predictor` names several "
            f"targets, got {type(target).__name__}"
        )
    for name in names:
        ratio = latency_ratio[name] if isinstance(latency_ratio, Mapping) else latency_ratio
        ms = latency_ms[name] if isinstance(latency_ms, Mapping) else latency_ms
        if ratio is not None and not (isinstance(ratio, int | float) and 0.0 < float(ratio) < 1.0):
            raise ValueError(f"`latency_ratio[{name!r}]` must be a fraction in (0, 1), got {ratio!r}")
        if ms is not None and not (isinstance(ms, int | float) and math.isfinite(ms) and ms > 0):
            raise ValueError(f"`latency_ms[{name!r}]` must be a latency in ms (> 0), got {ms!r}")


@dataclass
class TargetSide:
    """One target of the set, as resolved on rank 0 in ``setup``.

    Attributes:
        name: The target's name (the mapping's key).
        predictor: Its predictor.
        batch: The batch it runs (and is priced) at.
        timing: The Target to time on here, or None where it cannot be timed in this process.
    """

    name: str
    predictor: Predictor
    batch: int
    timing: Any


def _batch_of(arg: Any, batch: int) -> int:
    """The batch a target runs at: its factory's target batch, a predictor's only batch, else the run's."""
    target = getattr(arg, "target", None)
    tb = getattr(target, "batch", None)
    if isinstance(tb, int) and tb >= 1:
        return tb
    batches = tuple(getattr(arg, "batches_", ()) or ())
    if len(batches) == 1:
        return int(batches[0])
    return int(batch)


def resolve_sides(
    predictor: Mapping[str, Any],
    target: Mapping[str, Any] | None,
    verify: bool,
    net: nn.Module,
    input_shape: tuple[int, ...],
    progress: bool = True,
) -> dict[str, TargetSide]:
    """Resolve every target's predictor (a factory measures at that target's batch) and timing target.

    Args:
        predictor: Target name -> fitted predictor, path, or factory ``(model, input_shape) -> predictor``.
        target: Target name -> Target (or catalogue name) to time on (None: the predictor's ``target_``;
            False: never time this target here), or None for every target.
        verify: False: nothing is timed.
        net: The dense network (a target timed here calibrates its predictor on it where the predictor
            has no whole-model terms: :func:`hwprune.callbacks._resolve.calibrate_for_run`).
        input_shape: The run's input shape (its batch is the default batch of a target).
        progress: Whether the run shows progress bars (passed to factories that follow it).

    Returns:
        Name -> :class:`TargetSide`, in the mapping's order.
    """
    sides: dict[str, TargetSide] = {}
    for name, arg in predictor.items():
        batch = _batch_of(arg, input_shape[0])
        shape = (batch, *input_shape[1:])
        pred = resolve_predictor(arg, net, shape, progress=progress)
        batch = _batch_of(pred, batch) if not hasattr(arg, "target") else batch
        t_arg = None if target is None else target[name]
        if t_arg is False:  # this target is planned open loop, never timed here
            timing = None
        else:
            timing = resolve_target(t_arg or getattr(pred, "target_", None) or str(name), pred, verify, batch)
        if timing is not None:  # a ratio is a share of the whole model on every target (issue 18)
            calibrate_for_run(pred, timing, net, (int(batch), *input_shape[1:]))
        sides[str(name)] = TargetSide(str(name), pred, int(batch), timing)
        rank_zero_only(log.info)(
            "target %s: batch %d, %s", name, batch, "timed here" if timing is not None else "open loop"
        )
    return sides


def _shape(side: TargetSide, input_shape: Sequence[int]) -> tuple[int, ...]:
    return (side.batch, *(int(s) for s in input_shape[1:]))


def dense_latencies(
    sides: Mapping[str, TargetSide], dense: nn.Module, input_shape: Sequence[int]
) -> dict[str, float]:
    """Each target's predicted latency of ``dense`` in ms."""
    return {n: predicted_latency(s.predictor, dense, _shape(s, input_shape)) for n, s in sides.items()}


def budgets_ms(
    dense: Mapping[str, float], latency_ratio: Any, latency_ms: Any, fraction: float
) -> dict[str, float]:
    """Each target's budget for a step ``fraction`` of the way from its dense latency to its final budget."""
    out: dict[str, float] = {}
    for name, d in dense.items():
        ratio = latency_ratio[name] if isinstance(latency_ratio, Mapping) else latency_ratio
        ms = latency_ms[name] if isinstance(latency_ms, Mapping) else latency_ms
        final = float(ms) if ms is not None else float(ratio) * float(d)
        out[name] = float(d) - fraction * (float(d) - final)
    return out


def decide(
    net: nn.Module,
    sides: Mapping[str, TargetSide],
    input_shape: tuple[int, ...],
    budgets: Mapping[str, float],
    *,
    planner_options: dict[str, Any],
    ignored_layers: Sequence[str],
    dense: nn.Module | None = None,
) -> PruneDecision:
    """Plan one step for every target, then time it on each target that can be timed here.

    Args:
        net: The current network (not changed).
        sides: The resolved targets (:func:`resolve_sides`).
        input_shape: The run's input shape.
        budgets: Target name -> the step's budget in ms.
        planner_options: :func:`~hwprune.prune.planner.plan_pruning`'s keyword arguments.
        ignored_layers: Layers whose output channels stay.
        dense: The dense network, timed in the same rounds on each target
            (:func:`hwprune.prune.stopwatch.time_against_dense`, the one stopwatch); None: ``net`` is
            the reference.

    Returns:
        The decision; its single-number fields are the primary (first) target's, ``per_target`` holds
        every target's. No removals when a reachable target measured the candidate slower.
    """
    t0 = time.perf_counter()
    gm = build_groups(net, input_shape, ignored_layers)
    mp = plan_for_targets(
        gm,
        {n: s.predictor for n, s in sides.items()},
        input_shape,
        budgets,
        {n: s.batch for n, s in sides.items()},
        **planner_options,
    )
    removals = dict(mp.removals)
    measured: dict[str, tuple[float, float]] = {}
    note = "open loop: no target can be timed here"
    dense_ms: dict[str, float] = {}
    if removals and any(s.timing is not None for s in sides.values()):
        from hwprune.prune.stopwatch import time_against_dense

        candidate = copy.deepcopy(net)
        apply_removals(build_groups(candidate, input_shape, ignored_layers), removals)
        slower = []
        for n, s in sides.items():
            if s.timing is None:
                continue
            ref = net if dense is None else dense
            d, (cur, cand) = time_against_dense(s.timing, ref, [net, candidate], _shape(s, input_shape))
            measured[n] = (cur.median_ms, cand.median_ms)
            dense_ms[n] = d.median_ms
            if is_slowdown(cand.median_ms, cur.median_ms):
                slower.append(f"{n} {cur.median_ms:.4f} -> {cand.median_ms:.4f} ms")
        if slower:
            note = f"refused: measured more than {SLOWDOWN_TOLERANCE:.0%} slower on " + ", ".join(slower)
            rank_zero_only(log.warning)("multi-target prune step %s", note)
            removals = {}
        else:
            note = "timed on " + ", ".join(f"{n} {a:.4f} -> {b:.4f} ms" for n, (a, b) in measured.items())
    per_target = []
    for n, r in mp.targets.items():
        m = measured.get(n)
        per_target.append(
            {
                "target": n,
                "batch": sides[n].batch,
                "budget_ms": r.budget_ms,
                "before_ms": r.latency_before_ms,
                "after_ms": r.latency_after_ms if removals else r.latency_before_ms,
                "met": bool(r.met),
                "weight": r.weight,
                "gave_way_ms": r.gave_way_ms,
                "conflicts": [
                    [c.root, c.width, c.friendly_below, round(c.extra_ms, 6)]
                    for c in mp.conflicts
                    if c.target == n
                ],
                "measured_before_ms": None if m is None else m[0],
                "measured_after_ms": None if m is None else (m[1] if removals else m[0]),
                "measured_dense_ms": dense_ms.get(n),
            }
        )
    if not mp.feasible:
        missed = [t for t in per_target if not t["met"]]
        gave = max(per_target, key=lambda t: t["gave_way_ms"])
        rank_zero_only(log.warning)(
            "the joint plan cannot meet every target's budget: %s over budget; %s gave way most (%.4f ms "
            "on counts that are not friendly there)",
            ", ".join(f"{t['target']} {t['after_ms']:.4f} > {t['budget_ms']:.4f} ms" for t in missed),
            gave["target"],
            gave["gave_way_ms"],
        )
    first = per_target[0]
    return PruneDecision(
        removals=removals,
        budget_ms=float(first["budget_ms"]),
        before_ms=float(first["before_ms"]),
        after_ms=float(first["after_ms"]),
        feasible=bool(mp.feasible),
        plan_seconds=time.perf_counter() - t0,
        measured_before_ms=first["measured_before_ms"],
        measured_after_ms=first["measured_after_ms"],
        closed_loop_note=note,
        per_target=tuple(per_target),
    )


def report_targets(
    sides: Mapping[str, TargetSide],
    dense: nn.Module,
    pruned: nn.Module,
    input_shape: Sequence[int],
    final_budgets: Mapping[str, float],
    last_step: Mapping[str, Any] | None,
    verify: bool,
    latency_ratio: Any = None,
) -> list[dict[str, Any]]:
    """Every target's predicted (and, where reachable, measured) latency of the dense and pruned networks.

    Each target is timed once (:func:`hwprune.callbacks.report.measured_latency`, the one stopwatch): the
    report's single-target figures are the primary target's entry, not a second timing. A target is met
    when its measurement is within its budget plus :data:`~hwprune.prune.stopwatch.MET_TOLERANCE` where
    it was timed (a ``latency_ratio`` on its measured share of dense), else when the prediction is.

    Returns:
        One dict per target: ``target``, ``batch``, ``budget_ms``, ``predicted_ms``, ``measured_ms``,
        ``met``, ``gave_way_ms`` and ``conflicts`` (from the last step that planned).
    """
    from hwprune.callbacks.report import measured_latency

    last = {p["target"]: p for p in (last_step or {}).get("per_target", ())}
    out = []
    for n, s in sides.items():
        shape = _shape(s, input_shape)
        before = predicted_latency(s.predictor, dense, shape)
        after = predicted_latency(s.predictor, pruned, shape)
        meas = measured_latency(s.timing, dense, pruned, shape, verify=verify, target_name=n)
        budget = float(final_budgets[n])
        ratio = latency_ratio[n] if isinstance(latency_ratio, Mapping) else latency_ratio
        if meas["after_ms"] is not None and ratio is not None and meas["share"] is not None:
            met = meas["share"] <= float(ratio) * (1.0 + MET_TOLERANCE)
        elif meas["after_ms"] is not None:
            met = meas["after_ms"] <= budget * (1.0 + MET_TOLERANCE)
        else:
            met = after <= budget * (1.0 + 1e-6)
        out.append(
            {
                "target": n,
                "batch": s.batch,
                "budget_ms": budget,
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
        steps: The callback's :class:`~hwprune.callbacks.report.PruneStepLog` entries.

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

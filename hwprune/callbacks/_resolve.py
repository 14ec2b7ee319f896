"""What :class:`~hwprune.callbacks.HardwareAwarePruning` resolves in ``setup`` (rank 0): each target's
predictor (a path, an object or a factory) and its :class:`~hwprune.verify.sides.TargetSide`.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from hwprune.callbacks._lightning import rank_zero_only
from hwprune.staircase import Predictor
from hwprune.verify.budget import Budget
from hwprune.verify.sides import (
    TargetSide,
    batch_of,
    budget_basis,
    calibrate_for_run,
    check_reachable,
    resolve_target,
    smallest_latency_ms,
    warn_on_mismatch,
)

log = logging.getLogger(__name__)

__all__ = ["calibrate_sides", "coverage_refusal", "resolve_predictor", "resolve_sides", "unreachable_budget"]


def resolve_predictor(
    arg: Any, net: nn.Module, input_shape: tuple[int, ...], *, progress: bool = True
) -> Predictor:
    """The predictor to plan with: loaded from a path, a copy of a fitted one, or built by a factory.

    The closed loop teaches the predictor (calibration, refits), so a fitted predictor is copied: the
    user's object is never changed.

    Args:
        arg: A path, a fitted predictor, or a callable ``(model, input_shape) -> predictor``.
        net: The dense network (for a factory).
        input_shape: The planned input shape.
        progress: Whether the run shows progress bars (the Trainer's ``enable_progress_bar``): a
            :class:`~hwprune.callbacks.PredictorFactory` left at ``progress=None`` follows it.

    Returns:
        The predictor.
    """
    if isinstance(arg, str | os.PathLike):
        from hwprune.predict import LatencyPredictor

        return LatencyPredictor.load(arg)
    if hasattr(arg, "predict"):
        return copy.deepcopy(arg)  # type: ignore[no-any-return]
    from hwprune.callbacks.predictor_factory import PredictorFactory

    if isinstance(arg, PredictorFactory) and arg.progress is None:
        arg = dataclasses.replace(arg, progress=progress)
    return arg(net, input_shape)  # type: ignore[no-any-return]


def resolve_sides(
    predictor: Any,
    target: Any,
    verify: bool,
    net: nn.Module,
    input_shape: tuple[int, ...],
    *,
    progress: bool = True,
) -> list[TargetSide]:
    """Every target's side: its predictor (a factory measures at its batch), batch and timing target.

    One target (``predictor`` not a mapping) is a list of one: it runs at ``input_shape``'s batch, is
    named by its predictor's ``target_``, and is checked for a batch or device its predictor was not
    fitted on. Several: each at its factory's target batch, or its predictor's only fitted batch.

    Args:
        predictor: A predictor, path or factory; or target name -> one of those.
        target: The callback's ``target``: a Target, a catalogue name or None (the predictor's
            ``target_``); with several, None or a mapping whose False values mean "never timed here".
        verify: False: nothing is timed.
        net: The dense network (a factory measures its layer space).
        input_shape: The run's input shape.
        progress: Whether the run shows progress bars (passed to factories that follow it).

    Returns:
        The sides, the primary one first.
    """
    several = isinstance(predictor, Mapping)
    args = predictor if several else {None: predictor}
    sides: list[TargetSide] = []
    for name, arg in args.items():
        batch = batch_of(arg, input_shape[0]) if several else int(input_shape[0])
        shape = (batch, *input_shape[1:])
        pred = resolve_predictor(arg, net, shape, progress=progress)
        if several and not hasattr(arg, "target"):
            batch = batch_of(pred, batch)
            shape = (batch, *input_shape[1:])
        t_arg = target[name] if several and isinstance(target, Mapping) else (None if several else target)
        fallback = str(name) if several else None
        timing = (
            None
            if t_arg is False
            else resolve_target(t_arg or getattr(pred, "target_", None) or fallback, pred, verify, batch)
        )
        if not several:
            warn_on_mismatch(pred, timing, shape)
        label = (
            str(name) if several else str(getattr(pred, "target_", None) or getattr(timing, "name", "target"))
        )
        sides.append(TargetSide(label, pred, int(batch), timing))
        rank_zero_only(log.info)(
            "target %s: batch %d, %s", label, batch, "timed here" if timing is not None else "open loop"
        )
    return sides


def calibrate_sides(
    sides: list[TargetSide], net: nn.Module, input_shape: tuple[int, ...], latency_ratio: Any
) -> None:
    """Time the dense model on every side timed here, calibrating its predictor where needed; say what
    each side's budget is a share of (:func:`hwprune.verify.sides.calibrate_for_run`, ``budget_basis``).

    Args:
        sides: :func:`resolve_sides`' sides (set in place: ``dense_measured_ms`` and ``basis``).
        net: The dense network.
        input_shape: The run's input shape.
        latency_ratio: The budget's ratio (one, per target, or None).
    """
    for side in sides:
        shape = side.shape(input_shape)
        ratio = latency_ratio.get(side.name) if isinstance(latency_ratio, Mapping) else latency_ratio
        side.dense_measured_ms = calibrate_for_run(side.predictor, side.timing, net, shape)
        side.basis = budget_basis(side.predictor, side.timing, ratio, side.dense_measured_ms)
        on = f" (target {side.name})" if len(sides) > 1 else ""
        rank_zero_only(log.info)("hwprune%s: %s", on, side.basis)


def coverage_refusal(
    sides: Sequence[TargetSide], net: nn.Module, input_shape: tuple[int, ...], action: str, *, several: bool
) -> str | None:
    """Warn about conv shapes a side's predictor never measured; the first refusal's message, or None.

    Args:
        sides: Every target's side.
        net: The dense network.
        input_shape: The run's input shape.
        action: The callback's ``coverage_check`` (``"raise"`` refuses, ``"warn"`` only warns).
        several: Name the target in the message (a run over several targets).

    Returns:
        The message of the first side whose predictor does not cover the model, or None.
    """
    from hwprune.prune.coverage import check_coverage, unmeasured_layers

    for side in sides:
        on = f" (target {side.name})" if several else ""
        try:
            check_coverage(
                unmeasured_layers(side.predictor, net, input_shape),
                action,
                what=f"{type(net).__name__} at input {tuple(input_shape)}{on}",
                opt_in="`coverage_check='warn'`",
            )
        except ValueError as err:
            return str(err)
    return None


def unreachable_budget(
    sides: Sequence[TargetSide],
    net: nn.Module,
    input_shape: tuple[int, ...],
    budget: Budget,
    *,
    planner_options: Mapping[str, Any],
    ignored_layers: Sequence[str],
    min_channel_ratio: float,
) -> str | None:
    """Why a ``latency_ms`` budget lies below the smallest model the schedule may build, or None.

    Args:
        sides: Every target's side.
        net: The dense network.
        input_shape: The run's input shape.
        budget: The callback's budget (targets without an ms budget are skipped).
        planner_options: :func:`hwprune.prune.planner.plan_pruning`'s settings.
        ignored_layers: Layers whose output channels stay.
        min_channel_ratio: The channel floor, named in the message.

    Returns:
        The first unreachable target's message, or None.
    """
    for side in sides:
        ms = budget.ms_of(side.name)
        if ms is None:
            continue
        floor = smallest_latency_ms(
            side.predictor,
            net,
            side.shape(input_shape),
            planner_options=dict(planner_options),
            ignored_layers=ignored_layers,
        )
        try:
            check_reachable(ms, floor, side.predictor, min_channel_ratio)
        except ValueError as err:
            return str(err)
    return None

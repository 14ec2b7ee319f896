"""What :class:`~hwprune.callbacks.HardwareAwarePruning` resolves in ``setup`` (rank 0): the predictor it
plans with, the target it times on, and the smallest model its schedule may reach.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import warnings
from collections.abc import Sequence
from typing import Any

from torch import nn

from hwprune.callbacks._lightning import rank_zero_only
from hwprune.prune.graph import build_groups
from hwprune.prune.planner import plan_pruning
from hwprune.staircase import Predictor

log = logging.getLogger(__name__)

__all__ = [
    "check_reachable",
    "resolve_predictor",
    "resolve_target",
    "smallest_latency_ms",
    "warn_on_mismatch",
]


def resolve_predictor(arg: Any, net: nn.Module, input_shape: tuple[int, ...]) -> Predictor:
    """The predictor to plan with: loaded from a path, a copy of a fitted one, or built by a factory.

    The closed loop teaches the predictor (calibration, refits), so a fitted predictor is copied: the
    user's object is never changed.

    Args:
        arg: A path, a fitted predictor, or a callable ``(model, input_shape) -> predictor``.
        net: The dense network (for a factory).
        input_shape: The planned input shape.

    Returns:
        The predictor.
    """
    if isinstance(arg, str | os.PathLike):
        from hwprune.predict import LatencyPredictor

        return LatencyPredictor.load(arg)
    if hasattr(arg, "predict"):
        return copy.deepcopy(arg)  # type: ignore[no-any-return]
    return arg(net, input_shape)  # type: ignore[no-any-return]


def resolve_target(arg: Any, predictor: Any, verify: bool, batch: int) -> Any:
    """The :class:`~hwprune.measure.Target` to time end to end here, at the run's batch, or None.

    Args:
        arg: The callback's ``target`` (a Target, a catalogue name, or None for the predictor's
            ``target_``).
        predictor: The resolved predictor.
        verify: The callback's ``verify`` (False: nothing is timed).
        batch: The run's batch (``input_shape[0]``).

    Returns:
        The target, or None where it is unknown or cannot be timed in this process (logged).
    """
    from hwprune.measure import can_time_models, load_target

    arg = arg or getattr(predictor, "target_", None)
    if arg is None or not verify:
        return None
    try:
        target = load_target(arg)
    except ValueError as err:
        rank_zero_only(log.info)("target %r is not in the catalogue, so it is not timed here: %s", arg, err)
        return None
    if not can_time_models(target):
        rank_zero_only(log.info)(
            "target %s (backend %s) cannot be timed in this process: steps are planned open loop",
            target.name,
            target.backend,
        )
        return None
    return dataclasses.replace(target, batch=batch)


def _hardware_name(target: Any) -> str:
    from hwprune.measure import Backend

    backend = Backend.create(target.backend, target)
    try:
        backend.setup()
        return str(backend.hardware_name() or "")  # tables record the hardware's name, not the config's
    finally:
        backend.close()


def warn_on_mismatch(predictor: Any, target: Any, input_shape: Sequence[int]) -> None:
    """Warn when the predictor was fitted for another batch or another device than this run's.

    Args:
        predictor: The resolved predictor (its ``batches_`` and ``device_``, where it has them).
        target: The resolved target, or None (no device check).
        input_shape: The planned input shape.
    """
    batches = tuple(getattr(predictor, "batches_", ()) or ())
    if batches and input_shape[0] not in batches:
        warnings.warn(
            f"the predictor was fitted on batch {list(batches)}, but this run plans for batch "
            f"{input_shape[0]} (`input_shape`): latency does not scale linearly with the batch, "
            "so measure the layer space at the deployment batch",
            UserWarning,
            stacklevel=3,
        )
    fitted_on = str(getattr(predictor, "device_", "") or "")
    if target is None or not fitted_on or fitted_on == "unknown":
        return
    here = _hardware_name(target)
    if here and here != fitted_on:
        warnings.warn(
            f"the predictor was fitted on device {fitted_on!r}, but this run times target "
            f"{target.name!r} on {here!r}: its stairs may fall elsewhere here; the closed loop "
            "corrects the whole-model calibration, not the per-layer stairs",
            UserWarning,
            stacklevel=3,
        )


def smallest_latency_ms(
    predictor: Predictor,
    dense: nn.Module,
    input_shape: tuple[int, ...],
    *,
    planner_options: dict[str, Any],
    ignored_layers: Sequence[str],
) -> float:
    """Predicted latency of the smallest model the planner may reach from the dense one.

    Args:
        predictor: The predictor.
        dense: The dense network (copied; not changed).
        input_shape: The planned input shape.
        planner_options: The callback's keyword arguments of :func:`hwprune.prune.planner.plan_pruning`
            (snap, dense widths, minimum ratio); the importance is replaced by ``"l1"``.
        ignored_layers: Layers whose output channels stay.

    Returns:
        The predicted latency in ms of every prunable group at its minimum ratio, on friendly counts.
    """
    gm = build_groups(copy.deepcopy(dense), input_shape, ignored_layers)
    # A budget below any model: the planner goes as low as the minimum ratio and friendly counts allow.
    # Which channels stay does not change latency, and l1 needs no gradients.
    plan = plan_pruning(gm, predictor, input_shape, 1e-9, **{**planner_options, "importance": "l1"})
    return float(plan.latency_after_ms)


def check_reachable(
    latency_ms: float, floor_ms: float | None, predictor: Any, min_channel_ratio: float
) -> None:
    """``latency_ms`` must be reachable by the smallest model the schedule may build.

    Args:
        latency_ms: The callback's absolute budget.
        floor_ms: :func:`smallest_latency_ms`, or None when unknown (nothing to check).
        predictor: The predictor (its ``target_`` names the target in the message).
        min_channel_ratio: The callback's ``min_channel_ratio`` (named in the message).

    Raises:
        ValueError: If ``latency_ms`` is below ``floor_ms``.
    """
    if floor_ms is None or latency_ms >= floor_ms * (1.0 - 1e-6):
        return
    target = getattr(predictor, "target_", None) or "the predictor's target"
    raise ValueError(
        "`latency_ms` must be reachable: the smallest model the schedule may build (every prunable group "
        f"at `min_channel_ratio`={min_channel_ratio:g} of its width, on friendly counts) predicts "
        f"{floor_ms:.4g} ms on target {target!r}, got {latency_ms:g}; raise `latency_ms` to >= "
        f"{floor_ms:.4g}, lower `min_channel_ratio`, or give a `latency_ratio` instead"
    )

"""The targets of a verified prune step: each one's predictor, batch and the Target it is timed on here.

A :class:`TargetSide` is one target as the verify stage sees it; one target is a list of one. The functions
here resolve what a side needs before the first step (rank 0, in the callback's ``setup``): the Target to
time on (:func:`resolve_target`), the whole-model calibration a ``latency_ratio`` needs
(:func:`calibrate_for_run`), what the budget is a share of (:func:`budget_basis`), and the smallest model
the schedule may reach (:func:`smallest_latency_ms`, :func:`check_reachable`).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from hwprune.prune.graph import build_groups
from hwprune.prune.model_latency import predicted_latency
from hwprune.prune.planner import plan_pruning
from hwprune.staircase import Predictor

log = logging.getLogger(__name__)

RECALIBRATE_OFF_BY: float = 0.1
"""A calibrated predictor whose dense prediction is off the dense model measured here by more than this
share is calibrated again on this run's target (a file calibrated on another machine, or under load)."""

__all__ = [
    "RECALIBRATE_OFF_BY",
    "TargetSide",
    "batch_of",
    "budget_basis",
    "calibrate_for_run",
    "check_reachable",
    "dense_latencies",
    "resolve_target",
    "smallest_latency_ms",
    "warn_on_mismatch",
]


@dataclass
class TargetSide:
    """One target of a prune run, as resolved on rank 0 before the first step.

    Attributes:
        name: The target's name (a key of per-target budgets; the predictor's ``target_`` with one).
        predictor: Its predictor (the run's own copy: the closed loop teaches it).
        batch: The batch it runs (and is priced) at.
        timing: The :class:`~hwprune.measure.Target` to time on here, or None (planned open loop).
        dense_measured_ms: The dense model timed on ``timing`` before the first step, or None.
        basis: What a ``latency_ratio`` is a share of on this target, in words (:func:`budget_basis`).
    """

    name: str
    predictor: Predictor
    batch: int
    timing: Any = None
    dense_measured_ms: float | None = None
    basis: str = ""

    def shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """``input_shape`` at this target's batch."""
        return (int(self.batch), *(int(s) for s in input_shape[1:]))


def batch_of(arg: Any, batch: int) -> int:
    """The batch a target runs at: its factory's target batch, a predictor's only batch, else ``batch``."""
    target = getattr(arg, "target", None)
    tb = getattr(target, "batch", None)
    if isinstance(tb, int) and tb >= 1:
        return tb
    batches = tuple(getattr(arg, "batches_", ()) or ())
    if len(batches) == 1:
        return int(batches[0])
    return int(batch)


def dense_latencies(
    sides: Sequence[TargetSide], dense: nn.Module, input_shape: Sequence[int]
) -> dict[str, float]:
    """Each target's predicted latency of ``dense`` in ms, at its batch."""
    return {s.name: predicted_latency(s.predictor, dense, s.shape(input_shape)) for s in sides}


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
        log.info("target %r is not in the catalogue, so it is not timed here: %s", arg, err)
        return None
    if not can_time_models(target):
        log.info(
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


def calibrate_for_run(
    predictor: Any, target: Any, dense: nn.Module, input_shape: tuple[int, ...]
) -> float | None:
    """Time the dense model on ``target``; calibrate a predictor whose whole-model terms are missing or off.

    ``latency_ratio`` is a share of the dense model's *whole-model* latency whatever the predictor's source
    (a factory, an object, a ``.skops`` file). A predictor fitted on conv timings alone prices the convs'
    sum, which misses BatchNorm, activations, adds and launches (a third of the main job's model on a
    CPU); planned with it, 0.5 of the conv sum measured 0.34 of dense (issue 18). So where the target can
    be timed here, a predictor without whole-model terms (or whose dense prediction is more than
    :data:`RECALIBRATE_OFF_BY` off the measurement) is calibrated on the dense model and pruned variants of
    it (:func:`hwprune.verify.calibration.calibrate_on_target`) before the first plan.

    Args:
        predictor: The resolved predictor (the callback's own copy: calibrated in place).
        target: The :class:`~hwprune.measure.Target` timed here, or None (nothing is timed).
        dense: The dense network (not changed).
        input_shape: The planned input shape.

    Returns:
        The dense model's measured latency in ms, or None when ``target`` is None.
    """
    if target is None:
        return None
    import torch

    from hwprune.verify.calibration import calibrate_on_target
    from hwprune.verify.stopwatch import time_against_dense

    threads = torch.get_num_threads()
    try:
        can_calibrate = hasattr(predictor, "calibrate")
        if can_calibrate and not getattr(predictor, "calibrated", False):
            log.info(
                "the predictor has no whole-model terms: calibrating it on target %s (the dense model and "
                "pruned variants, timed end to end), so that the budget is a share of the whole model",
                target.name,
            )
            return float(calibrate_on_target(predictor, target, dense, input_shape)[0][1])
        dense_t, _ = time_against_dense(target, dense, [], input_shape)
        predicted = predicted_latency(predictor, dense, input_shape)
        off = abs(predicted / dense_t.median_ms - 1.0)
        if can_calibrate and off > RECALIBRATE_OFF_BY:
            log.warning(
                "the predictor prices the dense model at %.4g ms, the target %s measures %.4g ms (%.0f%% "
                "off): calibrating its whole-model terms again here",
                predicted,
                target.name,
                dense_t.median_ms,
                100 * off,
            )
            return float(calibrate_on_target(predictor, target, dense, input_shape)[0][1])
        return float(dense_t.median_ms)
    finally:
        torch.set_num_threads(threads)


def budget_basis(
    predictor: Any, target: Any, latency_ratio: float | None, dense_measured_ms: float | None
) -> str:
    """What ``latency_ratio`` is a share of in this run, in words (logged in ``setup``, kept in the report).

    Args:
        predictor: The resolved predictor.
        target: The target timed here, or None.
        latency_ratio: The callback's ratio, or None (a budget in ms).
        dense_measured_ms: The dense model measured here (:func:`calibrate_for_run`), or None.

    Returns:
        The sentence.
    """
    if latency_ratio is None:
        return "the budget is in ms" + (
            " and judged on the target's measurement" if target is not None else " of predicted latency"
        )
    if target is not None and dense_measured_ms is not None:
        return (
            f"latency_ratio={latency_ratio:g} is a share of the dense model's whole-model latency measured "
            f"on target {target.name} ({dense_measured_ms:.4g} ms here); each step is judged on its measured "
            "share of dense, timed in the same rounds"
        )
    name = getattr(predictor, "target_", None) or "the predictor's target"
    if getattr(predictor, "calibrated", False):
        return (
            f"latency_ratio={latency_ratio:g} is a share of the dense model's predicted whole-model latency "
            f"on {name!r} (calibrated end to end where the predictor was made); the target cannot be timed "
            "in this process, so nothing here checks it"
        )
    return (
        f"latency_ratio={latency_ratio:g} is a share of the predicted sum of the dense model's convs on "
        f"{name!r}: the predictor has no whole-model terms and the target cannot be timed in this process, "
        "so BatchNorm, activations, adds and launches are not in it; calibrate the predictor on the target "
        "(hwprune.verify.calibration.calibrate_on_target) for a share of the whole model"
    )

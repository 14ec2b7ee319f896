"""Checks of :class:`~hwprune.callbacks.HardwareAwarePruning`: its arguments, and the run it joins.

The constructor checks every argument (:func:`check_arguments`), failing fast with the argument's name and
the valid choices, as Lightning's callbacks do. At run time the schedule is checked against
``max_epochs`` (:func:`check_schedule`), the first training batch against ``input_shape``
(:func:`check_batch_shape`), and a monitored metric that is never logged is reported
(:func:`missing_monitor`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from hwprune.callbacks._lightning import rank_zero_only
from hwprune.options import IMPORTANCE_KINDS, SNAP_MODES
from hwprune.prune.bundle import EXPORT_FORMATS

log = logging.getLogger(__name__)

__all__ = ["check_arguments", "check_batch_shape", "check_schedule", "first_image_batch", "missing_monitor"]

CHECK_ACTIONS: tuple[str, ...] = ("raise", "warn")
SNAPS: tuple[str | None, ...] = (*SNAP_MODES, None)
ROLLBACKS: tuple[str | None, ...] = ("stop", "shrink", None)
EXPORTS: tuple[str | None, ...] = (*EXPORT_FORMATS, None)
ARGUMENTS = frozenset(
    {
        "predictor",
        "latency_ratio",
        "latency_ms",
        "start_epoch",
        "prune_every_n_epochs",
        "num_steps",
        "importance",
        "snap",
        "monitor",
        "mode",
        "max_accuracy_drop",
        "rollback",
        "ignored_layers",
        "min_channel_ratio",
        "export",
        "model_attr",
        "closed_loop_rounds",
        "strict",
        "schedule_check",
        "shape_check",
        "coverage_check",
        "target",
    }
)
"""The constructor arguments that :func:`check_arguments` checks (``input_shape`` has its own check)."""


def _is_int_at_least(value: Any, low: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= low


def _check_predictor(predictor: Any) -> None:
    if isinstance(predictor, Mapping):  # several targets: each value is one target's predictor
        for value in predictor.values():
            _check_predictor(value)
        return
    if isinstance(predictor, str | os.PathLike):
        if not Path(predictor).exists():
            raise FileNotFoundError(f"`predictor` path {predictor} does not exist")
    elif not (hasattr(predictor, "predict") or callable(predictor)):
        raise ValueError(
            "`predictor` must be a fitted predictor (with .predict), the path of a saved one, or a "
            f"callable (model, input_shape) -> predictor, got {type(predictor).__name__}"
        )


def _check_budget_and_schedule(a: Mapping[str, Any]) -> None:
    from hwprune.verify.budget import Budget

    predictor = a["predictor"]
    names = [str(k) for k in predictor] if isinstance(predictor, Mapping) else None
    if names is not None:
        _check_targets(names, a["target"])
    Budget.parse(a["latency_ratio"], a["latency_ms"], names)
    for name, low in (("start_epoch", 0), ("prune_every_n_epochs", 1), ("num_steps", 1)):
        if not _is_int_at_least(a[name], low):
            raise ValueError(f"`{name}` must be an int >= {low}, got {a[name]!r}")
    if not _is_int_at_least(a["closed_loop_rounds"], 0):
        raise ValueError(f"`closed_loop_rounds` must be an int >= 0, got {a['closed_loop_rounds']!r}")
    ratio_min = a["min_channel_ratio"]
    if not isinstance(ratio_min, int | float) or not 0.0 < ratio_min <= 1.0:
        raise ValueError(f"`min_channel_ratio` must be a fraction in (0, 1], got {ratio_min!r}")


def _check_targets(names: list[str], target: Any) -> None:
    """Several targets: ``predictor`` names at least one, and ``target`` is None or names the same ones."""
    if not names:
        raise ValueError("`predictor` must name at least one target, got an empty mapping")
    if target is None:
        return
    if not isinstance(target, Mapping):
        raise ValueError(
            f"`target` must be None or a mapping of target name -> target when `predictor` names several "
            f"targets, got {type(target).__name__}"
        )
    if sorted(str(k) for k in target) != sorted(names):
        raise ValueError(f"`target` must name the same targets as `predictor` ({names}), got {list(target)}")


def _check_choices(a: Mapping[str, Any]) -> None:
    imp = a["importance"]
    if isinstance(imp, str) and imp not in IMPORTANCE_KINDS:
        raise ValueError(f"`importance` must be any of {IMPORTANCE_KINDS}, got {imp!r}")
    if not isinstance(imp, str) and not callable(imp):
        raise ValueError(
            "`importance` must be a name, a Torch-Pruning Importance or a callable (group -> scores), got "
            f"{type(imp).__name__}"
        )
    for name, choices in (
        ("snap", SNAPS),
        ("mode", ("max", "min")),
        ("rollback", ROLLBACKS),
        ("export", EXPORTS),
        ("schedule_check", CHECK_ACTIONS),
        ("shape_check", CHECK_ACTIONS),
        ("coverage_check", CHECK_ACTIONS),
    ):
        if a[name] not in choices:
            raise ValueError(f"`{name}` must be any of {choices}, got {a[name]!r}")
    if not isinstance(a["monitor"], str) or not a["monitor"]:
        raise ValueError(f"`monitor` must be a non-empty metric name, got {a['monitor']!r}")
    drop = a["max_accuracy_drop"]
    if drop is not None and not (isinstance(drop, int | float) and drop >= 0):
        raise ValueError(f"`max_accuracy_drop` must be a number >= 0 or None, got {drop!r}")
    if a["rollback"] is not None and drop is None:
        raise ValueError(f"`rollback={a['rollback']!r}` needs `max_accuracy_drop` (the tolerance), got None")
    ignored = a["ignored_layers"]
    if isinstance(ignored, str) or not all(isinstance(n, str) for n in ignored):
        raise ValueError(f"`ignored_layers` must be a sequence of module names, got {ignored!r}")
    if a["model_attr"] is not None and not isinstance(a["model_attr"], str):
        raise ValueError(f"`model_attr` must be an attribute name, '' or None, got {a['model_attr']!r}")
    if not isinstance(a["strict"], bool):
        raise ValueError(f"`strict` must be a bool, got {a['strict']!r}")


def check_arguments(**arguments: Any) -> None:
    """Check :class:`~hwprune.callbacks.HardwareAwarePruning`'s arguments (all but ``input_shape``).

    Args:
        **arguments: The constructor's arguments, by name.

    Raises:
        FileNotFoundError: If ``predictor`` is a path that does not exist.
        ValueError: For the first invalid argument, naming it, what it must be, and the value given (the
            list is in :class:`~hwprune.callbacks.HardwareAwarePruning`'s ``Raises``).
    """
    _check_predictor(arguments["predictor"])
    _check_budget_and_schedule(arguments)
    _check_choices(arguments)


def check_schedule(
    max_epochs: int | None, start_epoch: int, every: int, num_steps: int, action: str, fast_dev_run: Any
) -> None:
    """Raise (``action="raise"``) or warn when the schedule's last step starts at or after ``max_epochs``.

    Args:
        max_epochs: The Trainer's ``max_epochs`` (None or < 0: unbounded, nothing to check).
        start_epoch: The first step's epoch.
        every: Epochs between steps.
        num_steps: The number of steps.
        action: ``"raise"`` or ``"warn"``.
        fast_dev_run: The Trainer's ``fast_dev_run`` (a dev run only warns).

    Raises:
        ValueError: If a step would never run and ``action`` is ``"raise"``.
    """
    if max_epochs is None or max_epochs < 0:
        return
    epochs = [start_epoch + i * every for i in range(num_steps)]
    missed = [e for e in epochs if e >= max_epochs]
    if not missed:
        return
    msg = (
        f"`max_epochs` must be >= {epochs[-1] + 1} for the pruning schedule (num_steps={num_steps} "
        f"from start_epoch={start_epoch}, every {every} epoch(s): steps at epochs {epochs}), got "
        f"{max_epochs}: {len(missed)} of {num_steps} step(s) would never run and the budget would not be "
        "met; raise `max_epochs`, lower `num_steps`, `start_epoch` or `prune_every_n_epochs`, or pass "
        "`schedule_check='warn'`"
    )
    if action == "raise" and not fast_dev_run:
        raise ValueError(msg)
    rank_zero_only(log.warning)("%s", msg)


def first_image_batch(batch: Any) -> torch.Tensor | None:
    """The first 4-D tensor in a batch (a tensor, or a tuple/list/dict of them, as Lightning passes).

    Example:
        >>> first_image_batch((torch.zeros(2, 1, 4, 4), torch.zeros(2))).shape
        torch.Size([2, 1, 4, 4])
    """
    if isinstance(batch, torch.Tensor):
        return batch if batch.dim() == 4 else None
    items = batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, list | tuple) else ()
    for item in items:
        found = first_image_batch(item)
        if found is not None:
            return found
    return None


def check_batch_shape(batch: Any, input_shape: Sequence[int], action: str) -> bool:
    """Compare a training batch's C, H, W with ``input_shape`` (the plan's input).

    Args:
        batch: The batch as Lightning passes it.
        input_shape: The callback's ``(N, C, H, W)``.
        action: ``"raise"`` or ``"warn"`` on a mismatch.

    Returns:
        Whether the batch held an image tensor (and so was checked).

    Raises:
        ValueError: On a mismatch with ``action="raise"``.
    """
    x = first_image_batch(batch)
    if x is None:
        return False
    got = tuple(int(s) for s in x.shape[1:])
    want = tuple(input_shape[1:])
    if got == want:
        return True
    msg = (
        f"`input_shape` must match the data's C, H, W: the plan is for {want} (input_shape="
        f"{tuple(input_shape)}) but the first training batch is {got} (batch shape {tuple(x.shape)}); pass "
        f"`input_shape=({input_shape[0]}, {', '.join(map(str, got))})`, or `shape_check='warn'` if the "
        "deployed input differs from the training input on purpose"
    )
    if action == "raise":
        raise ValueError(msg)
    rank_zero_only(log.warning)("%s", msg)
    return True


def missing_monitor(monitor: str, logged: Sequence[Any], strict: bool, warned: bool) -> bool:
    """Follow ``EarlyStopping``: a ``monitor`` that is never logged must not pass silently.

    Args:
        monitor: The metric's name.
        logged: The keys of ``trainer.callback_metrics``.
        strict: Raise (True) or warn once (False).
        warned: Whether the warning was already given.

    Returns:
        Whether the warning has been given (now or before).

    Raises:
        RuntimeError: If ``strict``; the message lists the logged keys.
    """
    names = sorted(str(k) for k in logged)
    msg = f"`monitor` must be a metric the module logs, got {monitor!r}; logged metrics: {names}"
    if strict:
        raise RuntimeError(
            f"{msg}. Pass monitor=<one of them>, or strict=False to prune without the accuracy check"
        )
    if not warned:
        rank_zero_only(log.warning)(
            "%s; strict=False: the accuracy check and rollback are off until it is logged", msg
        )
    return True

"""One stopwatch: how every whole-model check in hwprune times a model against the dense one.

The per-step check of the closed loop (:func:`hwprune.verify.loop.plan_and_verify`), the final check
of :class:`~hwprune.callbacks.HardwareAwarePruning` (:func:`hwprune.verify.report.measured_latency`),
the several-target checks and ``benchmarks.main_job``'s standalone timing of the saved model all call
:func:`time_against_dense` with :data:`STOPWATCH`: the same rounds, the same sample length, and the dense
model timed in the same interleaved rounds. A budget given as a share of the dense latency is then judged on
the per-round ratio model / dense (:func:`share_of_dense`), which a burst of load on a shared machine moves
far less than either time alone: a run whose last check fell in a busy minute no longer reads "NOT met" for
a model its per-step check called "met" (issue 18: 0.3215 ms "met" per step, 0.3435 ms "NOT met" at the end,
0.326-0.334 ms standalone, all of a model 0.47-0.51 of dense).

Example:
    >>> shape = (1, 1, 28, 28)
    >>> dense_t, (pruned_t,) = time_against_dense("cpu_torch", dense, [pruned], shape)  # doctest: +SKIP
    >>> judge(pruned_t, dense_t, latency_ratio=0.5).met  # doctest: +SKIP
    True
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from hwprune.measure.evaluator import EvaluatorConfig, summarize
from hwprune.staircase import SLOWDOWN_TOLERANCE

__all__ = [
    "MET_TOLERANCE",
    "NOISY_SPREAD",
    "STOPWATCH",
    "Stopwatch",
    "Verdict",
    "judge",
    "share_of_dense",
    "time_against_dense",
]

NOISY_SPREAD: float = 0.2
"""A whole-model timing whose IQR over the rounds exceeds this share of its median is noisy (a shared
machine under load): :func:`time_against_dense` times again, a verdict on it says so, and the closed loop
does not calibrate on it."""

MET_TOLERANCE: float = SLOWDOWN_TOLERANCE
"""A measured model meets its budget when it is at most this share above it (5%): the tolerance every
"met" in hwprune states, the same as the one that calls a layer or a step *slower*."""


@dataclass(frozen=True)
class Stopwatch:
    """The settings of every whole-model check: rounds, and each round's sample.

    Each round takes one sample of every model (dense first): ``evaluator.warmup`` untimed runs, then
    ``evaluator.repeat`` samples of at least ``evaluator.min_repeat_ms`` each, whose median is the round's
    value; a model's latency is the median over ``rounds`` rounds and its spread their IQR. With the
    defaults a model runs about ``5 * (1 + 3 * 50 ms)`` of forward passes, 0.75 s of a small network.

    Args:
        rounds: Interleaved rounds (>= 1).
        evaluator: Each round's sample.
        tolerance: Share above a budget that still counts as met (>= 0).
        retries: Times a comparison with a timing spread over :data:`NOISY_SPREAD` is timed again (>= 0);
            the steadiest attempt is kept.

    Raises:
        ValueError: If ``rounds`` < 1, ``tolerance`` < 0 or ``retries`` < 0.

    Example:
        >>> Stopwatch().rounds
        5
    """

    rounds: int = 5
    evaluator: EvaluatorConfig = field(
        default_factory=lambda: EvaluatorConfig(warmup=1, number=1, repeat=3, min_repeat_ms=50.0)
    )
    tolerance: float = MET_TOLERANCE
    retries: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or self.rounds < 1:
            raise ValueError(f"`rounds` must be an int >= 1, got {self.rounds!r}")
        if not (isinstance(self.tolerance, int | float) and self.tolerance >= 0):
            raise ValueError(f"`tolerance` must be a share >= 0, got {self.tolerance!r}")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"`retries` must be an int >= 0, got {self.retries!r}")

    def describe(self) -> str:
        """The settings in words, for reports."""
        e = self.evaluator
        return (
            f"median of {self.rounds} interleaved rounds with the dense model (each round: {e.warmup} "
            f"warm-up, median of {e.repeat} samples of >= {e.min_repeat_ms:g} ms)"
        )


STOPWATCH = Stopwatch()
"""The one setting of every whole-model check (closed loop, final check, several targets, main job)."""


def time_against_dense(
    target: Any,
    dense: nn.Module,
    models: Sequence[nn.Module],
    input_shape: Sequence[int],
    *,
    stopwatch: Stopwatch = STOPWATCH,
) -> tuple[Any, list[Any]]:
    """Time ``models`` on ``target`` in the same interleaved rounds as ``dense`` (timed first each round).

    A model that *is* ``dense`` (the first prune step's current model) is timed once and shares its timing.

    Args:
        target: A :class:`~hwprune.measure.Target` or catalogue name that times whole models here
            (:func:`hwprune.measure.can_time_models`).
        dense: The dense network.
        models: The networks to compare with it.
        input_shape: Input shape including the deployment batch.
        stopwatch: The settings (default: :data:`STOPWATCH`, the one every check uses).

    Returns:
        ``(dense timing, [timing of each model])`` as :class:`~hwprune.measure.model_timing.ModelTiming`.

    Example:
        >>> d, (p,) = time_against_dense("cpu_torch", dense, [pruned], (1, 1, 28, 28))  # doctest: +SKIP
    """
    from hwprune.measure.model_timing import time_models

    unique: list[nn.Module] = [dense]
    index: list[int] = []
    for m in models:
        for i, u in enumerate(unique):
            if m is u:
                index.append(i)
                break
        else:
            unique.append(m)
            index.append(len(unique) - 1)

    def worst(ts: Sequence[Any]) -> float:
        return max(t.spread for t in ts)

    settings = {"rounds": stopwatch.rounds, "evaluator": stopwatch.evaluator}
    timings = time_models(target, unique, input_shape, **settings)
    for _ in range(stopwatch.retries):
        # Load on a shared machine comes in bursts: a comparison timed through one is timed again, and the
        # steadiest attempt kept (issue 18: a final check with dense at 1.39 ms, IQR 0.69, called "met").
        if worst(timings) <= NOISY_SPREAD:
            break
        again = time_models(target, unique, input_shape, **settings)
        if worst(again) < worst(timings):
            timings = again
    return timings[0], [timings[i] for i in index]


def share_of_dense(model: Any, dense: Any) -> tuple[float, float]:
    """Median and IQR of the per-round ratio ``model / dense`` (rounds are paired in time).

    Args:
        model: The model's :class:`~hwprune.measure.model_timing.ModelTiming`.
        dense: The dense model's, from the same rounds.

    Returns:
        ``(median share, IQR of the shares)``.

    Example:
        >>> from hwprune.measure.model_timing import ModelTiming
        >>> share_of_dense(ModelTiming(1.0, 0.0, (1.0, 1.2, 0.9)), ModelTiming(2.0, 0.0, (2.0, 2.4, 1.8)))
        (0.5, 0.0)
    """
    ratios = [m / d for m, d in zip(model.rounds_ms, dense.rounds_ms, strict=True) if d > 0]
    if not ratios:
        return float("inf"), 0.0
    return float(statistics.median(ratios)), float(summarize(ratios, 1).iqr_ms)


@dataclass(frozen=True)
class Verdict:
    """Whether a measured model meets its budget, and on what figures.

    Attributes:
        met: Whether it is within the budget plus ``tolerance``.
        measured_ms: The model's median latency.
        spread_ms: Its IQR over the rounds.
        budget_ms: The budget in ms (a share budget: the share of the dense median from the same rounds).
        tolerance: The tolerance applied.
        share: The model's per-round share of dense (median), or None without a dense timing.
        share_spread: The IQR of those shares, or None.
        latency_ratio: The budget as a share of dense, or None for a budget in ms.
        dense_ms: The dense median from the same rounds, or None.
        dense_spread_ms: Its IQR, or None.
        noisy: Whether a timing it rests on spread over :data:`NOISY_SPREAD` (the machine was busy): the
            verdict says so, and should be measured again on a quieter machine.
    """

    met: bool
    measured_ms: float
    spread_ms: float
    budget_ms: float
    tolerance: float
    share: float | None = None
    share_spread: float | None = None
    latency_ratio: float | None = None
    dense_ms: float | None = None
    dense_spread_ms: float | None = None
    noisy: bool = False

    def describe(self) -> str:
        """The verdict in words: ``met: measured ... <= ...`` or ``NOT met: ...``, with the spreads."""
        text = self._describe()
        if self.noisy:
            text += (
                f" [noisy: a timing spread over {NOISY_SPREAD:.0%} of its median after re-timing; the "
                "machine was busy, measure again on a quieter one]"
            )
        return text

    def _describe(self) -> str:
        word = "met" if self.met else "NOT met"
        cmp = "<=" if self.met else ">"
        if self.latency_ratio is not None and self.share is not None and self.dense_ms is not None:
            return (
                f"{word}: measured {self.measured_ms:.4f} ms (IQR {self.spread_ms:.4f}) = "
                f"{self.share:.3f} (IQR {self.share_spread or 0.0:.3f}) of dense {self.dense_ms:.4f} ms "
                f"(IQR {self.dense_spread_ms or 0.0:.4f}) in the same rounds, {cmp} latency_ratio "
                f"{self.latency_ratio:g} + {self.tolerance:.0%} tolerance"
            )
        return (
            f"{word}: measured {self.measured_ms:.4f} ms (IQR {self.spread_ms:.4f}) {cmp} budget "
            f"{self.budget_ms:.4f} ms + {self.tolerance:.0%} tolerance"
        )


def judge(
    model: Any,
    dense: Any | None = None,
    *,
    latency_ratio: float | None = None,
    budget_ms: float | None = None,
    tolerance: float = MET_TOLERANCE,
) -> Verdict:
    """Judge a measured model against a budget: a share of dense (from the same rounds) or ms.

    Args:
        model: The model's :class:`~hwprune.measure.model_timing.ModelTiming`.
        dense: The dense model's timing from the same rounds (needed for ``latency_ratio``).
        latency_ratio: The budget as a share of the dense latency.
        budget_ms: The budget in ms (used when ``latency_ratio`` is None).
        tolerance: Share above the budget that still counts as met.

    Returns:
        The :class:`Verdict`.

    Raises:
        ValueError: If neither budget is given, or ``latency_ratio`` is given without ``dense``.

    Example:
        >>> from hwprune.measure.model_timing import ModelTiming
        >>> judge(ModelTiming(0.3, 0.01, (0.3,)), budget_ms=0.29).met
        True
    """
    share = share_spread = None
    if dense is not None:
        share, share_spread = share_of_dense(model, dense)
    if latency_ratio is not None:
        if dense is None or share is None:
            raise ValueError(
                "`dense` must be the dense model's timing from the same rounds for `latency_ratio`"
            )
        met = share <= latency_ratio * (1.0 + tolerance)
        budget = latency_ratio * dense.median_ms
    elif budget_ms is not None:
        met = model.median_ms <= budget_ms * (1.0 + tolerance)
        budget = float(budget_ms)
    else:
        raise ValueError("one of `latency_ratio` and `budget_ms` must be given, got neither")
    return Verdict(
        met=bool(met),
        measured_ms=float(model.median_ms),
        spread_ms=float(model.iqr_ms),
        budget_ms=float(budget),
        tolerance=float(tolerance),
        share=share,
        share_spread=share_spread,
        latency_ratio=None if latency_ratio is None else float(latency_ratio),
        dense_ms=None if dense is None else float(dense.median_ms),
        dense_spread_ms=None if dense is None else float(dense.iqr_ms),
        noisy=max(model.spread, dense.spread if dense is not None else 0.0) > NOISY_SPREAD,
    )

"""How a single configuration is timed: settings and the timing loop shared by the in-process backends."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from hwprune.measure.contention import check_max_slowdown

__all__ = ["EvaluatorConfig", "Timing", "time_callable"]


@dataclass(frozen=True)
class EvaluatorConfig:
    """Measurement settings, after TVM MetaSchedule's ``EvaluatorConfig``.

    The operation really runs ``warmup + number_cal + repeat * number_eff`` times, where ``number_cal``
    (at most a few runs) times one run to calibrate, and ``number_eff = max(number, ceil(min_repeat_ms /
    t_one_run))`` is capped at ``max_number``. Each of the ``repeat`` samples is the mean time of
    ``number_eff`` back-to-back runs; the table keeps the median of the samples as ``latency_ms``, their
    inter-quartile range as ``latency_spread_ms`` and ``repeat`` as ``repeats``.

    Args:
        warmup: Untimed runs first (allocations, autotuning such as ``cudnn.benchmark``, caches).
        number: Minimum runs per sample.
        repeat: Samples per configuration (>= 3, so the IQR means something).
        min_repeat_ms: Each sample lasts at least this long; raises ``number`` for fast layers.
        max_number: Cap on runs per sample.
        max_rel_spread: A row whose IQR exceeds this fraction of its median is noisy (an idle machine
            gives ~0.5%; two busy loops on 2 cores gave a median of 57%). :func:`hwprune.measure.measure`
            times a noisy configuration again, up to ``retime`` more times (each a full
            ``warmup + number_cal + repeat * number_eff`` runs), keeps the least noisy timing, and marks
            the row ``noisy`` in its ``settings`` if every timing stayed noisy.
        retime: Extra timings of a noisy configuration (>= 0).
        max_slowdown: A timing that the timing thread's waits for a CPU stretched by more than this factor
            is contended (a busy neighbour slows every sample alike, so its spread stays small): the row
            is marked ``contended`` in its ``settings`` and counted (:mod:`hwprune.measure.contention`).

    Raises:
        ValueError: If a count is out of range.

    Example:
        >>> EvaluatorConfig(warmup=2, number=1, repeat=5, min_repeat_ms=10.0).repeat
        5
    """

    warmup: int = 3
    number: int = 1
    repeat: int = 7
    min_repeat_ms: float = 20.0
    max_number: int = 10_000
    max_rel_spread: float = 0.10
    retime: int = 2
    max_slowdown: float = 1.15

    def __post_init__(self) -> None:
        if self.warmup < 0:
            raise ValueError(f"`warmup` must be >= 0, got {self.warmup}")
        if self.number < 1:
            raise ValueError(f"`number` must be >= 1, got {self.number}")
        if self.repeat < 3:
            raise ValueError(f"`repeat` must be >= 3 so the IQR is defined, got {self.repeat}")
        if self.min_repeat_ms < 0:
            raise ValueError(f"`min_repeat_ms` must be >= 0, got {self.min_repeat_ms}")
        if self.max_number < self.number:
            raise ValueError(f"`max_number` must be >= `number` ({self.number}), got {self.max_number}")
        if not self.max_rel_spread > 0:
            raise ValueError(f"`max_rel_spread` must be a fraction > 0, got {self.max_rel_spread}")
        if self.retime < 0:
            raise ValueError(f"`retime` must be >= 0, got {self.retime}")
        check_max_slowdown(self.max_slowdown)

    def runs_per_sample(self, one_run_ms: float) -> int:
        """``number_eff`` for an operation that takes ``one_run_ms`` per run."""
        if one_run_ms <= 0:
            return self.max_number
        need = int(-(-self.min_repeat_ms // one_run_ms))
        return int(min(self.max_number, max(self.number, need)))


@dataclass(frozen=True)
class Timing:
    """One configuration's timing: median and IQR of the samples, in ms.

    Attributes:
        median_ms: Median over samples of the mean time per run.
        iqr_ms: Inter-quartile range of the samples.
        repeats: Number of samples.
        number: Runs per sample.
        samples_ms: The samples.
    """

    median_ms: float
    iqr_ms: float
    repeats: int
    number: int
    samples_ms: tuple[float, ...]


def summarize(samples_ms: list[float], number: int) -> Timing:
    """Median and IQR of ``samples_ms`` (exclusive quartiles, as numpy's default would be close to)."""
    s = sorted(samples_ms)
    q = statistics.quantiles(s, n=4, method="inclusive") if len(s) >= 2 else [s[0], s[0], s[0]]
    return Timing(statistics.median(s), max(0.0, q[2] - q[0]), len(s), number, tuple(samples_ms))


def time_callable(
    fn: Callable[[], object],
    cfg: EvaluatorConfig,
    *,
    sync: Callable[[], None] | None = None,
    timer: Callable[[Callable[[], object], int], float] | None = None,
) -> Timing:
    """Time ``fn`` following ``cfg``.

    Args:
        fn: The operation; its result is ignored.
        cfg: Measurement settings.
        sync: Called after each batch of runs before reading the clock (e.g. ``torch.cuda.synchronize``).
        timer: ``timer(fn, n) -> ms`` for ``n`` runs, replacing the wall clock (CUDA events use this).

    Returns:
        The :class:`Timing`.

    Example:
        >>> time_callable(lambda: sum(range(100)), EvaluatorConfig(1, 1, 3, 0.1)).median_ms > 0
        True
    """

    def wall(f: Callable[[], object], n: int) -> float:
        t0 = time.perf_counter_ns()
        for _ in range(n):
            f()
        if sync is not None:
            sync()
        return (time.perf_counter_ns() - t0) / 1e6

    clock = timer or wall
    for _ in range(cfg.warmup):
        fn()
    if sync is not None:
        sync()
    one = clock(fn, 1)
    number = cfg.runs_per_sample(one)
    samples = [clock(fn, number) / number for _ in range(cfg.repeat)]
    return summarize(samples, number)

"""Contention: was the timing thread kept waiting for a CPU while it measured?

A busy neighbour on a shared machine slows every sample of a timing alike, so the spread test of
:func:`hwprune.measure.measure` (IQR / median) cannot see it: beside two busy loops on this 2-core VM a
1-thread conv ran 2-3x slower with a spread under 5%. What does see it is the kernel's own account of the
timing thread: ``/proc/thread-self/schedstat`` holds the time the thread spent *runnable but waiting in a
run queue*. While a thread computes, its wall time is its CPU time plus that wait, so

    slowdown = wall / (wall - waited)

is the factor by which the timing was stretched by other processes. It needs no idle reference (an
already-loaded machine is seen as loaded from the first row), it is measured in the same thread and span
as the timing itself, and a thread that sleeps while a remote device times (TVM over RPC) accrues almost
no wait, so a busy host does not taint a board's rows. Measured here (2026-12, torch 1 thread, a 16->32
3x3 conv at 14x14, 0.3 s spans): idle 1.00-1.03x; beside two busy loops 2.05-2.99x while the conv's
latency rose 2.2-3.2x; a sleeping thread beside the same loops 1.02x.

The slowdown is a lower bound of how far the latencies are off: waiting is not the only cost of a
neighbour. In ``hwprune measure --model small_resnet --step 16`` beside two spinning loops, the first 40
rows were 2.15x slower (median) than the same configs timed minutes later without the loops, while their
run-queue slowdown was 1.62x: a neighbour on the same core (SMT sibling, shared caches) slows a thread
that is running as well. Hence "at least" in :meth:`ContentionSummary.describe`.

A reference kernel timed before and after was tried as well and left out: a 3 ms pure-Python kernel
fits inside one scheduler slice, so beside two busy loops its median wall time did not rise (2.94 ms, idle
3.74 ms on the same machine); only spans of hundreds of ms see the sharing, and the timing itself is such a
span. The load average is recorded in the table's sidecar (``load_start``/``load_end``), but it counts this
process too and cannot say which rows were hit.

Where the kernel keeps no schedstat (not Linux, or a kernel without ``CONFIG_SCHED_INFO``) the wait is
unknown: rows carry no contention mark, and :class:`ContentionSummary` says the method was unavailable.

Example:
    >>> with watch() as span:
    ...     _ = sum(range(10_000))
    >>> span.slowdown is None or span.slowdown >= 1.0
    True
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_SLOWDOWN",
    "ContentionSummary",
    "Span",
    "contended_rows",
    "run_queue_wait_s",
    "summarize_contention",
    "warn_on_table",
    "watch",
]

DEFAULT_MAX_SLOWDOWN: float = 1.15
"""A timing stretched more than this by waiting for a CPU is contended. Idle spans here gave 1.00-1.03x,
two busy loops 2-3x; 1.15 leaves room for the odd daemon and still flags one busy neighbour on 2 cores."""

_SCHEDSTAT = Path("/proc/thread-self/schedstat")


def run_queue_wait_s() -> float | None:
    """This thread's total time spent runnable but waiting for a CPU, in seconds; None if unknown.

    Example:
        >>> w = run_queue_wait_s()
        >>> w is None or w >= 0.0
        True
    """
    try:
        fields = _SCHEDSTAT.read_text().split()
        return int(fields[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


@dataclass
class Span:
    """One measured span of the timing thread: wall time and run-queue wait (filled in by :func:`watch`).

    Attributes:
        wall_s: Wall time of the span.
        waited_s: Time the thread waited for a CPU within it, or None where the kernel does not say.
    """

    wall_s: float = 0.0
    waited_s: float | None = None

    @property
    def slowdown(self) -> float | None:
        """``wall / (wall - waited)``: how much other processes stretched the span (1.0: not at all)."""
        if self.waited_s is None or self.wall_s <= 0:
            return None
        busy = self.wall_s - self.waited_s
        return self.wall_s / busy if busy > 0 else float("inf")


@contextmanager
def watch() -> Iterator[Span]:
    """Measure the wall time and run-queue wait of the code in the ``with`` block (this thread only).

    Yields:
        A :class:`Span`, filled in when the block ends.
    """
    span = Span()
    w0 = run_queue_wait_s()
    t0 = time.perf_counter()
    try:
        yield span
    finally:
        span.wall_s = time.perf_counter() - t0
        w1 = run_queue_wait_s()
        span.waited_s = None if w0 is None or w1 is None else max(0.0, w1 - w0)


def check_max_slowdown(max_slowdown: float) -> float:
    """Validate a contention threshold.

    Raises:
        ValueError: If ``max_slowdown`` is not a number > 1.

    Example:
        >>> check_max_slowdown(1.15)
        1.15
    """
    if isinstance(max_slowdown, bool) or not isinstance(max_slowdown, int | float) or not max_slowdown > 1.0:
        raise ValueError(
            f"`max_slowdown` must be a factor > 1 (1.15: a timing stretched by 15% waiting for a CPU is "
            f"contended), got {max_slowdown!r}"
        )
    return float(max_slowdown)


@dataclass(frozen=True)
class ContentionSummary:
    """What the timing thread's waits say about a set of timings (a sweep's rows, a model's rounds).

    Attributes:
        timings: Timings looked at.
        contended: How many were stretched by more than ``max_slowdown``.
        max_slowdown: The threshold.
        median_slowdown: Median slowdown of the contended ones (None when none was).
        worst_slowdown: Largest slowdown of any timing (None when the wait is unknown).
        method: ``"run-queue wait"``, or ``"unavailable"`` where the kernel keeps no schedstat.
    """

    timings: int
    contended: int
    max_slowdown: float
    median_slowdown: float | None
    worst_slowdown: float | None
    method: str

    def describe(self, what: str = "rows") -> str:
        """One sentence: how many timings were contended and by how much their latencies are off.

        Example:
            >>> summarize_contention([1.0, 2.0, 2.5], 1.15).describe()[:60]
            '2 of 3 rows were measured under contention: the timing threa'
        """
        if self.method == "unavailable":
            return (
                f"contention of these {self.timings} {what} unknown (the kernel gives no run-queue wait here)"
            )
        if not self.contended:
            worst = "n/a" if self.worst_slowdown is None else f"{self.worst_slowdown:.2f}x"
            return f"0 of {self.timings} {what} contended (worst {worst}; threshold {self.max_slowdown:.2f}x)"
        return (
            f"{self.contended} of {self.timings} {what} were measured under contention: the timing thread "
            f"waited for a CPU, so their latencies are at least {self.median_slowdown:.3g}x too high "
            f"(median; up to {self.worst_slowdown:.3g}x; threshold {self.max_slowdown:.3g}x)"
        )

    def to_dict(self) -> dict[str, Any]:
        """The summary as plain data (for a sidecar)."""
        return {
            "timings": self.timings,
            "contended": self.contended,
            "max_slowdown": self.max_slowdown,
            "median_slowdown": self.median_slowdown,
            "worst_slowdown": self.worst_slowdown,
            "method": self.method,
        }


def summarize_contention(
    slowdowns: Sequence[float | None], max_slowdown: float = DEFAULT_MAX_SLOWDOWN
) -> ContentionSummary:
    """Count the timings whose slowdown exceeds ``max_slowdown``: the decision, on recorded numbers.

    Args:
        slowdowns: One :attr:`Span.slowdown` per timing (None: unknown).
        max_slowdown: The threshold (> 1).

    Returns:
        The :class:`ContentionSummary`.

    Raises:
        ValueError: If ``max_slowdown`` is not > 1.

    Example:
        >>> summarize_contention([1.01, 1.02], 1.15).contended
        0
    """
    max_slowdown = check_max_slowdown(max_slowdown)
    known = [float(s) for s in slowdowns if s is not None]
    hit = [s for s in known if s > max_slowdown]
    return ContentionSummary(
        timings=len(slowdowns),
        contended=len(hit),
        max_slowdown=max_slowdown,
        median_slowdown=round(statistics.median(hit), 4) if hit else None,
        worst_slowdown=round(max(known), 4) if known else None,
        method="run-queue wait" if known or not slowdowns else "unavailable",
    )


def row_marks(span: Span, max_slowdown: float) -> dict[str, Any]:
    """The keys a sweep adds to a row's ``settings``: its slowdown, and ``contended`` above the limit.

    Example:
        >>> row_marks(Span(1.0, 0.5), 1.15)
        {'wait_slowdown': 2.0, 'contended': True}
    """
    s = span.slowdown
    if s is None:
        return {}
    marks: dict[str, Any] = {"wait_slowdown": round(s, 3) if s != float("inf") else 1e9}
    if s > max_slowdown:
        marks["contended"] = True
    return marks


def _flag(text: Any, key: str) -> bool:
    if not isinstance(text, str) or key not in text:
        return False
    try:
        return bool(json.loads(text).get(key, False))
    except (ValueError, AttributeError):
        return False


def contended_rows(df: pd.DataFrame) -> pd.Series:
    """Which rows :func:`hwprune.measure.measure` marked contended (``"contended": true`` in ``settings``).

    Example:
        >>> import pandas as pd
        >>> contended_rows(pd.DataFrame({"settings": ['{"contended": true}', '{}', None]})).tolist()
        [True, False, False]
    """
    import pandas as pd

    if "settings" not in df.columns:
        return pd.Series(False, index=df.index)
    return df["settings"].map(lambda t: _flag(t, "contended")).astype(bool)


def warn_on_table(df: pd.DataFrame, where: str, share: float | None = None) -> tuple[int, int]:
    """Warn when more than ``share`` of a table's rows were measured contended or stayed noisy.

    The slowdown in the message is the median ``wait_slowdown`` of the contended rows: a lower bound of how
    far they are off (see the module's notes).

    :meth:`hwprune.predict.LatencyPredictor.fit` calls this on every table it fits, so a Python user is
    told what the ``hwprune fit`` command tells.

    Args:
        df: A measurement table.
        where: The table's name in the message.
        share: Warning threshold, a fraction of the rows (default
            :data:`hwprune.measure.table.NOISY_WARN_SHARE`).

    Returns:
        ``(contended, noisy)`` row counts.

    Example:
        >>> import pandas as pd
        >>> warn_on_table(pd.DataFrame({"settings": ["{}"]}), "t.csv")
        (0, 0)
    """
    from hwprune.measure.table import NOISY_WARN_SHARE, noisy_rows

    limit = NOISY_WARN_SHARE if share is None else share
    n = len(df)
    contended = contended_rows(df)
    k = int(contended.sum())
    m = int(noisy_rows(df).sum())
    if n and (k / n > limit or m / n > limit):
        slow = []
        if k and "settings" in df.columns:
            for text in df.loc[contended, "settings"]:
                try:
                    slow.append(float(json.loads(text).get("wait_slowdown", "nan")))
                except (TypeError, ValueError, AttributeError):
                    pass
        slow = [s for s in slow if s == s]
        by = f" (their latencies at least {statistics.median(slow):.3g}x too high)" if slow else ""
        log.warning(
            "%s: %d of %d rows (%.0f%%) were measured under contention%s and %d (%.0f%%) stayed noisy: the "
            "machine was busy when it was measured, and a predictor fitted on it learns those latencies; "
            'measure again on an idle machine (rows marked "contended" / "noisy" in `settings`)',
            where,
            k,
            n,
            100 * k / n,
            by,
            m,
            100 * m / n,
        )
    return k, m

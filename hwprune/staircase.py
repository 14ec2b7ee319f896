"""Friendly channel counts: the right edges of a layer's latency staircase.

Latency against channel count is a staircase whose edges depend on the backend, the dtype, the batch and
the layer's shape. A count is *friendly* when every larger count (up to the layer's width) has a strictly
higher predicted latency: it is the most channels one can keep for that latency. :func:`friendly_counts`
finds them from a predictor, :func:`snap` moves a count onto them.

This module is the one definition of the staircase ideas the whole package shares: the friendly rule
(:func:`friendly_mask`, :func:`friendly_from_curve`) and what counts as a slowdown
(:data:`SLOWDOWN_TOLERANCE`, :func:`is_slowdown`). It imports nothing from the package, so every stage
(the measurement plots, the predictor report, the planner, the callback) uses it without an import cycle.
"""

from __future__ import annotations

import logging
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from hwprune.options import SNAP_MODES, SnapMode

log = logging.getLogger(__name__)

__all__ = [
    "SLOWDOWN_TOLERANCE",
    "Predictor",
    "friendly_counts",
    "friendly_from_curve",
    "friendly_mask",
    "is_slowdown",
    "snap",
    "vary_channels",
]

SLOWDOWN_TOLERANCE: float = 0.05
"""A pruned layer or model counts as *slower* when it runs more than this share slower than the reference
(timing noise on a quiet machine stays well inside it)."""

_ArrayLike = float | np.ndarray | pd.Series


@runtime_checkable
class Predictor(Protocol):
    """What the staircase and the planner need from a latency predictor."""

    def predict(self, configs: pd.DataFrame) -> np.ndarray:  # pragma: no cover - protocol
        """Return the predicted latency in ms of each row of ``configs``."""
        ...


def is_slowdown(
    latency_ms: _ArrayLike, reference_ms: _ArrayLike, tolerance: float = SLOWDOWN_TOLERANCE
) -> bool | np.ndarray | pd.Series:
    """Whether a latency counts as slower than its reference: more than ``tolerance`` above it.

    Args:
        latency_ms: The pruned layer's or model's latency (a number, array or Series).
        reference_ms: The reference (dense) latency, broadcast against ``latency_ms``.
        tolerance: Share above the reference that still counts as not slower (>= 0).

    Returns:
        A bool, or a boolean array / Series shaped like the broadcast inputs.

    Raises:
        ValueError: If ``tolerance`` is negative or not a number.

    Example:
        >>> is_slowdown(1.06, 1.0), is_slowdown(1.05, 1.0)
        (True, False)
    """
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not tolerance >= 0:
        raise ValueError(f"`tolerance` must be a share >= 0, got {tolerance!r}")
    out = latency_ms > reference_ms * (1.0 + tolerance)
    return bool(out) if isinstance(out, bool | np.bool_) else out


def friendly_mask(latencies: Sequence[float] | np.ndarray) -> np.ndarray:
    """Which counts of a latency curve are friendly: strictly faster than every larger count.

    The one definition of the friendly rule. ``latencies`` belong to strictly increasing channel counts;
    the largest count is always friendly. A NaN latency (a failed timing) is never friendly and hides no
    other count.

    Args:
        latencies: Latency of each count, ordered by count ascending.

    Returns:
        A boolean array of the same length.

    Example:
        >>> friendly_mask([1.0, 2.0, 2.0, 3.0]).tolist()
        [True, False, True, True]
    """
    lat = np.asarray(latencies, dtype=float).reshape(-1)
    if lat.size == 0:
        return np.zeros(0, dtype=bool)
    later_min = np.fmin.accumulate(lat[::-1])[::-1]  # fmin: a NaN does not mask the counts below it
    best_above = np.append(later_min[1:], np.inf)
    with np.errstate(invalid="ignore"):
        return lat < best_above


def friendly_from_curve(counts: Sequence[int], latencies: Sequence[float]) -> list[int]:
    """Return the counts on the right edge of each stair of a latency curve (:func:`friendly_mask`).

    Args:
        counts: Strictly increasing channel counts.
        latencies: Latency of each count, same length.

    Returns:
        The friendly counts, ascending.

    Raises:
        ValueError: If the lengths differ, ``counts`` is empty or not strictly increasing.

    Example:
        >>> friendly_from_curve([1, 2, 3, 4], [1.0, 2.0, 2.0, 3.0])
        [1, 3, 4]
    """
    if len(counts) != len(latencies):
        raise ValueError(f"`latencies` must have one value per count ({len(counts)}), got {len(latencies)}")
    if len(counts) == 0:
        raise ValueError("`counts` must not be empty")
    if any(b <= a for a, b in zip(counts, counts[1:], strict=False)):
        raise ValueError("`counts` must be strictly increasing")
    mask = friendly_mask(latencies)
    return [int(c) for c, keep in zip(counts, mask, strict=True) if keep]


def vary_channels(
    layer_config: Mapping[str, int], counts: Sequence[int], side: Literal["out", "in"] = "out"
) -> pd.DataFrame:
    """Return one table row per count, with the layer's ``side`` channels set to that count.

    A depthwise layer (``groups == in_channels == out_channels > 1``) keeps in, out and groups equal.

    Args:
        layer_config: Mapping keyed by the measurement table's column names.
        counts: Channel counts to put in.
        side: Which channels vary: ``"out"`` or ``"in"``.

    Returns:
        A DataFrame with the columns of ``layer_config``.

    Example:
        >>> cfg = dict(batch=1, in_channels=8, out_channels=16, height=8, width=8, kernel_size=3, stride=1,
        ...            padding=1, groups=1)
        >>> vary_channels(cfg, [4, 8])["out_channels"].tolist()
        [4, 8]
    """
    rows = []
    depthwise = int(layer_config["groups"]) > 1 and int(layer_config["groups"]) == int(
        layer_config["in_channels"]
    ) == int(layer_config["out_channels"])
    for c in counts:
        row = dict(layer_config)
        if depthwise:
            row["in_channels"] = row["out_channels"] = row["groups"] = int(c)
        else:
            row[f"{side}_channels"] = int(c)
        rows.append(row)
    return pd.DataFrame(rows)


def friendly_counts(
    predictor: Predictor, layer_config: Mapping[str, int], max_channels: int, min_channels: int = 1
) -> list[int]:
    """Return the friendly output-channel counts of one layer.

    For each returned count, every larger count up to ``max_channels`` has a higher predicted latency.

    Args:
        predictor: Anything with ``predict(DataFrame) -> ndarray`` of ms per row, e.g. a fitted
            :class:`hwprune.predict.LatencyPredictor`.
        layer_config: Mapping keyed by the measurement table's column names (batch, in_channels,
            out_channels, height, width, kernel_size, stride, padding, groups). Its ``out_channels`` is
            replaced by each candidate count (a depthwise layer varies in, out and groups together).
        max_channels: Largest count, usually the layer's unpruned width.
        min_channels: Smallest count considered.

    Returns:
        Friendly counts, ascending; ``max_channels`` is always among them.

    Raises:
        ValueError: If ``max_channels`` or ``min_channels`` is out of range, or the predictor returns the
            wrong number of values.

    Example:
        >>> cfg = dict(batch=1, in_channels=64, out_channels=64, height=28, width=28, kernel_size=3,
        ...            stride=1, padding=1, groups=1)
        >>> friendly_counts(predictor, cfg, max_channels=64)  # doctest: +SKIP
        [8, 16, 32, 48, 64]
    """
    if not isinstance(max_channels, int | np.integer) or max_channels < 1:
        raise ValueError(f"`max_channels` must be an int >= 1, got {max_channels!r}")
    if not isinstance(min_channels, int | np.integer) or not 1 <= min_channels <= max_channels:
        raise ValueError(
            f"`min_channels` must be an int in [1, max_channels={max_channels}], got {min_channels!r}"
        )
    counts = list(range(int(min_channels), int(max_channels) + 1))
    lat = np.asarray(predictor.predict(vary_channels(layer_config, counts)), dtype=float).reshape(-1)
    if lat.shape[0] != len(counts):
        raise ValueError(f"predictor returned {lat.shape[0]} latencies for {len(counts)} configs")
    return friendly_from_curve(counts, lat.tolist())


def snap(count: int, friendly: Sequence[int], mode: SnapMode = "up") -> int:
    """Move a channel count onto a friendly count.

    - ``"up"``: the right edge of the count's stair, i.e. the smallest friendly count ``>= count``. Same
      predicted latency (or less), more channels. Above the largest friendly count, that count.
    - ``"down"``: the previous stair's edge, i.e. the largest friendly count ``<= count``: less latency.
      A friendly count stays where it is. Below the smallest friendly count, that count.
    - ``"nearest"``: whichever of the two is closer; ties go up (more channels, same latency).

    Args:
        count: The channel count to move.
        friendly: Friendly counts, e.g. from :func:`friendly_counts`.
        mode: ``"up"``, ``"down"`` or ``"nearest"``.

    Returns:
        A member of ``friendly``.

    Raises:
        ValueError: If ``mode`` is not a valid mode or ``friendly`` is empty.

    Example:
        >>> snap(20, [8, 16, 32], "up"), snap(20, [8, 16, 32], "down"), snap(20, [8, 16, 32], "nearest")
        (32, 16, 16)
    """
    if mode not in SNAP_MODES:
        raise ValueError(f"`mode` must be one of {SNAP_MODES}, got {mode!r}")
    if len(friendly) == 0:
        raise ValueError("`friendly` must hold at least one count")
    fr = sorted(int(f) for f in friendly)
    i_up = bisect_left(fr, count)
    up = fr[min(i_up, len(fr) - 1)]
    i_down = bisect_right(fr, count) - 1
    down = fr[max(i_down, 0)]
    if mode == "up":
        return up
    if mode == "down":
        return down
    return up if (up - count) <= (count - down) else down

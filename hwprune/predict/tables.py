"""Reading a measurement table for the predictor, and the accuracy measures it reports.

:func:`load_table` reads a measurement CSV (through :func:`hwprune.measure.read_table`) or checks a
DataFrame, and takes the device peaks from the table's JSON sidecar; :func:`table_value` and
:func:`table_digest` describe what was read. :func:`within_share`, :func:`mape`, :func:`accuracy` and
:func:`layer_shapes` are the accuracy measures and the layer-shape names that the predictor, its report and
the adapted predictor (:mod:`hwprune.predict.adapt`) share. No torch is imported.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hwprune.contract import CONFIG_COLUMNS
from hwprune.predict.features import DevicePeaks, layer_key

log = logging.getLogger(__name__)

__all__ = [
    "TableLike",
    "accuracy",
    "layer_shapes",
    "load_table",
    "mape",
    "table_digest",
    "table_value",
    "warn_on_busy_table",
    "within_share",
]

TableLike = pd.DataFrame | str | os.PathLike[str]


def within_share(pred: np.ndarray, true: np.ndarray, tol: float) -> float:
    """Share of predictions within ``±tol`` (relative) of the truth.

    Args:
        pred: Predicted latencies.
        true: Measured latencies (> 0).
        tol: Relative tolerance, e.g. 0.1 for ±10%.

    Returns:
        A share in [0, 1]; NaN for empty input.

    Example:
        >>> within_share(np.array([1.05, 1.2]), np.array([1.0, 1.0]), 0.1)
        0.5
    """
    if len(true) == 0:
        return math.nan
    return float(np.mean(np.abs(pred / true - 1.0) <= tol + 1e-12))


def layer_shapes(cfg: pd.DataFrame) -> list[str]:
    """Name each row's layer shape without its batch, dtype and channel counts (``8x8_k3s1p1_g1``).

    Two targets that measured the same network share these names whatever their batch or dtype, so an
    adapted predictor (:mod:`hwprune.predict.adapt`) can check that its prior saw the new target's layers.

    Args:
        cfg: A frame from :func:`~hwprune.predict.features.config_frame`.

    Returns:
        One name per row.

    Example:
        >>> f = config_frame([dict(batch=4, in_channels=3, out_channels=8, height=8, width=8,
        ...                        kernel_size=3, stride=1, padding=1, groups=1)], default_dtype="float16")
        >>> layer_shapes(f)
        ['8x8_k3s1p1_g1']
    """
    return [k.split("_", 1)[1].rsplit("_", 1)[0] for k in layer_key(cfg)]


def mape(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute percentage error of ``pred`` against ``true``, in %.

    Args:
        pred: Predicted latencies.
        true: Measured latencies (> 0).

    Returns:
        The error in %; NaN for empty input.

    Example:
        >>> mape(np.array([1.1, 0.9]), np.array([1.0, 1.0]))
        10.000000000000009
    """
    return float(np.mean(np.abs(pred / true - 1.0)) * 100.0) if len(true) else math.nan


def accuracy(pred: np.ndarray, true: np.ndarray, prefix: str = "") -> dict[str, float]:
    """The accuracy figures a predictor records: shares within ±5% and ±10%, and the MAPE.

    Args:
        pred: Predicted latencies.
        true: Measured latencies (> 0).
        prefix: Put before each key (``"count_"``: unseen counts of known layers, ``"layer_"``: unseen
            layer shapes).

    Returns:
        ``{prefix + "within5": ..., prefix + "within10": ..., prefix + "mape": ...}``.

    Example:
        >>> accuracy(np.array([1.05, 1.2]), np.array([1.0, 1.0]), "count_")["count_within10"]
        0.5
    """
    return {
        f"{prefix}within5": within_share(pred, true, 0.05),
        f"{prefix}within10": within_share(pred, true, 0.10),
        f"{prefix}mape": mape(pred, true),
    }


def _find_peaks(obj: Any, found: dict[str, float]) -> None:
    """Collect peak FLOP/s and bandwidth from any nesting of a sidecar's JSON (keys vary by harness)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = str(k).lower()
            if isinstance(v, int | float) and not isinstance(v, bool) and v > 0:
                if "peak" in key and "flop" in key:
                    found.setdefault("gflops", float(v) / (1.0 if "gflop" in key else 1e9))
                elif "peak" in key and ("bandwidth" in key or "gbps" in key or "gb_s" in key):
                    found.setdefault("gbps", float(v) / (1.0 if "gb" in key else 1e9))
            else:
                _find_peaks(v, found)
    elif isinstance(obj, list):
        for v in obj:
            _find_peaks(v, found)


def _sidecar_peaks(path: Path) -> DevicePeaks:
    """Read device peaks from the table's JSON sidecar, where it has them."""
    for side in (path.with_suffix(".json"), path.with_name(path.name + ".json")):
        if not side.is_file():
            continue
        try:
            meta = json.loads(side.read_text())
        except (OSError, json.JSONDecodeError) as err:
            log.warning("ignoring unreadable sidecar %s: %s", side, err)
            return DevicePeaks()
        found: dict[str, float] = {}
        _find_peaks(meta, found)
        return DevicePeaks(found.get("gflops"), found.get("gbps"))
    return DevicePeaks()


def load_table(table: TableLike) -> tuple[pd.DataFrame, DevicePeaks]:
    """Read a measurement table (through :func:`hwprune.measure.read_table`) or check a DataFrame.

    Args:
        table: A CSV path or a DataFrame with the table's columns.

    Returns:
        The rows with a positive ``latency_ms``, and the device peaks from the sidecar (if any).

    Raises:
        ValueError: If a DataFrame lacks ``latency_ms`` or has a non-positive or NaN latency.
        FileNotFoundError: If a path does not exist.

    Example:
        >>> df, peaks = load_table("tables/cpu_torch/small_resnet_28.csv")  # doctest: +SKIP
    """
    if isinstance(table, pd.DataFrame):
        df = table.reset_index(drop=True)
        peaks = DevicePeaks()
    elif isinstance(table, str | os.PathLike):
        from hwprune.measure.table import read_table  # the measuring stage comes first in the data flow

        path = Path(table)
        df = read_table(path)
        peaks = _sidecar_peaks(path)
    else:
        raise ValueError(
            f"`table` must be a path to a measurement CSV or a DataFrame, got {type(table).__name__}"
        )
    if "latency_ms" not in df.columns:
        raise ValueError(f"`table` must have a `latency_ms` column, got {list(df.columns)}")
    lat = pd.to_numeric(df["latency_ms"], errors="coerce").to_numpy(dtype=float)
    if not np.all(np.isfinite(lat) & (lat > 0)):
        raise ValueError("`table` column `latency_ms` must be finite and > 0 on every row")
    if len(df) < 2:
        raise ValueError(f"`table` must have at least 2 rows to fit a predictor, got {len(df)}")
    return df, peaks


def table_value(df: pd.DataFrame, col: str, default: str) -> str:
    """The value of a table's metadata column: the one value, or the sorted values comma-joined.

    Args:
        df: A table from :func:`load_table`.
        col: ``target``, ``backend``, ``device`` or another string column.
        default: What a table without the column gets.

    Returns:
        The value.

    Raises:
        ValueError: If ``col`` is ``target`` and the table holds several (one predictor per target).

    Example:
        >>> table_value(pd.DataFrame({"device": ["a", "b", "a"]}), "device", "unknown")
        'a,b'
    """
    if col not in df.columns:
        return default
    vals = pd.unique(df[col].astype(str))
    if col == "target" and len(vals) > 1:
        raise ValueError(f"`table` must hold one target, got {sorted(vals)}: fit one predictor per target")
    return str(vals[0]) if len(vals) == 1 else ",".join(sorted(vals))


def table_digest(df: pd.DataFrame) -> str:
    """A digest of a table's timed rows (target, dtype, config, latency), independent of their order.

    ``hwprune report`` tells a predictor's training table from another one by it (a row count alone
    called another table of the same size "in-sample").

    Args:
        df: A table from :func:`load_table` (error rows already dropped).

    Returns:
        The SHA-256 hex digest.

    Example:
        >>> table_digest(pd.DataFrame([dict(batch=1, in_channels=3, out_channels=8, height=8, width=8,
        ...     kernel_size=3, stride=1, padding=1, groups=1, latency_ms=0.1)]))[:12]
        'f5c8ed6b9384'
    """
    cols = [c for c in ("target", "dtype") if c in df.columns]
    text = df[cols].astype(str) if cols else pd.DataFrame(index=df.index)
    ints = df[list(CONFIG_COLUMNS)].astype("int64").astype(str)
    lat = df["latency_ms"].astype(float).map(repr)
    keys = sorted(pd.concat([text, ints, lat], axis=1).agg("|".join, axis=1).tolist())
    return hashlib.sha256("\n".join(keys).encode("utf-8")).hexdigest()


def warn_on_busy_table(df: pd.DataFrame, table: TableLike) -> None:
    """Warn, as ``hwprune fit`` does, when many of ``df``'s rows were measured contended or noisy.

    Args:
        df: The rows :func:`load_table` read from ``table``.
        table: What the caller fitted on (named in the warning).

    Example:
        >>> warn_on_busy_table(df, "tables/cpu_torch/small_resnet_28.csv")  # doctest: +SKIP
    """
    from hwprune.measure.contention import warn_on_table  # the measuring stage comes first in the data flow

    where = "the fitted DataFrame" if isinstance(table, pd.DataFrame) else str(table)
    warn_on_table(df, f"LatencyPredictor.fit: {where}")

"""Channel sweeps of a measurement table, and where a prediction puts their stair edges.

A *sweep* is the rows of one layer that differ only in one channel count (:func:`stair_series`). The
predictor's report scores staircase fidelity on them (:mod:`hwprune.predict.report`); adaptive sampling
(:mod:`hwprune.predict.adapt`) measures more next to the edges a predictor puts on them
(:func:`stair_edge_bonus`, the one definition of that bonus).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hwprune.contract import CONFIG_COLUMNS

__all__ = ["EDGE_JUMP", "StairSeries", "series_latency", "stair_edge_bonus", "stair_series"]

EDGE_JUMP: float = 0.05
"""A change of more than this in log latency between neighbouring counts of a sweep is a stair edge."""


@dataclass(frozen=True)
class StairSeries:
    """One channel sweep of one layer: the rows that differ only in the swept count.

    Attributes:
        label: Human-readable name (the table's ``layer`` label where present, plus the swept column).
        swept: ``out_channels``, ``in_channels`` or ``depthwise`` (in = out = groups).
        index: Row positions in the evaluated table, sorted by count.
        counts: The swept counts, ascending.
    """

    label: str
    swept: str
    index: tuple[int, ...]
    counts: tuple[int, ...]


def stair_series(table: pd.DataFrame, *, min_points: int = 3) -> list[StairSeries]:
    """Split a table into channel sweeps (all config fixed but one count).

    Args:
        table: Rows with the config columns (duplicates of a config are allowed; they share a count).
        min_points: Smallest number of distinct counts for a sweep to count.

    Returns:
        The sweeps, longest first.

    Example:
        >>> [s.swept for s in stair_series(df)][:1]  # doctest: +SKIP
        ['out_channels']
    """
    df = table.reset_index(drop=True)
    depthwise = (
        (df["groups"] > 1) & (df["groups"] == df["in_channels"]) & (df["groups"] == df["out_channels"])
    )
    out: list[StairSeries] = []
    dtype_col = ["dtype"] if "dtype" in df.columns else []
    plans = (
        ("out_channels", df[~depthwise], [c for c in CONFIG_COLUMNS if c != "out_channels"]),
        ("in_channels", df[~depthwise], [c for c in CONFIG_COLUMNS if c != "in_channels"]),
        (
            "depthwise",
            df[depthwise],
            [c for c in CONFIG_COLUMNS if c not in ("in_channels", "out_channels", "groups")],
        ),
    )
    for swept, part, keys in plans:
        if part.empty:
            continue
        count_col = "out_channels" if swept == "depthwise" else swept
        for _, grp in part.groupby(keys + dtype_col, sort=False):
            if grp[count_col].nunique() < min_points:
                continue
            grp = grp.sort_values(count_col, kind="stable")
            name = str(grp["layer"].iloc[-1]) if "layer" in grp.columns else "layer"
            out.append(
                StairSeries(
                    label=f"{name} ({swept})",
                    swept=swept,
                    index=tuple(int(i) for i in grp.index),
                    counts=tuple(int(c) for c in grp[count_col]),
                )
            )
    out.sort(key=lambda s: len(s.counts), reverse=True)
    return out


def series_latency(s: StairSeries, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean latency per distinct count of a sweep (duplicated configs averaged).

    Args:
        s: A sweep from :func:`stair_series`.
        values: One latency per row of the table the sweep was taken from.

    Returns:
        The distinct counts, ascending, and their mean latencies.

    Example:
        >>> counts, ms = series_latency(series, rows["latency_ms"].to_numpy())  # doctest: +SKIP
    """
    frame = pd.DataFrame({"c": s.counts, "v": values[list(s.index)]}).groupby("c")["v"].mean()
    return frame.index.to_numpy(), frame.to_numpy()


def stair_edge_bonus(table: pd.DataFrame, log_pred: np.ndarray, jump: float = EDGE_JUMP) -> np.ndarray:
    """1.0 for configs next to a predicted stair edge, 0.0 elsewhere.

    Within each sweep of at least 3 counts, two neighbouring counts whose predicted log latencies differ
    by more than ``jump`` are both next to an edge: where the stair falls is uncertain between them, and a
    measurement there pins it.

    Args:
        table: Rows with the config columns (a layer space or a table).
        log_pred: Predicted log latency, one per row of ``table``.
        jump: Smallest change in log latency that counts as an edge.

    Returns:
        A float array, one per row of ``table``.

    Example:
        >>> bonus = stair_edge_bonus(space, np.log(pred.predict(space)))  # doctest: +SKIP
    """
    bonus = np.zeros(len(table))
    for s in stair_series(table, min_points=3):
        idx = np.asarray(s.index)
        d = np.abs(np.diff(log_pred[idx])) > jump
        bonus[idx[:-1][d]] = 1.0
        bonus[idx[1:][d]] = 1.0
    return bonus

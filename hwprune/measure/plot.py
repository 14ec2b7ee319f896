"""The staircase plot: latency against channel count, the unpruned latency and the friendly counts.

:func:`draw_staircase` is the one drawing, used for a measurement table (:func:`plot_staircase`, the
``hwprune staircase`` command) and for a predictor against its measurements
(:func:`hwprune.predict.report.plot_staircase`). Friendly counts and slowdowns follow the one rule of
:mod:`hwprune.staircase` (a leaf module that imports nothing from the package).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hwprune.staircase import SLOWDOWN_TOLERANCE, friendly_mask, is_slowdown

log = logging.getLogger(__name__)

__all__ = ["draw_staircase", "plot_staircase"]


def draw_staircase(
    counts: Sequence[int],
    latency_ms: Sequence[float],
    out: str | os.PathLike[str],
    *,
    spread_ms: Sequence[float] | None = None,
    predicted_ms: Sequence[float] | None = None,
    title: str = "",
    xlabel: str = "out channels",
) -> Path:
    """Draw one latency staircase to a PNG.

    The measured curve (with each point's IQR as an error bar when ``spread_ms`` is given), the unpruned
    latency (that of the largest count) as a dashed line, and the measured friendly counts as dots. With
    ``predicted_ms``, the predicted curve is overlaid as steps with its own friendly counts as triangles.

    Args:
        counts: Channel counts, strictly increasing.
        latency_ms: Measured latency of each count.
        out: PNG path (its folder is created).
        spread_ms: IQR of each measured point, or None.
        predicted_ms: Predicted latency of each count, or None.
        title: Plot title.
        xlabel: Label of the channel axis.

    Returns:
        The PNG's path.

    Raises:
        ValueError: If fewer than 2 counts are given, the counts are not strictly increasing, or a
            series has a different length.

    Example:
        >>> draw_staircase([8, 12, 16], [1.0, 2.0, 2.0], "s.png")  # doctest: +SKIP
    """
    c = np.asarray(counts, dtype=int).reshape(-1)
    lat = np.asarray(latency_ms, dtype=float).reshape(-1)
    if c.size < 2:
        raise ValueError(f"`counts` must hold 2 or more counts, got {c.size}")
    if np.any(np.diff(c) <= 0):
        raise ValueError("`counts` must be strictly increasing")
    for name, series in (("latency_ms", lat), ("spread_ms", spread_ms), ("predicted_ms", predicted_ms)):
        if series is not None and len(series) != c.size:
            raise ValueError(f"`{name}` must have one value per count ({c.size}), got {len(series)}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    full = float(lat[-1])
    mf = friendly_mask(lat)
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    yerr = None if spread_ms is None else np.asarray(spread_ms, dtype=float) / 2
    label = "measured median (bar: IQR)" if spread_ms is not None else "measured"
    ax.errorbar(c, lat, yerr=yerr, fmt="-", lw=1, color="tab:blue", ecolor="0.8", label=label)
    ax.axhline(full, color="tab:red", ls="--", lw=1, label=f"unpruned ({int(c[-1])} ch): {full:.4g} ms")
    ax.scatter(
        c[mf],
        lat[mf],
        color="tab:green",
        zorder=3,
        s=18,
        label=f"{'measured ' if predicted_ms is not None else ''}friendly counts ({int(mf.sum())})",
    )
    if predicted_ms is not None:
        pv = np.asarray(predicted_ms, dtype=float)
        pf = friendly_mask(pv)
        ax.step(c, pv, where="mid", lw=1.5, color="tab:orange", label="predicted")
        ax.scatter(
            c[pf],
            pv[pf],
            marker="^",
            s=40,
            facecolors="none",
            edgecolors="tab:orange",
            zorder=3,
            label=f"predicted friendly counts ({int(pf.sum())})",
        )
    ax.set_ylim(bottom=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("latency (ms)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    log.info("wrote %s (%d counts, %d friendly)", path, c.size, int(mf.sum()))
    return path


def plot_staircase(
    table: str | os.PathLike[str],
    layer: str,
    out: str | os.PathLike[str],
    *,
    batch: int | None = None,
    title: str | None = None,
) -> Path:
    """Draw latency vs out-channels for ``layer`` of a measurement table (:func:`draw_staircase`).

    The rows are those whose ``layer`` label (``;``-separated) names ``layer``, at the original
    in-channels (the largest seen) and, when the table holds several batches, at ``batch`` (default: the
    smallest). Each count's median latency is drawn, with the median IQR as its error bar.

    Args:
        table: Measurement table.
        layer: Layer label, e.g. ``layer2.0.conv2``.
        out: PNG path.
        batch: Batch to plot.
        title: Plot title (default: target, layer, batch and how many pruned counts are slower).

    Returns:
        The PNG's path.

    Raises:
        ValueError: If the table has no swept rows for ``layer``/``batch`` (the message lists the layers).

    Example:
        >>> plot_staircase("tables/cpu_torch/resnet18_224.csv", "layer2.0.conv2", "s.png")  # doctest: +SKIP
    """
    from hwprune.measure.table import read_table

    df = read_table(table, allow_mixed_targets=True)
    has = df["layer"].fillna("").astype(str).str.split(";").apply(lambda names: layer in names)
    d = df[has]
    if d.empty:
        names = sorted({n for v in df["layer"].fillna("").astype(str) for n in v.split(";") if n})
        raise ValueError(f"`layer` must be a layer of {table}, got {layer!r}; layers: {names[:40]}")
    batch = int(d["batch"].min()) if batch is None else int(batch)
    d = d[(d["batch"] == batch) & (d["in_channels"] == d["in_channels"].max())]
    if d["groups"].max() > 1:  # depthwise: in = out = groups all move together
        d = df[has & (df["batch"] == batch)]
    d = d.groupby("out_channels", as_index=True).agg(
        lat=("latency_ms", "median"), iqr=("latency_spread_ms", "median")
    )
    if len(d) < 2:
        raise ValueError(
            f"`layer` {layer!r} has {len(d)} swept count(s) at batch {batch} in {table}: need 2+"
        )
    full = float(d["lat"].iloc[-1])
    slower = int(is_slowdown(d["lat"].iloc[:-1], full).sum())
    tgt = str(df["target"].iloc[0])
    return draw_staircase(
        d.index.tolist(),
        d["lat"].tolist(),
        out,
        spread_ms=d["iqr"].tolist(),
        title=title
        or f"{tgt}: {layer}, batch {batch} — {slower}/{len(d) - 1} pruned counts "
        f">{SLOWDOWN_TOLERANCE:.0%} slower than unpruned",
    )

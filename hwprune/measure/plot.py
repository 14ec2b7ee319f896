"""The staircase plot: latency against out-channels for one layer of a measurement table."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["friendly", "plot_staircase"]


def friendly(latency: Mapping[int, float]) -> list[int]:
    """Counts whose every larger count is slower (the right edges of the stairs).

    A local helper for plotting; the canonical ``friendly_counts`` lives in :mod:`hwprune.staircase`.

    Args:
        latency: Channel count -> latency.

    Returns:
        The friendly counts, ascending.

    Example:
        >>> friendly({8: 1.0, 12: 2.0, 16: 2.0, 24: 3.0})
        [8, 16, 24]
    """
    out: list[int] = []
    best_above = float("inf")
    for c in sorted(latency, reverse=True):
        if latency[c] < best_above:
            out.append(c)
        best_above = min(best_above, latency[c])
    return sorted(out)


def plot_staircase(
    table: str | os.PathLike[str],
    layer: str,
    out: str | os.PathLike[str],
    *,
    batch: int | None = None,
    title: str | None = None,
) -> Path:
    """Draw latency vs out-channels for ``layer``; the unpruned latency as a line; friendly counts marked.

    The rows are those whose ``layer`` label (``;``-separated) names ``layer``, at the original
    in-channels (the largest seen) and, when the table holds several batches, at ``batch`` (default: the
    smallest). Error bars show each point's IQR.

    Args:
        table: Measurement table.
        layer: Layer label, e.g. ``layer2.0.conv2``.
        out: PNG path.
        batch: Batch to plot.
        title: Plot title (default: target, layer, batch).

    Returns:
        The PNG's path.

    Raises:
        ValueError: If the table has no swept rows for ``layer``/``batch`` (the message lists the layers).

    Example:
        >>> plot_staircase("tables/cpu_torch/resnet18_224.csv", "layer2.0.conv2", "s.png")  # doctest: +SKIP
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    orig = int(d.index.max())
    full = float(d.loc[orig, "lat"])
    fr = friendly(d["lat"].to_dict())
    tgt = str(df["target"].iloc[0])
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    ax.errorbar(
        d.index,
        d["lat"],
        yerr=d["iqr"] / 2,
        fmt="-",
        lw=1,
        color="tab:blue",
        ecolor="0.8",
        label="measured median (bar: IQR)",
    )
    ax.axhline(full, color="tab:red", ls="--", lw=1, label=f"unpruned ({orig} ch): {full:.4g} ms")
    ax.scatter(fr, d.loc[fr, "lat"], color="tab:green", zorder=3, s=18, label=f"friendly counts ({len(fr)})")
    slower = int((d["lat"].drop(orig) > 1.05 * full).sum())
    ax.set_ylim(bottom=0)
    ax.set_xlabel("out channels")
    ax.set_ylabel("latency (ms)")
    ax.set_title(
        title
        or f"{tgt}: {layer}, batch {batch} — {slower}/{len(d) - 1} pruned counts >5% slower than unpruned",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    log.info("wrote %s (%d counts, %d friendly)", out, len(d), len(fr))
    return out

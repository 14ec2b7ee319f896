"""How good is a predictor on a measurement table: error per layer family and staircase fidelity.

Staircase fidelity asks whether the predictor puts the stair edges where the measurement does. Within one
channel sweep of a layer (all config columns fixed but one channel count), a count ``c`` is **friendly** if
every larger count has a higher latency: it is the right edge of its stair (the one rule,
:func:`hwprune.staircase.friendly_mask`). Fidelity is the share of the counts the predictor calls friendly
that are friendly in the measurement too (a precision: snapping to a predicted edge that is not a real edge
is the mistake that costs accuracy or speed).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from hwprune.contract import CONFIG_COLUMNS
from hwprune.measure.table import warn_if_noisy
from hwprune.predict.features import config_frame, layer_family, layer_key
from hwprune.predict.predictor import LatencyPredictor
from hwprune.predict.stairs import series_latency, stair_series
from hwprune.predict.tables import TableLike, load_table, table_digest, within_share
from hwprune.staircase import friendly_mask  # the one friendly rule

log = logging.getLogger(__name__)

__all__ = [
    "FamilyScore",
    "PredictorReport",
    "config_group",
    "evaluate",
    "format_report",
    "held_out_predictions",
    "plot_predicted_vs_measured",
    "plot_staircase",
    "score_rows",
    "write_json",
]


@dataclass(frozen=True)
class FamilyScore:
    """Error of the predictor on one layer family.

    Attributes:
        family: ``conv1x1``, ``conv3x3``, ``depthwise``, ``grouped`` or ``convKxK``.
        n: Rows of that family.
        mape: Mean absolute percentage error, in %.
        within5: Share of rows within ±5%.
        within10: Share of rows within ±10%.
    """

    family: str
    n: int
    mape: float
    within5: float
    within10: float


@dataclass(frozen=True)
class PredictorReport:
    """What :func:`evaluate` measures.

    Attributes:
        target: The predictor's target.
        n_rows: Rows evaluated.
        mape: Mean absolute percentage error over all rows, in %.
        within5: Share of rows within ±5%.
        within10: Share of rows within ±10%.
        families: Per layer family scores.
        staircase_fidelity: Share of predicted friendly counts that are friendly in the measurement
            (NaN when the table has no sweep of >= 3 counts).
        n_predicted_friendly: Predicted friendly counts over all sweeps.
        n_series: Sweeps of >= 3 counts used for the fidelity.
        in_sample: True when the table is the one the predictor was fitted on (the same
            :func:`~hwprune.predict.tables.table_digest` of its timed rows), so the scores above are
            in-sample and say little; None when the predictor records no digest.
        held_out: The predictor's cross-validated held-out scores from its fit (``validation_``:
            ``count_*`` unseen counts of known layers, ``layer_*`` unseen layer shapes); empty when it was
            fitted without CV.
    """

    target: str
    n_rows: int
    mape: float
    within5: float
    within10: float
    families: tuple[FamilyScore, ...]
    staircase_fidelity: float
    n_predicted_friendly: int
    n_series: int
    in_sample: bool | None = None
    held_out: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict.

        Returns:
            The fields, with ``families`` as a list of dicts.

        Example:
            >>> json.dumps(report.to_dict())  # doctest: +SKIP
        """
        return asdict(self)


def evaluate(predictor: LatencyPredictor, table: TableLike) -> tuple[PredictorReport, pd.DataFrame]:
    """Score a predictor on a measurement table.

    Args:
        predictor: A fitted predictor.
        table: A measurement CSV path or DataFrame of the same target.

    Returns:
        The report, and the table's rows with ``predicted_ms`` and ``family`` columns added (for plots).

    Raises:
        sklearn.exceptions.NotFittedError: If ``predictor`` is not fitted.
        ValueError: If the table is invalid or its target differs from the predictor's.

    Example:
        >>> rep, rows = evaluate(LatencyPredictor.load("pred.skops"), "table.csv")  # doctest: +SKIP
        >>> print(format_report(rep))  # doctest: +SKIP
    """
    df, _ = load_table(table)
    warn_if_noisy(df, str(table) if not isinstance(table, pd.DataFrame) else "the table")
    if "target" in df.columns:
        targets = sorted(pd.unique(df["target"].astype(str)))
        if targets != [predictor.target_]:
            raise ValueError(
                f"`table` must hold rows of the predictor's target {predictor.target_!r}, got {targets}"
            )
    rows = df.copy()
    rows["predicted_ms"] = predictor.predict(df)
    rows["family"] = layer_family(config_frame(df, default_dtype="float32")).to_numpy()
    rep = score_rows(rows, predictor.target_)
    digest = str(getattr(predictor, "train_digest_", "") or "")
    rep = replace(
        rep,
        in_sample=None if not digest else digest == table_digest(df),
        held_out={k: float(v) for k, v in (getattr(predictor, "validation_", None) or {}).items()},
    )
    return rep, rows


def format_report(rep: PredictorReport) -> str:
    """Render a report as aligned text.

    Args:
        rep: From :func:`evaluate`.

    Returns:
        A multi-line string.

    Example:
        >>> print(format_report(rep))  # doctest: +SKIP
    """
    if rep.in_sample:
        label = "in-sample (the predictor was fitted on this table: these scores say little)"
    elif rep.in_sample is None:
        label = (
            "on this table (the predictor file records no digest of its training table: held out only if "
            "it was not fitted on this one)"
        )
    else:
        label = "on this table (not the predictor's training table: its digest differs)"
    lines = [
        f"target {rep.target}: {rep.n_rows} rows",
        f"  {label}:",
        f"    MAPE {rep.mape:.2f}%   within ±5% {100 * rep.within5:.1f}%   "
        f"within ±10% {100 * rep.within10:.1f}%",
    ]
    h = rep.held_out
    if h:
        lines += [
            "  cross-validated held-out (from fit):",
            f"    unseen counts of known layers: MAPE {h.get('count_mape', float('nan')):.2f}%   "
            f"within ±10% {100 * h.get('count_within10', float('nan')):.1f}%",
            f"    unseen layer shapes:           MAPE {h.get('layer_mape', float('nan')):.2f}%   "
            f"within ±10% {100 * h.get('layer_within10', float('nan')):.1f}%",
        ]
    else:
        lines.append("  cross-validated held-out: none (the predictor was fitted with cv_folds=0)")
    lines += [
        f"  staircase fidelity {100 * rep.staircase_fidelity:.1f}% of {rep.n_predicted_friendly} predicted "
        f"friendly counts over {rep.n_series} sweeps",
        f"  {'family':<12}{'rows':>6}{'MAPE %':>9}{'±5%':>8}{'±10%':>8}",
    ]
    for f in rep.families:
        lines.append(
            f"  {f.family:<12}{f.n:>6}{f.mape:>9.2f}{100 * f.within5:>7.1f}%{100 * f.within10:>7.1f}%"
        )
    return "\n".join(lines)


def plot_predicted_vs_measured(rows: pd.DataFrame, path: str | os.PathLike[str], *, title: str = "") -> Path:
    """Scatter predicted against measured latency (log-log) with ±10% bands.

    Args:
        rows: From :func:`evaluate` (``latency_ms``, ``predicted_ms``, ``family``).
        path: PNG to write.
        title: Plot title.

    Returns:
        The path written.

    Example:
        >>> plot_predicted_vs_measured(rows, "docs/predictor_scatter.png")  # doctest: +SKIP
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for fam, grp in rows.groupby("family"):
        ax.scatter(grp["latency_ms"], grp["predicted_ms"], s=8, alpha=0.6, label=str(fam))
    lo = float(min(rows["latency_ms"].min(), rows["predicted_ms"].min())) * 0.9
    hi = float(max(rows["latency_ms"].max(), rows["predicted_ms"].max())) * 1.1
    xs = np.geomspace(lo, hi, 50)
    ax.plot(xs, xs, "k-", lw=1)
    ax.plot(xs, xs * 1.1, "k--", lw=0.7, label="±10%")
    ax.plot(xs, xs * 0.9, "k--", lw=0.7)
    ax.set(xscale="log", yscale="log", xlabel="measured (ms)", ylabel="predicted (ms)", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_staircase(
    rows: pd.DataFrame, path: str | os.PathLike[str], *, layer: str | None = None, title: str = ""
) -> Path:
    """Overlay predicted and measured latency against channel count for one sweep, friendly counts marked.

    The sweep is chosen here; the drawing is :func:`hwprune.measure.plot.draw_staircase`.

    Args:
        rows: From :func:`evaluate`.
        path: PNG to write.
        layer: A substring of the sweep label to plot (default: the longest sweep).
        title: Plot title (default: the sweep label).

    Returns:
        The path written.

    Raises:
        ValueError: If no sweep of >= 3 counts matches ``layer``.

    Example:
        >>> plot_staircase(rows, "docs/predictor_staircase.png", layer="layers.2.conv2")  # doctest: +SKIP
    """
    from hwprune.measure.plot import draw_staircase

    series = [s for s in stair_series(rows) if layer is None or layer in s.label]
    if not series:
        raise ValueError(f"`layer` must match a channel sweep of >= 3 counts in the table, got {layer!r}")
    s = series[0]
    rows = rows.reset_index(drop=True)
    c, mv = series_latency(s, rows["latency_ms"].to_numpy())
    _, pv = series_latency(s, rows["predicted_ms"].to_numpy())
    return draw_staircase(
        c.tolist(),
        mv.tolist(),
        path,
        predicted_ms=pv.tolist(),
        title=title or s.label,
        xlabel=s.swept if s.swept != "depthwise" else "channels (depthwise)",
    )


def write_json(rep: PredictorReport, path: str | os.PathLike[str]) -> Path:
    """Write a report as JSON.

    Args:
        rep: From :func:`evaluate`.
        path: Output file.

    Returns:
        The path written.

    Example:
        >>> write_json(rep, "report.json")  # doctest: +SKIP
    """
    path = Path(path)
    path.write_text(json.dumps(rep.to_dict(), indent=2))
    return path


def held_out_predictions(
    predictor: LatencyPredictor,
    table: TableLike,
    *,
    by: Literal["count", "layer"],
    folds: int = 5,
    max_train_rows: int | None = None,
    random_state: int = 0,
) -> pd.DataFrame:
    """Out-of-fold predictions: every row predicted by a clone fitted without it, nor any copy of it.

    ``by="count"`` holds out configurations (unseen channel counts of layers whose other counts are
    known), grouped by the whole configuration so that a configuration repeated across combined tables is
    never in the training and the scored part at once; ``by="layer"`` holds out whole layer shapes
    (:func:`hwprune.predict.features.layer_key`).

    No leak through model choice either: where the predictor's ``estimator`` or ``target_transform`` is
    ``"auto"``, each fold chooses them by the predictor's own grouped CV on that fold's training rows only
    (nested CV), never on the rows it is scored on; fixed parameters are used as they are.

    Args:
        predictor: A predictor whose *parameters* are cloned for each fold (a fitted predictor's choice
            is not reused: it was made on all rows, the scored ones included).
        table: A measurement CSV path or DataFrame.
        by: The split.
        folds: Number of folds (>= 2).
        max_train_rows: Subsample each fold's training rows to at most this many (a measurement budget).
        random_state: Seed for folds and subsampling.

    Returns:
        The table's rows with ``predicted_ms`` and ``family`` columns.

    Raises:
        ValueError: If ``folds`` < 2 or ``by`` is unknown, or the table is invalid.

    Example:
        >>> rows = held_out_predictions(LatencyPredictor(), "t.csv", by="layer")  # doctest: +SKIP
    """
    from sklearn.base import clone
    from sklearn.model_selection import GroupKFold

    if by not in ("count", "layer"):
        raise ValueError(f"`by` must be any of ('count', 'layer'), got {by!r}")
    if not isinstance(folds, int) or folds < 2:
        raise ValueError(f"`folds` must be an int >= 2, got {folds!r}")
    df, _ = load_table(table)
    cfg = config_frame(df, default_dtype="float32")
    nested = "auto" in (predictor.estimator, predictor.target_transform)
    inner = predictor.cv_folds if predictor.cv_folds >= 2 else 3
    base = clone(predictor).set_params(cv_folds=inner if nested else 0)
    rng = np.random.default_rng(random_state)
    groups = (layer_key(cfg) if by == "layer" else config_group(cfg)).to_numpy()
    n = min(folds, len(np.unique(groups)))
    if n < 2:
        raise ValueError(f"`table` must hold at least 2 {'layer shapes' if by == 'layer' else 'configs'}")
    splits = GroupKFold(n_splits=n, shuffle=True, random_state=random_state).split(df, groups=groups)
    pred = np.empty(len(df))
    for tr, te in splits:
        if max_train_rows is not None and len(tr) > max_train_rows:
            tr = rng.choice(tr, size=max_train_rows, replace=False)
        pred[te] = clone(base).fit(df.iloc[tr]).predict(df.iloc[te])
    rows = df.copy()
    rows["predicted_ms"] = pred
    rows["family"] = layer_family(cfg).to_numpy()
    return rows


def config_group(cfg: pd.DataFrame) -> pd.Series:
    """One key per distinct configuration (every config column and the dtype): the groups of a by-count split.

    Args:
        cfg: A frame from :func:`hwprune.predict.features.config_frame`.

    Returns:
        A string Series aligned with ``cfg``; repeated configurations share a key.

    Example:
        >>> from hwprune.predict.features import config_frame
        >>> c = dict(batch=1, in_channels=3, out_channels=8, height=8, width=8, kernel_size=3, stride=1,
        ...          padding=1, groups=1)
        >>> config_group(config_frame([c, c], default_dtype="float32")).nunique()
        1
    """
    cols = [*CONFIG_COLUMNS, "dtype"]
    return cfg[cols].astype(str).agg("_".join, axis=1)


def score_rows(rows: pd.DataFrame, target: str = "") -> PredictorReport:
    """Score rows that carry ``latency_ms`` and ``predicted_ms`` (e.g. from :func:`held_out_predictions`).

    Args:
        rows: Table rows with both latency columns and ``family``.
        target: Target name for the report.

    Returns:
        A :class:`PredictorReport`.

    Example:
        >>> score_rows(held_out_predictions(LatencyPredictor(), "t.csv", by="count"))  # doctest: +SKIP
    """
    rows = rows.reset_index(drop=True)
    pred = rows["predicted_ms"].to_numpy(dtype=float)
    meas = rows["latency_ms"].to_numpy(dtype=float)
    fams = []
    for fam, grp in rows.groupby("family", sort=True):
        p, m = grp["predicted_ms"].to_numpy(), grp["latency_ms"].to_numpy()
        fams.append(
            FamilyScore(
                str(fam),
                len(grp),
                float(np.mean(np.abs(p / m - 1)) * 100),
                within_share(p, m, 0.05),
                within_share(p, m, 0.10),
            )
        )
    hits = n_pred = 0
    series = stair_series(rows)
    for s in series:
        _, mv = series_latency(s, meas)
        _, pv = series_latency(s, pred)
        pf, mf = friendly_mask(pv), friendly_mask(mv)
        n_pred += int(pf.sum())
        hits += int((pf & mf).sum())
    return PredictorReport(
        target=target,
        n_rows=len(rows),
        mape=float(np.mean(np.abs(pred / meas - 1)) * 100),
        within5=within_share(pred, meas, 0.05),
        within10=within_share(pred, meas, 0.10),
        families=tuple(fams),
        staircase_fidelity=float(hits / n_pred) if n_pred else float("nan"),
        n_predicted_friendly=n_pred,
        n_series=len(series),
    )

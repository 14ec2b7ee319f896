"""Benchmark P1: how accurate is the latency predictor on every shipped table? Writes docs/PREDICTOR.md.

For each ``tables/**/*.csv`` it fits :class:`hwprune.predict.LatencyPredictor` (model chosen by grouped CV)
and reports two held-out splits with that model:

* **by count**: 5-fold grouped by configuration, so held-out rows are unseen channel counts of layers whose
  other counts were measured (what the planner asks for when the table is a sparse sweep), and a
  configuration repeated across combined tables is never on both sides of a split;
* **by layer**: grouped 5-fold over layer shapes, so held-out rows come from shapes never measured.

No leak through model choice: in each fold the model (estimator and target transform) is chosen by grouped
CV on that fold's training rows only (nested CV, ``inner_folds`` of ``benchmarks/conf/predictor.yaml``),
never on the rows it is scored on.

Each fold trains on at most ``max_train_rows`` (2,000) rows (the goal's measurement budget). It also
reports a *noise ceiling*: the share of rows within ±10% of the median of their two neighbouring counts in
the same sweep, i.e. how predictable a row is from its neighbours at all. ``--repeat N`` re-times N random
configs of the CPU table now and compares them with the table (measurement repeatability) and with the
predictor.
``--adaptive`` runs adaptive profiling on the default model space against a fresh dense sweep.

Usage:
    python -m benchmarks.predictor               # full run, writes docs/PREDICTOR.md + plots
    python -m benchmarks.predictor --adaptive --repeat 60
    python -m benchmarks.predictor --quick       # smoke run: one table, 3 folds, prints only
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import ROOT, load_config, machine
from hwprune.measure import CONFIG_COLUMNS, EvaluatorConfig, measure, model_space, read_table
from hwprune.predict import LatencyPredictor, within_share
from hwprune.predict.adapt import adaptive_measure, replay_adaptive
from hwprune.predict.report import (
    PredictorReport,
    held_out_predictions,
    plot_predicted_vs_measured,
    plot_staircase,
    score_rows,
)
from hwprune.predict.stairs import stair_series

log = logging.getLogger(__name__)

MARKER = "<!-- benchmarks/predictor.py output below; edit above this line only -->"
REPLAY_BEGIN = "<!-- replay begin -->"
REPLAY_END = "<!-- replay end -->"


@dataclass(frozen=True)
class TableResult:
    """Figures of one table."""

    path: str
    target: str
    backend: str
    device: str
    n_rows: int
    rel_spread: float
    n_layers: int
    chosen: str
    count: PredictorReport
    layer: PredictorReport
    ceiling10: float
    predict_5000_s: float
    fit_s: float


def table_counts(tables: list[str] | None = None) -> str:
    """How many tables and rows ship, and how many rows repeat a configuration of another table, from files.

    Args:
        tables: CSV paths (default: every ``tables/**/*.csv``).

    Returns:
        A sentence for the docs.
    """
    paths = tables or sorted(glob.glob(str(ROOT / "tables" / "**" / "*.csv"), recursive=True))
    frames = [read_table(p).assign(_table=p) for p in paths]
    df = pd.concat(frames, ignore_index=True)
    keys = df[["target", "dtype", *CONFIG_COLUMNS]].astype(str).agg("_".join, axis=1)
    tables_per_key = df.assign(_key=keys).groupby("_key")["_table"].nunique()
    repeated = int(keys.map(tables_per_key).gt(1).sum())
    return (
        f"The project ships {len(paths)} tables with {len(df):,} rows; {repeated:,} rows "
        f"({100 * repeated / len(df):.0f}%) repeat a configuration (same target, dtype and config) that "
        "another table of the same target also holds."
    )


def neighbour_ceiling(df: pd.DataFrame, tol: float = 0.10) -> float:
    """Share of sweep rows within ``tol`` of the median of their neighbouring counts (both sides)."""
    hits: list[bool] = []
    lat = df["latency_ms"].to_numpy()
    for s in stair_series(df.reset_index(drop=True), min_points=3):
        v = pd.Series(lat[list(s.index)]).groupby(list(s.counts)).mean().to_numpy()
        for i in range(1, len(v) - 1):
            hits.append(abs(v[i] / np.median([v[i - 1], v[i + 1]]) - 1) <= tol)
    return float(np.mean(hits)) if hits else float("nan")


def bench_table(paths: list[str], cfg: dict[str, Any], plot_dir: Path | None) -> TableResult:
    """Fit on ``paths`` (combined), score both held-out splits, time predicting 5,000 rows, plot."""
    folds, n_estimators = int(cfg["folds"]), int(cfg["n_estimators"])
    max_rows = int(cfg["max_train_rows"])
    df = pd.concat([read_table(p) for p in paths], ignore_index=True)
    path = paths[0] if len(paths) == 1 else f"{Path(paths[0]).parent}/*.csv ({len(paths)} tables combined)"
    t0 = time.perf_counter()
    pred = LatencyPredictor(cv_folds=folds, n_estimators=n_estimators).fit(df)
    fit_s = time.perf_counter() - t0
    # Unfitted: every fold chooses its own model on its training rows (the fit above chose on all rows).
    nested = LatencyPredictor(cv_folds=int(cfg["inner_folds"]), n_estimators=n_estimators)
    count_rows = held_out_predictions(nested, df, by="count", folds=folds, max_train_rows=max_rows)
    layer_rows = held_out_predictions(nested, df, by="layer", folds=folds, max_train_rows=max_rows)
    big = pd.concat([df] * (5000 // len(df) + 1)).iloc[:5000]
    pred.predict(big.iloc[:10])
    t1 = time.perf_counter()
    pred.predict(big)
    t_pred = time.perf_counter() - t1
    stem = f"{Path(paths[0]).parent.name}_{Path(paths[0]).stem if len(paths) == 1 else 'combined'}"
    if plot_dir is not None:
        plot_predicted_vs_measured(
            count_rows, plot_dir / f"predictor_{stem}_scatter.png", title=f"{stem}: held-out counts"
        )
        plot_staircase(
            count_rows,
            plot_dir / f"predictor_{stem}_staircase.png",
            title=f"{stem}: held-out counts, longest sweep",
        )
    return TableResult(
        path=os.path.relpath(path, ROOT),
        target=pred.target_,
        backend=pred.backend_,
        device=pred.device_,
        n_rows=len(df),
        rel_spread=float((df["latency_spread_ms"] / df["latency_ms"]).median()),
        n_layers=int(pred.validation_.get("n_layer_groups", 0)),
        chosen=f"{pred.estimator_kind_} / {pred.transform_}",
        count=score_rows(count_rows, pred.target_),
        layer=score_rows(layer_rows, pred.target_),
        ceiling10=neighbour_ceiling(df),
        predict_5000_s=t_pred,
        fit_s=fit_s,
    )


def repeatability(table: str, n: int, seed: int = 0) -> dict[str, float]:
    """Re-time ``n`` random configs of a local-CPU table; compare with the table and the predictor."""
    df = read_table(table)
    pred = LatencyPredictor().fit(df)
    rng = np.random.default_rng(seed)
    sample = df.iloc[rng.choice(len(df), size=min(n, len(df)), replace=False)]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "again.csv"
        cols = list(CONFIG_COLUMNS)
        measure(str(df["target"].iloc[0]), sample[cols].to_dict("records"), out, progress=False)
        again = read_table(out)
    merged = sample.merge(again, on=cols, suffixes=("", "_again"))
    fresh = merged["latency_ms_again"].to_numpy()
    return {
        "n": float(len(merged)),
        "table_vs_fresh_within10": within_share(merged["latency_ms"].to_numpy(), fresh, 0.10),
        "predictor_vs_fresh_within10": within_share(pred.predict(merged), fresh, 0.10),
        "table_vs_fresh_median_abs_pct": float(
            np.median(np.abs(merged["latency_ms"].to_numpy() / fresh - 1)) * 100
        ),
    }


def adaptive_vs_dense(goal: float, budget_frac: float) -> dict[str, object]:
    """Dense sweep of the default model space against adaptive profiling, both timed now on this CPU."""
    space = model_space("small_resnet", (1, 1, 28, 28))
    ev = EvaluatorConfig()
    out: dict[str, object] = {"n_space": len(space)}
    with tempfile.TemporaryDirectory() as tmp:
        dense_path = Path(tmp) / "dense.csv"
        summary = measure("cpu_torch", space, dense_path, evaluator=ev, progress=False)
        dense = read_table(dense_path)
        out["dense_wall_s"] = summary.wall_s
        out["dense_count_within10"] = score_rows(
            held_out_predictions(
                LatencyPredictor(estimator="extra_trees", target_transform="log"), dense, by="count"
            ),
            "cpu_torch",
        ).within10
        runs = []
        for label, g, budget in (
            ("goal only", goal, None),
            ("goal + budget", goal, budget_frac * summary.wall_s),
        ):
            ad_path = Path(tmp) / f"adaptive_{len(runs)}.csv"
            res = adaptive_measure(
                "cpu_torch", space, ad_path, goal_within10=g, time_budget_s=budget, evaluator=ev
            )
            ad = read_table(ad_path)
            fitted = LatencyPredictor(estimator="extra_trees", target_transform="log", cv_folds=0).fit(ad)
            cols = list(CONFIG_COLUMNS)
            unmeasured = dense.merge(ad[cols], on=cols, how="left", indicator=True)
            unmeasured = unmeasured[unmeasured["_merge"] == "left_only"]
            runs.append(
                {
                    "label": label,
                    "goal": g,
                    "budget_s": budget,
                    "n_measured": res.n_measured,
                    "wall_s": res.wall_s,
                    "stop": res.stop_reason,
                    "probe_within10": res.held_out_within10,
                    "vs_dense_all_within10": within_share(
                        fitted.predict(dense), dense["latency_ms"].to_numpy(), 0.1
                    ),
                    "vs_dense_unmeasured_within10": within_share(
                        fitted.predict(unmeasured), unmeasured["latency_ms"].to_numpy(), 0.1
                    )
                    if len(unmeasured)
                    else float("nan"),
                    "rounds": len(res.rounds),
                }
            )
        out["runs"] = runs
    return out


def replay_table(
    path: str, fractions: tuple[float, ...] = (0.25, 0.5), seed: int = 0
) -> list[dict[str, float]]:
    """Adaptive vs random sampling replayed on a dense table: accuracy on the configs not picked."""
    df = read_table(path)
    cols = list(CONFIG_COLUMNS)
    dense = df.groupby(cols, as_index=False, sort=False).agg(
        latency_ms=("latency_ms", "mean"),
        target=("target", "first"),
        dtype=("dtype", "first"),
        layer=("layer", "first"),
    )
    out = []
    rng = np.random.default_rng(seed)
    for frac in fractions:
        budget = int(frac * len(dense))
        res, picked = replay_adaptive(dense, goal_within10=0.99, max_measurements=budget, random_state=seed)
        rest = dense.merge(picked[cols], on=cols, how="left", indicator=True)
        rest = rest[rest["_merge"] == "left_only"]
        model = LatencyPredictor(estimator="extra_trees", target_transform="log", cv_folds=0)
        ad_acc = within_share(model.fit(picked).predict(rest), rest["latency_ms"].to_numpy(), 0.10)
        rand_idx = rng.choice(len(dense), size=res.n_measured, replace=False)
        mask = np.zeros(len(dense), dtype=bool)
        mask[rand_idx] = True
        rand_acc = within_share(
            model.fit(dense[mask]).predict(dense[~mask]), dense.loc[~mask, "latency_ms"].to_numpy(), 0.10
        )
        out.append(
            {
                "fraction": frac,
                "n_dense": float(len(dense)),
                "n_measured": float(res.n_measured),
                "adaptive_rest_within10": ad_acc,
                "random_rest_within10": rand_acc,
                "probe_within10": res.held_out_within10,
            }
        )
    return out


def render_replay(rows: dict[str, list[dict[str, float]]]) -> str:
    L = [
        REPLAY_BEGIN,
        "## Adaptive sampling replayed on the dense tables\n",
        "To separate the sampling strategy from this VM's measurement noise, adaptive profiling is replayed "
        'on each dense table: "measuring" a config reveals its row, with the same coarse grid, rounds, '
        "uncertainty and stair-edge scores and random probes as `hwprune measure --adaptive`. After it has "
        "revealed 25% or 50% of the table, an extra-trees predictor fitted on the revealed rows is scored "
        "on every row it did not reveal, against a predictor fitted on the same number of uniformly random "
        "rows. Measurement wall time is proportional to the number of configs measured (each config costs "
        "warm-up plus 7 samples of >= 20 ms), so the share measured is the share of sweep time spent.\n",
        "| table | dense configs | measured | adaptive: rest ±10% | random: rest ±10% | probe estimate |",
        "|---|---|---|---|---|---|",
    ]
    for path, rs in rows.items():
        for r in rs:
            L.append(
                f"| `{path}` | {int(r['n_dense'])} | {int(r['n_measured'])} ({_pct(r['fraction'])}) | "
                f"{_pct(r['adaptive_rest_within10'])} | {_pct(r['random_rest_within10'])} | "
                f"{_pct(r['probe_within10'])} |"
            )
    L.append(REPLAY_END)
    return "\n".join(L) + "\n"


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.1f}%"


def render(
    results: list[TableResult],
    rep: dict[str, float] | None,
    ad: dict[str, object] | None,
    cfg: dict[str, Any],
    wall_s: float,
) -> str:
    folds, inner, max_rows = cfg["folds"], cfg["inner_folds"], int(cfg["max_train_rows"])
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cpu = machine().rsplit(",", 1)[0]
    load = os.getloadavg()
    L: list[str] = []
    L.append("# Latency predictor: measured accuracy (benchmark P1)\n")
    L.append(
        f"Generated by `python -m benchmarks.predictor` on {now}. Fits and predictions ran on {cpu} "
        f"({os.cpu_count()} vCPU, KVM guest, load average {load[0]:.1f} while this ran: the machine was "
        f"shared with other jobs). Wall time {wall_s / 60:.1f} min. Each table names the device it "
        "was *measured* on (its `device` column).\n"
    )
    L.append("## Per table: held-out accuracy\n")
    L.append(
        f"{table_counts()} *Model* column: the choice of {folds}-fold grouped CV over layer shapes "
        "among HistGradientBoosting and ExtraTrees on log latency or log latency-per-FLOP, on all rows (the "
        f"shipped predictor). The held-out scores do not reuse it: in each of the {folds} outer folds (by "
        "count: grouped by configuration, so a configuration repeated across combined tables is held out "
        "with all its copies; by layer: grouped by layer shape) the model is chosen by "
        f"{inner}-fold grouped CV on that fold's training rows only (at most {max_rows:,}). "
        "*Noise ceiling*: share of sweep rows within ±10% of the "
        "median of their two neighbouring counts (a row that jumps away from both neighbours cannot be "
        "predicted from them). *Spread*: median IQR/median of the repeats of a row.\n"
    )
    L.append(
        "| table | device | rows | spread | layer shapes | model | by count ±10% | ±5% | MAPE | "
        "stair fidelity | by layer ±10% | MAPE | noise ceiling ±10% | predict 5,000 rows |"
    )
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        L.append(
            f"| `{r.path}` | {r.device} | {r.n_rows} | {_pct(r.rel_spread)} | {r.n_layers} | {r.chosen} | "
            f"**{_pct(r.count.within10)}** | {_pct(r.count.within5)} | {r.count.mape:.1f}% | "
            f"{_pct(r.count.staircase_fidelity)} | **{_pct(r.layer.within10)}** | {r.layer.mape:.1f}% | "
            f"{_pct(r.ceiling10)} | {1000 * r.predict_5000_s:.0f} ms |"
        )
    L.append("")
    L.append("Per layer family (split by count, ±10%):\n")
    L.append("| table | " + " | ".join(["family (rows): ±5% / ±10% / MAPE"]) + " |")
    L.append("|---|---|")
    for r in results:
        fams = "; ".join(
            f"{f.family} ({f.n}): {_pct(f.within5)} / {_pct(f.within10)} / {f.mape:.1f}%"
            for f in r.count.families
        )
        L.append(f"| `{r.path}` | {fams} |")
    L.append("")
    L.append("## Against the goal (>= 99% within ±10%, <= 2,000 measurements per backend)\n")
    L.append(
        "One predictor per target; where a target has several tables they are combined, and every fold "
        f"trains on at most {max_rows:,} of its rows.\n"
    )
    per_target: dict[str, TableResult] = {}
    for r in results:
        if r.target not in per_target or "combined" in r.path:
            per_target[r.target] = r
    for t, r in per_target.items():
        met = r.count.within10 >= 0.99
        L.append(
            f"- **{t}** ({r.backend}, `{r.path}`, {r.n_rows} rows): held-out counts "
            f"**{_pct(r.count.within10)}** within ±10% (MAPE {r.count.mape:.1f}%), unseen layer shapes "
            f"**{_pct(r.layer.within10)}** (MAPE {r.layer.mape:.1f}%); noise ceiling {_pct(r.ceiling10)}. "
            + ("Goal met." if met else "Goal **not** met.")
        )
    L.append("")
    if rep is not None:
        L.append("## Measurement repeatability on this CPU\n")
        L.append(
            f"{int(rep['n'])} random configs of `tables/cpu_torch/small_resnet_28.csv` re-timed now with the "
            "same harness and settings: the table's value is within ±10% of the fresh one for "
            f"**{_pct(rep['table_vs_fresh_within10'])}** of them (median deviation "
            f"{rep['table_vs_fresh_median_abs_pct']:.1f}%); the predictor fitted on the table is within ±10% "
            f"of the fresh timing for **{_pct(rep['predictor_vs_fresh_within10'])}**. No predictor can "
            "be scored above the repeatability of its ground truth.\n"
        )
    if ad is not None:
        L.append("## Adaptive profiling (`hwprune measure --adaptive`)\n")
        L.append(
            f"Default model space (`model_space('small_resnet', (1, 1, 28, 28))`, {ad['n_space']} configs), "
            "target `cpu_torch`, timed now on this CPU. The dense sweep took "
            f"**{ad['dense_wall_s']:.0f} s**; a predictor fitted on it scores "
            f"{_pct(float(ad['dense_count_within10']))} within ±10% on held-out counts (5-fold).\n"
        )
        L.append(
            "| run | goal | budget | measured | of dense | wall | saved | stop | probes ±10% | "
            "vs dense, all rows ±10% | vs dense, unmeasured rows ±10% |"
        )
        L.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for run in ad["runs"]:  # type: ignore[union-attr]
            budget = "none" if run["budget_s"] is None else f"{run['budget_s']:.0f} s"
            saved = 1 - run["wall_s"] / float(ad["dense_wall_s"])  # type: ignore[arg-type]
            L.append(
                f"| {run['label']} | {run['goal']} | {budget} | {run['n_measured']} | "
                f"{_pct(run['n_measured'] / ad['n_space'])} | {run['wall_s']:.0f} s | {_pct(saved)} | "
                f"{run['stop']} | {_pct(run['probe_within10'])} | {_pct(run['vs_dense_all_within10'])} | "
                f"{_pct(run['vs_dense_unmeasured_within10'])} |"
            )
        L.append("")
    return "\n".join(L) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: first table, 3 folds, print only")
    ap.add_argument("--tables", nargs="*", default=None, help="tables (default: tables/**/*.csv)")
    ap.add_argument("--out", type=Path, default=None, help="markdown output (default docs/PREDICTOR.md)")
    ap.add_argument("--plot-dir", type=Path, default=ROOT / "docs", help="where the PNGs go")
    ap.add_argument("--repeat", type=int, default=0, help="re-time N configs of the CPU table")
    ap.add_argument("--adaptive", action="store_true", help="run adaptive vs dense profiling on this CPU")
    ap.add_argument("--adaptive-goal", type=float, default=0.99, help="adaptive goal (share within 10%%)")
    ap.add_argument("--adaptive-budget", type=float, default=0.4, help="budget as a fraction of dense time")
    ap.add_argument("--config", default="predictor", help="experiment config (benchmarks/conf/<name>.yaml)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    ap.add_argument(
        "--replay-only",
        action="store_true",
        help="only replay adaptive sampling on the tables; update that section of the page",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    tables = args.tables or sorted(glob.glob(str(ROOT / "tables" / "**" / "*.csv"), recursive=True))
    if not tables:
        print("no tables found under tables/", file=sys.stderr)
        return 1
    if args.replay_only:
        rows = {}
        for path in tables[:1] if args.quick else tables:
            rows[os.path.relpath(path, ROOT)] = replay_table(path)
            print(path, rows[os.path.relpath(path, ROOT)], flush=True)
        section = render_replay(rows)
        out = args.out or ROOT / "docs" / "PREDICTOR.md"
        if args.quick and args.out is None:
            print(section)
            return 0
        text = out.read_text() if out.is_file() else ""
        if REPLAY_BEGIN in text and REPLAY_END in text:
            text = text.split(REPLAY_BEGIN)[0] + section + text.split(REPLAY_END, 1)[1].lstrip("\n")
        else:
            text = text.rstrip("\n") + "\n\n" + section
        out.write_text(text)
        print(f"updated {out}")
        return 0
    cfg = load_config(args.config, quick=args.quick, overrides=args.set)
    if args.quick:
        tables = tables[:1]
    results = []
    by_target: dict[str, list[str]] = {}
    for path in tables:
        by_target.setdefault(str(Path(path).parent), []).append(path)
    jobs = [[p] for p in tables] + [ps for ps in by_target.values() if len(ps) > 1 and not args.quick]
    for paths in jobs:
        r = bench_table(paths, cfg, None if args.quick else args.plot_dir)
        print(
            f"{r.path}: count ±10% {_pct(r.count.within10)}, layer ±10% {_pct(r.layer.within10)}, "
            f"ceiling {_pct(r.ceiling10)}, fit {r.fit_s:.0f} s",
            flush=True,
        )
        results.append(r)
    rep = None
    cpu_table = ROOT / "tables" / "cpu_torch" / "small_resnet_28.csv"
    if args.repeat > 0 and cpu_table.is_file():
        rep = repeatability(str(cpu_table), args.repeat)
        print("repeatability", rep, flush=True)
    ad = adaptive_vs_dense(args.adaptive_goal, args.adaptive_budget) if args.adaptive else None
    if ad is not None:
        print("adaptive", ad, flush=True)
    text = render(results, rep, ad, cfg, time.perf_counter() - t0)
    if args.quick and args.out is None:
        print(text)
        return 0
    out = args.out or ROOT / "docs" / "PREDICTOR.md"
    # The hand-written part of the page (method, limits) sits above MARKER and is kept.
    head = out.read_text().split(MARKER)[0] if out.is_file() and MARKER in out.read_text() else ""
    old = out.read_text() if out.is_file() else ""
    if REPLAY_BEGIN in old and REPLAY_END in old:  # keep the last --replay-only section
        text += (
            "\n" + REPLAY_BEGIN + old.split(REPLAY_BEGIN, 1)[1].split(REPLAY_END, 1)[0] + REPLAY_END + "\n"
        )
    out.write_text(head + MARKER + "\n\n" + text if head else text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

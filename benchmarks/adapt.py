"""Benchmark: adapting a latency predictor to a new target from N measurements, against fitting from scratch.

For each pair (prior table -> new target's table), each seed and each N in ``--budgets``:

1. a random 20% of the new table's configurations (stratified by layer shape, seeded) is held out as the
   test set; the rest is the *pool* a user could measure;
2. :func:`hwprune.predict.adapt.select_configs` orders the pool (the prior is fitted once on the old
   table); the first N are "measured", which for the shipped pairs means looking their rows up in the new
   table (real measurements taken earlier on the new device, not timed again here);
3. :func:`hwprune.predict.adapt.adapt` fits the adapted predictor on those N rows, and a
   :class:`hwprune.predict.LatencyPredictor` with its default settings (model chosen by grouped CV, what
   ``hwprune fit`` does) is fitted from scratch on the *same* N rows;
4. both are scored on the test set: share within ±10% and ±5%, MAPE.

``full`` is the whole pool. ``--ablation`` adds, for N <= 300: each fixed correction, the raw prior
(no correction), and adapted and scratch fits on N *random* pool configurations instead of the selected
ones (what selection buys).

``--measure-here`` is the CPU pair: the prior is a shipped ``cpu_torch`` table (an Intel Xeon) and the
new target is this machine's CPU, timed now with the real harness (:func:`hwprune.measure.measure`):
``--holdout`` random configurations of the model's layer space as the test set, plus the first
max(N) selected configurations of the rest. Only the fits vary with the seed there (one measurement),
and the ablation's "random N" draws from those measured configurations, not from the whole space.
Run it on a quiet machine; rows go to ``--table-dir`` and resume if interrupted.

Usage:
    python -m benchmarks.adapt                      # GPU pairs from shipped tables, docs + raw JSON
    python -m benchmarks.adapt --ablation --seeds 5
    python -m benchmarks.adapt --measure-here --budgets 50,100,300,1000 --holdout 300 \\
        --table-dir bench_adapt_cpu --write-docs    # this CPU: measures ~1,300 configs
    python -m benchmarks.adapt --quick              # smoke run: one pair, one seed, N=50, prints only
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import platform
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hwprune.measure import CONFIG_COLUMNS, EvaluatorConfig, measure, model_space, read_table
from hwprune.predict import LatencyPredictor, within_share
from hwprune.predict.adapt import adapt, load_prior, prior_configs, select_configs
from hwprune.predict.tables import layer_shapes

log = logging.getLogger("benchmarks.adapt")

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "PREDICTOR.md"
RAW = ROOT / "docs" / "bench_raw_adapt.json"
PLOT = ROOT / "docs" / "adapt_accuracy.png"
BEGIN = "<!-- benchmarks/adapt.py output begin -->"
END = "<!-- benchmarks/adapt.py output end -->"
SUMMARY_BEGIN = "<!-- benchmarks/adapt.py summary begin -->"
SUMMARY_END = "<!-- benchmarks/adapt.py summary end -->"
GOAL_WITHIN10 = 0.95
GOAL_N = 300
TEST_SHARE = 0.2
CORRECTIONS = ("auto", "offset", "trees", "ridge_trees", "prior_feature")

C = list(CONFIG_COLUMNS)


@dataclass(frozen=True)
class Pair:
    """A prior table and a new target's table of the same network."""

    name: str
    prior: str
    new: str
    note: str


PAIRS: tuple[Pair, ...] = (
    Pair(
        "H100 -> H200 (fp32)",
        "tables/cuda_cudnn_fp32/resnet18_224.csv",
        "tables/cuda_cudnn_fp32_heuristics/paper_resnet18_224.csv",
        "across devices; settings differ too: the H100 table was timed with cudnn.benchmark on, the H200 "
        "one with it off (cuDNN's heuristics pick the algorithm)",
    ),
    Pair(
        "H200 fp32 -> fp16",
        "tables/cuda_cudnn_fp32_heuristics/paper_resnet18_224.csv",
        "tables/cuda_cudnn_fp16_heuristics/paper_resnet18_224.csv",
        "across dtypes on one card, the same configurations (cudnn.benchmark off)",
    ),
    Pair(
        "H200 TF32 batch 1 -> 32",
        "tables/cuda_cudnn_tf32/resnet18_224_b1.csv",
        "tables/cuda_cudnn_tf32/resnet18_224_b32.csv",
        "across batch sizes on one card (TF32 on, cudnn.benchmark off)",
    ),
    Pair(
        "H200 fp32 -> TF32",
        "tables/cuda_cudnn_fp32_heuristics/paper_resnet18_224.csv",
        "tables/cuda_cudnn_tf32/resnet18_224_b1.csv",
        "across kernel families on one card: fp32 with TF32 off -> TF32 on (PyTorch's default for fp32 "
        "models), both at batch 1 with cudnn.benchmark off; the pair the issue asked for (issue 19)",
    ),
)


# --------------------------------------------------------------------------------------------- helpers
def _dedup(df: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (median latency of repeats)."""
    extra = [c for c in ("target", "backend", "device", "dtype", "layer") if c in df.columns]
    return (
        df.groupby(C, as_index=False, sort=False)
        .agg({"latency_ms": "median", **{c: "first" for c in extra}})
        .reset_index(drop=True)
    )


def _split(df: pd.DataFrame, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Test / pool positions: a seeded TEST_SHARE of each layer shape is held out."""
    rng = np.random.default_rng(1000 + seed)
    shapes = np.array(layer_shapes(df.assign(dtype="float32")))
    test = np.zeros(len(df), dtype=bool)
    for s in np.unique(shapes):
        idx = np.flatnonzero(shapes == s)
        k = int(round(TEST_SHARE * len(idx)))
        test[rng.choice(idx, size=k, replace=False)] = True
    return np.flatnonzero(test), np.flatnonzero(~test)


def _keys(df: pd.DataFrame) -> list[tuple[int, ...]]:
    return [tuple(r) for r in df[C].astype(int).to_numpy().tolist()]


def _score(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    return {
        "within10": within_share(pred, true, 0.10),
        "within5": within_share(pred, true, 0.05),
        "mape": float(np.mean(np.abs(pred / true - 1.0)) * 100.0),
    }


def _setting(df: pd.DataFrame) -> dict[str, Any]:
    settings = df["settings"].dropna().astype(str) if "settings" in df.columns else pd.Series([], dtype=str)
    first = json.loads(settings.iloc[0]) if len(settings) else {}
    return {
        "target": str(df["target"].iloc[0]),
        "device": str(df["device"].iloc[0]),
        "dtype": str(df["dtype"].iloc[0]),
        "batch": sorted(int(b) for b in pd.unique(df["batch"])),
        "cudnn_benchmark": first.get("cudnn_benchmark"),
        "rows": len(df),
    }


def _machine() -> str:
    """CPU model and core count of the machine the fits run on."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return f"{model}, {os.cpu_count()} cores"


def _budgets(text: str) -> list[int | str]:
    out: list[int | str] = []
    for part in text.split(","):
        part = part.strip()
        if part == "full":
            out.append("full")
        elif part.isdigit() and int(part) >= 1:
            out.append(int(part))
        else:
            raise argparse.ArgumentTypeError(f"`--budgets` must be ints >= 1 or 'full', got {part!r}")
    return out


# ----------------------------------------------------------------------------------------------- core
def run_pair(
    name: str,
    prior: LatencyPredictor,
    pool: pd.DataFrame,
    test: pd.DataFrame,
    budgets: Sequence[int | str],
    seed: int,
    *,
    ablation: bool,
    order: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Fit and score adapted and scratch predictors for each N on one split; returns result records.

    ``order`` gives the pool's pick order when it was selected before (``--measure-here``); by default
    :func:`select_configs` orders the pool here.
    """
    labels: dict[int, int | str] = {int(b): int(b) for b in budgets if b != "full" and int(b) <= len(pool)}
    if "full" in budgets:
        labels[len(pool)] = "full"
    sizes = sorted(labels)
    if order is None:
        picked = select_configs(prior, pool, max(sizes), seed=seed)
        pos = {k: i for i, k in enumerate(_keys(pool))}
        order = np.array([pos[k] for k in _keys(pd.DataFrame(picked))])
    sel = np.asarray(order)
    rnd = np.random.default_rng(seed).permutation(len(pool))
    true = test["latency_ms"].to_numpy(dtype=float)
    lp_raw = prior.predict(prior_configs(prior, test))
    out: list[dict[str, Any]] = []

    def record(n: int, method: str, selection: str, pred: np.ndarray, wall: float, **extra: Any) -> None:
        label = labels.get(n, n)
        out.append(
            {
                "pair": name,
                "seed": seed,
                "n": label,
                "n_rows": n,
                "method": method,
                "selection": selection,
                "wall_s": round(wall, 2),
                "n_test": len(test),
                **_score(pred, true),
                **extra,
            }
        )
        log.info(
            "%s seed %d N=%s %s/%s: within10 %.3f", name, seed, label, method, selection, out[-1]["within10"]
        )

    for n in sizes:
        picks = {"selected": sel[:n]}
        if ablation and n <= GOAL_N:
            picks["random"] = rnd[:n]
        for how, idx in picks.items():
            train = pool.iloc[idx].reset_index(drop=True)
            t0 = time.perf_counter()
            ad = adapt(prior, train, random_state=seed)
            record(
                n,
                "adapted",
                how,
                ad.predict(test),
                time.perf_counter() - t0,
                correction=ad.correction_,
                self_cv_within10=ad.validation_.get("count_within10"),
            )
            t0 = time.perf_counter()
            sc = LatencyPredictor(random_state=seed).fit(train)
            record(
                n,
                "scratch",
                how,
                sc.predict(test),
                time.perf_counter() - t0,
                model=f"{sc.estimator_kind_}/{sc.transform_}",
            )
            if how == "selected" and ablation and n <= GOAL_N:
                for corr in CORRECTIONS:
                    t0 = time.perf_counter()
                    folds = 5 if corr == "auto" else 0
                    fixed = adapt(prior, train, correction=corr, cv_folds=folds, random_state=seed)
                    record(n, f"adapted:{corr}", how, fixed.predict(test), time.perf_counter() - t0)
                offset = float(
                    np.median(
                        np.log(train["latency_ms"].to_numpy() / prior.predict(prior_configs(prior, train)))
                    )
                )
                record(n, "prior+global offset", how, lp_raw * np.exp(offset), 0.0)
    if ablation:
        record(len(pool), "prior alone", "none", lp_raw, 0.0)
    return out


def _shipped_task(pair: Pair, budgets: Sequence[int | str], seed: int, ablation: bool) -> list[dict]:
    """One pair and seed (a process of its own with ``--jobs``)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("hwprune").setLevel(logging.WARNING)
    new = _dedup(read_table(ROOT / pair.new))
    prior = load_prior(ROOT / pair.prior)
    te, po = _split(new, seed)
    return run_pair(
        pair.name,
        prior,
        new.iloc[po].reset_index(drop=True),
        new.iloc[te].reset_index(drop=True),
        budgets,
        seed,
        ablation=ablation,
    )


def run_shipped(
    pairs: Sequence[Pair], budgets: Sequence[int | str], seeds: int, ablation: bool, jobs: int = 1
) -> list[dict]:
    """The GPU pairs: measurements are lookups in the new target's shipped table."""
    tasks = [(pair, budgets, seed, ablation) for pair in pairs for seed in range(seeds)]
    if jobs <= 1:
        return [r for t in tasks for r in _shipped_task(*t)]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=jobs) as pool:  # each fit is single-threaded: one task per core
        return [r for rs in pool.map(_shipped_task, *zip(*tasks, strict=True)) for r in rs]


def run_here(args: argparse.Namespace) -> tuple[Pair, list[dict[str, Any]], dict[str, Any]]:
    """The CPU pair: time the selected and held-out configurations on this machine now."""
    from hwprune.measure.device_info import collect

    prior = load_prior(ROOT / args.prior if not Path(args.prior).is_absolute() else args.prior)
    space = pd.DataFrame(model_space(args.model, args.input, step=args.step))
    space = space.drop_duplicates(subset=C).reset_index(drop=True)
    rng = np.random.default_rng(args.measure_seed)
    hold = np.sort(rng.choice(len(space), size=min(args.holdout, len(space) // 2), replace=False))
    pool_space = space.drop(index=hold).reset_index(drop=True)
    sizes = [b for b in args.budgets if b == "full" or int(b) <= len(pool_space)]
    most = len(pool_space) if "full" in sizes else max(int(b) for b in sizes)
    order = select_configs(prior, pool_space, most, seed=args.measure_seed)
    info = collect()
    cpu = str(info.get("cpu", {}).get("model", platform.processor() or "cpu"))
    table = Path(args.table_dir) / f"{re.sub(r'[^A-Za-z0-9]+', '_', cpu).strip('_')}_{args.model}.csv"
    ev = EvaluatorConfig(repeat=args.repeat, min_repeat_ms=args.min_repeat_ms)
    todo = space.iloc[hold].to_dict("records") + order
    log.info(
        "measuring %d configs (%d held out, %d selected) on %s into %s",
        len(todo),
        len(hold),
        most,
        cpu,
        table,
    )
    measure(
        "cpu_torch",
        todo,
        table,
        evaluator=ev,
        progress=True,
        shuffle_seed=args.measure_seed,
        sidecar={"load_note": args.load_note or "benchmarks/adapt.py --measure-here"},
    )
    rows = _dedup(read_table(table))
    have = {k: i for i, k in enumerate(_keys(rows))}
    test = rows.iloc[[have[k] for k in _keys(space.iloc[hold]) if k in have]].reset_index(drop=True)
    measured_order = [have[k] for k in _keys(pd.DataFrame(order)) if k in have]
    pool = rows.iloc[measured_order].reset_index(drop=True)  # in pick order: run_pair re-selects the same
    pair = Pair(
        f"{prior.device_} -> {cpu} (cpu_torch)",
        args.prior,
        str(table),
        "across CPUs; the new rows were timed on this machine by this run",
    )
    results: list[dict[str, Any]] = []
    for seed in range(args.seeds):
        results += run_pair(
            pair.name, prior, pool, test, sizes, seed, ablation=args.ablation, order=np.arange(len(pool))
        )
    meta = {
        "cpu": cpu,
        "loadavg_note": args.load_note,
        "holdout": len(test),
        "selected": len(pool),
        "space": {"model": args.model, "input": list(args.input), "step": args.step},
    }
    return pair, results, meta


# --------------------------------------------------------------------------------------------- report
def summarise(results: list[dict[str, Any]]) -> pd.DataFrame:
    """Median, min and max over seeds of each pair / N / method / selection."""
    df = pd.DataFrame(results)
    g = df.groupby(["pair", "n", "n_rows", "method", "selection"], sort=False)
    out = g.agg(
        within10=("within10", "median"),
        within10_min=("within10", "min"),
        within10_max=("within10", "max"),
        within5=("within5", "median"),
        mape=("mape", "median"),
        mape_min=("mape", "min"),
        mape_max=("mape", "max"),
        seeds=("seed", "nunique"),
    ).reset_index()
    return out


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def report(pairs: Sequence[Pair], results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The markdown block written into docs/PREDICTOR.md."""
    s = summarise(results)
    made = "; ".join(
        f"`python -m benchmarks.adapt {r['argv']}` on {r['date']}, fits on {r['machine']} "
        f"({r['wall_min']:.1f} min)"
        for r in meta["runs"]
    )
    lines = [
        f"Generated by {made}. Median over {meta['seeds']} seeds "
        "(each seed: another held-out split, selection tie-break and fit seed), [min-max] in brackets. "
        "Held-out: for the shipped pairs a random 20% of the new table's configurations per layer shape, "
        "for a `--measure-here` pair `--holdout` random configurations of the layer space timed in the same "
        "run; never measured by either predictor. N counts the rows each predictor was fitted on (the same "
        "N rows for both; the better share within ±10% in bold). *Its own CV estimate*: the adapted "
        "predictor's cross-validated share within ±10% on its N rows (`validation_`), the figure a user "
        "sees without a held-out set.",
        "",
    ]
    for pair in pairs:
        part = s[(s["pair"] == pair.name) & (s["selection"] == "selected")]
        if part.empty:
            continue
        sub = [r for r in results if r["pair"] == pair.name]
        n_test = meta["n_test"].get(pair.name, "?")
        lines += [
            f"**{pair.name}** (`{pair.prior}` -> `{pair.new}`; {pair.note}; {n_test} held-out configs)",
            "",
            "| N | adapted ±10% | scratch ±10% | adapted MAPE | scratch MAPE | adapted ±5% | scratch ±5% | "
            "its own CV estimate |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for n in pd.unique(part["n"]):
            a = part[(part["n"] == n) & (part["method"] == "adapted")].iloc[0]
            b = part[(part["n"] == n) & (part["method"] == "scratch")].iloc[0]
            own = [
                r["self_cv_within10"]
                for r in sub
                if r["n"] == n and r["method"] == "adapted" and r["selection"] == "selected"
            ]
            cell_a = f"{_pct(a.within10)} [{_pct(a.within10_min)}-{_pct(a.within10_max)}]"
            cell_b = f"{_pct(b.within10)} [{_pct(b.within10_min)}-{_pct(b.within10_max)}]"
            if a.within10 > b.within10:
                cell_a = f"**{cell_a}**"
            elif b.within10 > a.within10:
                cell_b = f"**{cell_b}**"
            lines.append(
                f"| {n} | {cell_a} | {cell_b} | {a.mape:.1f}% | {b.mape:.1f}% | {_pct(a.within5)} | "
                f"{_pct(b.within5)} | {_pct(float(np.median(own)))} |"
            )
        alone = s[(s["pair"] == pair.name) & (s["method"] == "prior alone")]
        if not alone.empty:
            lines.append(
                f"\nThe prior alone, with no new measurement: {_pct(alone.iloc[0].within10)} within ±10%."
            )
        small = part[(part["method"] == "adapted") & (part["n_rows"] <= GOAL_N)]
        met = small[small["within10"] >= GOAL_WITHIN10]
        lines += [
            "",
            f"Goal (>= {100 * GOAL_WITHIN10:.0f}% of held-out configs within ±10% with N <= {GOAL_N}): "
            + (
                "**met** at N = " + str(met.iloc[0]["n"])
                if len(met)
                else f"**not met** (best at N <= {GOAL_N}: {_pct(small['within10'].max())})"
            ),
            "",
        ]
    abl = s[s["method"].str.startswith(("adapted:", "prior")) | (s["selection"] == "random")]
    if not abl.empty:
        lines += [
            "**Ablation** (median ±10% over seeds; N <= 300): each fixed correction, the prior with one "
            "global offset, and adapted/scratch fits on N random configurations instead of selected ones.",
            "",
        ]
        cols = [
            "adapted (blend)",
            *[f"adapted:{c}" for c in CORRECTIONS],
            "prior+global offset",
            "adapted, random N",
            "scratch, random N",
        ]
        lines += ["| pair | N | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
        for (pair_name, n), grp in s[s["n_rows"] <= GOAL_N].groupby(["pair", "n"], sort=False):

            def val(method: str, selection: str, grp: pd.DataFrame = grp) -> str:
                r = grp[(grp["method"] == method) & (grp["selection"] == selection)]
                return _pct(r.iloc[0].within10) if len(r) else "-"

            cells = [
                val("adapted", "selected"),
                *[val(f"adapted:{c}", "selected") for c in CORRECTIONS],
                val("prior+global offset", "selected"),
                val("adapted", "random"),
                val("scratch", "random"),
            ]
            if all(c == "-" for c in cells[1:]):
                continue
            lines.append(f"| {pair_name} | {n} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append("![adapted against scratch: share within ±10% against N](adapt_accuracy.png)")
    return "\n".join(lines)


def equal_n_summary(pairs: Sequence[Pair], results: list[dict[str, Any]]) -> str:
    """The head of docs/PREDICTOR.md's adaptation section: adapted against scratch at equal N, every pair.

    One row per pair, one column per N: the adapted and the scratch predictor's median share of held-out
    configurations within ±10%, fitted on the same N selected rows, and their difference in points.
    """
    s = summarise(results)
    s = s[(s["selection"] == "selected") & s["method"].isin(["adapted", "scratch"])]
    ns = list(dict.fromkeys(str(n) for n in s["n"]))
    ns.sort(key=lambda n: (n == "full", int(n) if n.isdigit() else 0))
    lines = [
        "**Adapted against scratch at equal N** (median share of held-out configurations within ±10%: "
        "adapted / from scratch, fitted on the same N rows, and the difference in points; generated by "
        "`benchmarks/adapt.py`, details below):",
        "",
        "| pair | " + " | ".join(f"N = {n}" for n in ns) + " |",
        "|---|" + "---|" * len(ns),
    ]
    wins: dict[str, list[float]] = {n: [] for n in ns}
    for pair in pairs:
        part = s[s["pair"] == pair.name]
        if part.empty:
            continue
        cells = []
        for n in ns:
            a = part[(part["n"].astype(str) == n) & (part["method"] == "adapted")]
            b = part[(part["n"].astype(str) == n) & (part["method"] == "scratch")]
            if a.empty or b.empty:
                cells.append("-")
                continue
            d = 100 * (a.iloc[0].within10 - b.iloc[0].within10)
            wins[n].append(d)
            cells.append(f"{_pct(a.iloc[0].within10)} / {_pct(b.iloc[0].within10)} ({d:+.1f})")
        lines.append(f"| {pair.name} | " + " | ".join(cells) + " |")
    said = []
    for n in ns:
        d = wins[n]
        if d:
            ahead = sum(x > 2.0 for x in d)
            behind = sum(x < -2.0 for x in d)
            said.append(
                f"N = {n}: adapted ahead by more than 2 points on {ahead} of {len(d)} pairs, behind by more "
                f"than 2 on {behind}"
            )
    lines += ["", "; ".join(said) + "."]
    return "\n".join(lines)


def readme_sentence(raw: dict[str, Any], n: str = str(GOAL_N)) -> str:
    """The README's adaptation figure: adapted / scratch at N = ``n`` on every pair of the raw file."""
    s = summarise(raw["results"])
    s = s[(s["selection"] == "selected") & (s["n"].astype(str) == n)]
    parts = []
    for q in raw["pairs"]:
        a = s[(s["pair"] == q["name"]) & (s["method"] == "adapted")]
        b = s[(s["pair"] == q["name"]) & (s["method"] == "scratch")]
        if len(a) and len(b):
            parts.append(f"{_pct(a.iloc[0].within10)} / {_pct(b.iloc[0].within10)} ({q['name']})")
    return (
        f"**no better than a fit from scratch on the same rows**: at N = {n}, adapted / scratch within ±10% "
        + ", ".join(parts)
    )


def plot(pairs: Sequence[Pair], results: list[dict[str, Any]], path: Path) -> Path:
    """Share within ±10% against N, adapted and scratch, one panel per pair."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = summarise(results)
    names = [p.name for p in pairs if (s["pair"] == p.name).any()]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        part = s[(s["pair"] == name) & (s["selection"] == "selected")]
        for method, color in (("adapted", "tab:blue"), ("scratch", "tab:orange")):
            m = part[part["method"] == method].sort_values("n_rows")
            ax.plot(m["n_rows"], 100 * m["within10"], "o-", color=color, label=method)
            ax.fill_between(
                m["n_rows"], 100 * m["within10_min"], 100 * m["within10_max"], color=color, alpha=0.2
            )
        alone = s[(s["pair"] == name) & (s["method"] == "prior alone")]
        if not alone.empty:
            ax.axhline(100 * alone.iloc[0].within10, color="grey", ls=":", label="prior alone")
        ax.axhline(100 * GOAL_WITHIN10, color="red", ls="--", lw=0.8, label="goal 95%")
        ax.axvline(GOAL_N, color="red", ls=":", lw=0.8)
        ax.set_xscale("log")
        top = int(part["n_rows"].max())
        ticks = [t for t in (50, 100, 300, 1000) if 1.3 * t <= top]
        ax.set_xticks([*ticks, top])
        ax.set_xticklabels([*map(str, ticks), f"full\n{top}"])
        ax.minorticks_off()
        ax.set_ylim(0, 100)
        ax.set_xlabel("N measured on the new target")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("held-out within ±10% (%)")
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _splice(text: str, begin: str, end: str, block: str) -> str:
    if begin not in text or end not in text:
        raise RuntimeError(f"{DOC} lacks the markers {begin!r} / {end!r}")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{block}\n{end}{tail}"


def write_docs(block: str, summary: str | None = None) -> None:
    """Replace the blocks between the markers in docs/PREDICTOR.md (the summary at the section's head)."""
    text = _splice(DOC.read_text(), BEGIN, END, block)
    if summary is not None:
        text = _splice(text, SUMMARY_BEGIN, SUMMARY_END, summary)
    DOC.write_text(text)


def doc_pairs(raw: dict[str, Any]) -> list[Pair]:
    """The raw file's pairs in the docs' order: the shipped pairs first, then those measured here."""
    all_pairs = [Pair(q["name"], q["prior"], q["new"], q["note"]) for q in raw["pairs"]]
    shipped = [q for q in all_pairs if q.name in {p.name for p in PAIRS}]
    return shipped + [q for q in all_pairs if q not in shipped]


def _write_docs(raw: dict[str, Any], plot_path: Path) -> None:
    """The report block into docs/PREDICTOR.md and the plot, from raw results."""
    all_pairs = doc_pairs(raw)
    n_test = {}
    for q in all_pairs:
        res = [r for r in raw["results"] if r["pair"] == q.name]
        n_test[q.name] = res[0].get("n_test", "?") if res else "?"
    runs = raw["runs"]
    block = report(
        all_pairs,
        raw["results"],
        {
            "runs": runs,
            "seeds": max(r["seed"] for r in raw["results"]) + 1,
            "n_test": n_test,
        },
    )
    write_docs(block, equal_n_summary(all_pairs, raw["results"]))
    plot(all_pairs, raw["results"], plot_path)
    log.info("wrote %s and %s", DOC, plot_path)


# ----------------------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.adapt", description=__doc__.split("\n")[0])
    p.add_argument("--budgets", type=_budgets, default=_budgets("50,100,300,1000,full"))
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--pairs", default=None, help="comma-separated indexes into the GPU pairs (default all)")
    p.add_argument("--ablation", action="store_true", help="fixed corrections, random selection (N <= 300)")
    p.add_argument("--jobs", type=int, default=1, help="processes for the shipped pairs (one per pair/seed)")
    p.add_argument("--quick", action="store_true", help="one pair, one seed, N=50; prints, writes nothing")
    p.add_argument("--raw", type=Path, default=RAW, help="raw results JSON")
    p.add_argument("--write-docs", action="store_true", help="write the report block and the plot")
    p.add_argument(
        "--report-only", action="store_true", help="write docs and plot from the raw JSON, run nothing"
    )
    p.add_argument("--plot", type=Path, default=PLOT)
    p.add_argument("--measure-here", action="store_true", help="CPU pair: time configs on this machine")
    p.add_argument("--prior", default="tables/cpu_torch/resnet18_224.csv", help="--measure-here: prior")
    p.add_argument("--model", default="resnet18", help="--measure-here: model of the layer space")
    p.add_argument("--input", default="1,3,224,224", type=lambda t: tuple(int(x) for x in t.split(",")))
    p.add_argument("--step", type=int, default=3, help="--measure-here: channel step of the space")
    p.add_argument("--holdout", type=int, default=300, help="--measure-here: held-out configs to time")
    p.add_argument("--table-dir", default="bench_adapt_cpu", help="--measure-here: where tables go")
    p.add_argument("--repeat", type=int, default=7, help="--measure-here: timing samples per config")
    p.add_argument("--min-repeat-ms", type=float, default=20.0, help="--measure-here: shortest sample")
    p.add_argument("--measure-seed", type=int, default=0, help="--measure-here: held-out draw and order")
    p.add_argument("--load-note", default=None, help="--measure-here: note on machine load (sidecar)")
    p.add_argument(
        "--append",
        action="store_true",
        help="merge into the existing raw JSON (e.g. the CPU pair next to the GPU pairs)",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("hwprune").setLevel(logging.WARNING)
    t0 = time.perf_counter()
    meta: dict[str, Any] = {}
    if args.quick:
        args.budgets, args.seeds = [50], 1
        results = run_shipped(PAIRS[:1], args.budgets, 1, ablation=False)
        print(summarise(results).to_string())
        return 0
    if args.report_only:
        _write_docs(json.loads(args.raw.read_text()), args.plot)
        return 0
    if args.measure_here:
        pair, results, meta["here"] = run_here(args)
        pairs: list[Pair] = [pair]
    else:
        pairs = list(PAIRS) if args.pairs is None else [PAIRS[int(i)] for i in args.pairs.split(",")]
        results = run_shipped(pairs, args.budgets, args.seeds, args.ablation, args.jobs)
    raw: dict[str, Any] = {"pairs": [], "results": []}
    if args.append and args.raw.is_file():
        raw = json.loads(args.raw.read_text())
        names = {p.name for p in pairs}
        raw["pairs"] = [q for q in raw["pairs"] if q["name"] not in names]
        raw["results"] = [r for r in raw["results"] if r["pair"] not in names]
    for pair in pairs:
        new_rows = read_table(pair.new if Path(pair.new).is_absolute() else ROOT / pair.new)
        prior_rows = read_table(ROOT / pair.prior if not Path(pair.prior).is_absolute() else pair.prior)
        n_test = sorted({r["n_rows"] for r in results if r["pair"] == pair.name})
        raw["pairs"].append(
            {
                **asdict(pair),
                "prior_setting": _setting(prior_rows),
                "new_setting": _setting(new_rows),
                "pool_sizes": n_test,
            }
        )
    raw["results"] += results
    argv_text = " ".join(argv) if argv is not None else " ".join(__import__("sys").argv[1:])
    raw["runs"] = [
        *raw.get("runs", []),
        {
            "argv": argv_text,
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": _machine(),
            "wall_min": (time.perf_counter() - t0) / 60,
            **meta,
        },
    ]
    args.raw.parent.mkdir(parents=True, exist_ok=True)
    args.raw.write_text(json.dumps(raw, indent=1, default=str))
    log.info("wrote %s", args.raw)
    print(summarise(results).to_string())
    if args.write_docs:
        _write_docs(raw, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

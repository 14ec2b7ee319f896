"""Reproduce the seed paper's layer-level findings from the shipped measurement tables.

Radu et al. (IISWC 2019) found that removing 12% of a layer's channels can make it 2x slower, and that
performance-aware pruning gave 3x (cuDNN) and over 10x (ACL, TVM) speedups. For every finely swept layer
(>= 10 channel counts) of every shipped table, at each batch, this reports:

* uninstructed pruning: the measured latency at 12% of the output channels removed, against dense;
* the worst measured slowdown over 0-50% removed, and how many counts there are > 5% slower than dense;
* hwprune: the friendly counts (``hwprune.staircase.friendly_counts`` on a ``LatencyPredictor`` fitted on
  that table: in-sample, so optimistic) in the same range, the best measured speedup among them and how
  many of them measured > 5% slower than dense;

and writes ``docs/REPRODUCTION.md`` with staircase plots ``docs/repro_*.png``.

    python -m benchmarks.reproduce_paper
    python -m benchmarks.reproduce_paper --quick --out /tmp/r   # one table
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import ROOT, stamp
from hwprune.callbacks.predictor_factory import FAST_PREDICTOR
from hwprune.contract import CONFIG_COLUMNS
from hwprune.predict import LatencyPredictor
from hwprune.staircase import SLOWDOWN_TOLERANCE, friendly_counts, is_slowdown

CONFIG = list(CONFIG_COLUMNS)
SLOW = f"{SLOWDOWN_TOLERANCE:.0%}"  # "5%": what the prose calls slower (hwprune.staircase.is_slowdown)


def _lat_at(sweep: pd.DataFrame, count: int) -> tuple[int, float]:
    """Latency at the measured count nearest ``count`` (sweeps may step by more than 1)."""
    i = int(np.argmin(np.abs(sweep["out_channels"].to_numpy() - count)))
    row = sweep.iloc[i]
    return int(row["out_channels"]), float(row["latency_ms"])


SHAPE_KEYS = ["batch", "in_channels", "height", "width", "kernel_size", "stride", "groups"]


def _sweeps(df: pd.DataFrame, path: Path) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """One (layer config, rows) pair per swept layer of a table.

    A ``paper_<model>_224`` table is cut along the model's own convs: for each distinct conv shape, the
    rows of that shape with ``C/2 <= out_channels <= C`` (a narrower conv of the same shape is measured
    inside a wider one's sweep, so the ``layer`` labels alone cannot split them). Other tables are
    grouped by layer label and shape (their sweeps cover a few named layers).
    """
    if path.stem.startswith("paper_"):
        from hwprune.contract import conv_layer_configs
        from hwprune.models import build_model

        model = path.stem[len("paper_") :].removesuffix("_224")
        out = []
        for b in sorted(df["batch"].unique()):
            seen: dict[tuple[int, ...], dict[str, Any]] = {}
            net = build_model(model, num_classes=1000, in_channels=3, input_size=224)
            for conv in conv_layer_configs(net, (int(b), 3, 224, 224)):
                cfg = dict(conv.config)
                key = tuple(int(cfg[k]) for k in [*SHAPE_KEYS, "out_channels"])
                if key in seen:
                    seen[key]["layer"] += ";" + conv.name
                    continue
                seen[key] = {**cfg, "layer": conv.name}
            for cfg in seen.values():
                m = np.ones(len(df), dtype=bool)
                for k in SHAPE_KEYS:
                    m &= df[k].to_numpy() == int(cfg[k])
                c = df["out_channels"].to_numpy()
                m &= (c <= cfg["out_channels"]) & (2 * c >= cfg["out_channels"])
                out.append((cfg, df[m]))
        return out
    keys = ["layer", *SHAPE_KEYS]
    # Depthwise layers vary in/out/groups together; grouping by shape keeps one sweep per layer shape.
    return [(dict(zip(keys, key, strict=True)), g) for key, g in df.groupby(keys)]


def analyse_table(path: Path, quick: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    df = pd.read_csv(path)
    df = df[df["latency_ms"].notna() & (df["latency_ms"] > 0)]
    side = json.loads(path.with_suffix(".json").read_text()) if path.with_suffix(".json").is_file() else {}
    t0 = time.perf_counter()
    pred = LatencyPredictor(**{**FAST_PREDICTOR, "n_estimators": 50} if quick else FAST_PREDICTOR).fit(path)
    fit_s = time.perf_counter() - t0
    rows = []
    for cfg, g in _sweeps(df, path):
        g = g.groupby("out_channels", as_index=False)["latency_ms"].median().sort_values("out_channels")
        if len(g) < 10:
            continue
        C = int(g["out_channels"].max())
        if int(g["out_channels"].min()) > 0.55 * C:
            continue
        dense = float(g[g["out_channels"] == C]["latency_ms"].iloc[0])
        c12, l12 = _lat_at(g, round(0.88 * C))
        rng = g[(g["out_channels"] >= 0.5 * C) & (g["out_channels"] <= C)]
        worst_i = int(rng["latency_ms"].to_numpy().argmax())
        worst = float(rng["latency_ms"].iloc[worst_i]) / dense
        slow_counts = int(is_slowdown(rng["latency_ms"], dense).sum())
        layer_cfg = {
            "batch": int(cfg["batch"]),
            "in_channels": int(cfg["in_channels"]),
            "out_channels": C,
            "height": int(cfg["height"]),
            "width": int(cfg["width"]),
            "kernel_size": int(cfg["kernel_size"]),
            "stride": int(cfg["stride"]),
            "padding": int(cfg["kernel_size"]) // 2,
            "groups": int(cfg["groups"]),
        }
        if layer_cfg["groups"] > 1:
            layer_cfg["groups"] = C  # depthwise: vary_channels keeps in = out = groups
            layer_cfg["in_channels"] = C
        try:
            fr = friendly_counts(pred, layer_cfg, max_channels=C, min_channels=max(1, int(np.ceil(0.5 * C))))
        except ValueError:
            fr = [C]
        measured = set(int(c) for c in rng["out_channels"])
        fr_meas = [c for c in fr if c in measured and c < C]
        fr_lat = {c: float(rng[rng["out_channels"] == c]["latency_ms"].iloc[0]) for c in fr_meas}
        best = max((dense / v for v in fr_lat.values()), default=None)
        fr_slow = sum(is_slowdown(v, dense) for v in fr_lat.values())
        # The oracle: friendly counts read off the measured curve itself (what a perfect predictor gives).
        oracle = max((dense / v for v in rng[rng["out_channels"] < C]["latency_ms"]), default=None)
        rows.append(
            {
                "table": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
                "target": str(df["target"].iloc[0]),
                "device": str(df["device"].iloc[0]),
                "layer": cfg["layer"],
                "batch": int(cfg["batch"]),
                "shape": f"{int(cfg['in_channels'])}->{C} "
                f"@{int(cfg['height'])} k{int(cfg['kernel_size'])} s{int(cfg['stride'])}"
                + (" dw" if int(cfg["groups"]) > 1 else ""),
                "counts": len(rng),
                "dense_ms": dense,
                "c12": c12,
                "ratio12": l12 / dense,
                "worst": worst,
                "worst_count": int(rng["out_channels"].iloc[worst_i]),
                "slow_counts": slow_counts,
                "friendly_measured": len(fr_meas),
                "friendly_slow": fr_slow,
                "best_friendly": best,
                "best_any": oracle,
                "curve": g.to_dict("list"),
            }
        )
        if quick and len(rows) >= 2:
            break
    runs = side.get("runs", [])
    cost = {
        "table": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
        "rows": len(df),
        "measure_wall_s": sum(r.get("wall_s", 0) for r in runs),
        "measured": sum(r.get("measured", 0) for r in runs),
        "fit_s": fit_s,
        "device": str(df["device"].iloc[0]),
        "note": side.get("sidecar_note", "") or side.get("load_note", ""),
    }
    return rows, cost


def plot(rows: list[dict[str, Any]], out: Path, name: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    n = len(rows)
    if n == 0:
        return None
    cols = min(4, n)
    nr = (n + cols - 1) // cols
    fig, axes = plt.subplots(nr, cols, figsize=(4 * cols, 3 * nr), squeeze=False)
    for ax, r in zip(axes.flat, rows, strict=False):
        c = np.asarray(r["curve"]["out_channels"])
        lat = np.asarray(r["curve"]["latency_ms"])
        ax.plot(c, lat / r["dense_ms"], lw=1)
        ax.axhline(1.0, color="grey", ls="--", lw=0.8)
        ax.axvline(r["c12"], color="C3", ls=":", lw=1, label="12% removed")
        ax.set_title(f"{r['layer']} b{r['batch']} {r['shape']}", fontsize=7)
        ax.set_xlabel("out channels", fontsize=7)
        ax.set_ylabel("latency / dense", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"{name}: {rows[0]['device']}", fontsize=9)
    fig.tight_layout()
    fn = f"repro_{name}.png"
    fig.savefig(out / fn, dpi=80)
    plt.close(fig)
    return fn


def paper_summary(rows: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Group the layer rows of the ``paper_<model>_224`` tables by (target, model)."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        stem = Path(r["table"]).stem
        if stem.startswith("paper_") and r["batch"] == 1:
            out.setdefault((r["target"], stem[len("paper_") :].removesuffix("_224")), []).append(r)
    return out


def _f(v: Any, nd: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "docs"))
    ap.add_argument("--quick", action="store_true", help="one table, two layers")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tables = sorted((ROOT / "tables").glob("*/*.csv"))
    if args.quick:
        tables = [ROOT / "tables/cpu_torch/small_resnet_28.csv"]
    st = stamp()
    L = [
        "# Reproducing the seed paper's layer-level findings (issue 6, part 1)",
        "",
        f"Generated by `benchmarks/reproduce_paper.py` on {st['date']} at commit {st['commit']} (analysis on "
        f"{st['machine']}). Source: the shipped measurement tables; each names the device it was measured on "
        "(below). Every finely swept layer (>= 10 output-channel counts down to <= 55% of the dense "
        "width) at "
        "each batch size. 'Friendly' = `hwprune.staircase.friendly_counts` from a `LatencyPredictor` "
        "fitted on the same table (in-sample, so optimistic), restricted to counts that were measured; "
        f"'slower' = > {SLOW} slower than the dense layer. 'Best any' = the best measured "
        "count in the range (an oracle).",
        "",
        "| | paper (Radu et al. 2019, embedded GPUs/CPUs) | here |",
        "|---|---|---|",
    ]
    all_rows: list[dict[str, Any]] = []
    costs = []
    per_table: dict[str, list[dict[str, Any]]] = {}
    for t in tables:
        rows, cost = analyse_table(t, args.quick)
        all_rows += rows
        costs.append(cost)
        per_table[t.parent.name + "_" + t.stem] = rows
    # Headlines from the paper-setting tables (every conv, batch 1, default heuristics); the finer sweeps of
    # other tables hold the b1 cudnn.benchmark spikes and a TVM table whose dense config alone was tuned.
    paper_rows = [r for rows in paper_summary(all_rows).values() for r in rows] or all_rows
    worst12 = max(paper_rows, key=lambda r: r["ratio12"]) if paper_rows else None
    worst = max(paper_rows, key=lambda r: r["worst"]) if paper_rows else None
    n12 = sum(is_slowdown(r["ratio12"], 1.0) for r in paper_rows)

    def best_for(prefix: str) -> dict | None:
        sel = [r for r in all_rows if r["target"].startswith(prefix) and r["best_friendly"]]
        return max(sel, key=lambda r: r["best_friendly"]) if sel else None

    bc, bt, bp = best_for("cuda_cudnn"), best_for("cpu_tvm"), best_for("cpu_torch")
    L += [
        f"| slowdown from removing 12% of channels | up to 2x | worst "
        f"{_f(worst12['ratio12'] if worst12 else None)}x "
        f"({worst12['target'] + ' ' + worst12['layer'] + ' b' + str(worst12['batch']) if worst12 else ''}); "
        f"{n12} of {len(paper_rows)} conv shapes > 5% slower at 12% removed (paper-setting tables) |",
        f"| worst slowdown, 0-50% removed | - | {_f(worst['worst'] if worst else None)}x "
        f"({worst['target'] + ' ' + worst['layer'] + ' b' + str(worst['batch']) if worst else ''}) |",
        f"| perf-aware speedup, cuDNN | 3x (model level, Jetson TX2) | best friendly count, one layer, "
        f"<= 50% removed: {_f(bc['best_friendly'] if bc else None)}x |",
        f"| perf-aware speedup, TVM | > 10x | {_f(bt['best_friendly'] if bt else None)}x (TVM llvm "
        f"on this CPU, "
        "mostly untuned schedules, see below) |",
        "| perf-aware speedup, ACL | > 10x | not measured: ACL needs an Arm board (Mali GPU / "
        "NEON); none here |",
        f"| torch CPU (oneDNN), not in the paper | - | {_f(bp['best_friendly'] if bp else None)}x |",
        "",
        "Range caveat: the paper's speedups are for whole networks pruned further than 50% of a layer; here "
        "each layer is limited to 0-50% removed, so a layer-level best is bounded near 2x unless the "
        "staircase has a cliff. The whole-network speedups are in `docs/BENCHMARKS.md`.",
        "",
        "## The paper's setting: every conv of ResNet-18, VGG-16 and ResNet-50 at 224x224, batch 1",
        "",
        "Tables `tables/<target>/paper_<model>_224.csv`, measured by `benchmarks/paper_sweep.py` (cuDNN: "
        "`scripts/device_paper_cudnn.sh` on the lent GPU, cudnn.benchmark off = PyTorch's default "
        "heuristics, TF32 off). Each distinct conv shape is swept over 0-50% of its output channels removed "
        "(every count up to 512 channels on cuDNN, up to 256 on the CPU, then every 2nd/4th/8th), plus the "
        "exact count at 12% removed. One row per (target, model):",
        "",
        "| target | model | conv shapes | 12% removed: median x dense | 12% removed: worst x dense "
        "| shapes where 12% removed is > 5% slower | worst x dense, 0-50% removed | counts > 5% slower "
        "| hwprune friendly counts > 5% slower | best friendly speedup: median / max |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (tgt, model), rows in sorted(paper_summary(all_rows).items()):
        r12 = [r["ratio12"] for r in rows]
        bf = [r["best_friendly"] for r in rows if r["best_friendly"]]
        L.append(
            f"| {tgt} | {model} | {len(rows)} | {np.median(r12):.2f} | {max(r12):.2f} | "
            f"{sum(is_slowdown(x, 1.0) for x in r12)} of {len(rows)} | {max(r['worst'] for r in rows):.2f} | "
            f"{sum(r['slow_counts'] for r in rows)} of {sum(r['counts'] for r in rows)} | "
            f"{sum(r['friendly_slow'] for r in rows)} of {sum(r['friendly_measured'] for r in rows)} | "
            f"{_f(float(np.median(bf)) if bf else None)} / {_f(max(bf) if bf else None)} |"
        )
    L += [
        "",
        "Reading it: cuDNN fp16 is where the paper's finding holds most strongly (channel counts off "
        "multiples of 8 leave the tensor-core kernels), fp32 has fewer but taller stairs, and the "
        "oneDNN CPU has low ones. Untuned TVM (`cpu_tvm_llvm_untuned`: default schedules, plain loops) is "
        "nearly linear in the channel count, with no stairs: the paper's TVM stairs come from tuned "
        "schedules, and tuning a single config took 482 s on this CPU (`tables/cpu_tvm_llvm`), so the "
        "tuned sweeps were not run. ACL: not measured (no Arm board here).",
        "",
        "Other tables (below) hold finer sweeps of a few layers at batch 1 and 32 (cuDNN with "
        "cudnn.benchmark on), the default model's layers (28x28) and the Fashion-MNIST-size GPU tables.",
        "",
    ]
    for name, rows in per_table.items():
        if not rows:
            continue
        L += [
            f"## {name} ({rows[0]['device']})",
            "",
            "| layer | batch | shape | counts 50-100% | dense ms | 12% removed: count, x dense | "
            "worst x dense "
            "(count) | counts slower | friendly measured | friendly slower | best friendly speedup "
            "| best any |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            L.append(
                f"| {r['layer']} | {r['batch']} | {r['shape']} | {r['counts']} | {r['dense_ms']:.4f} | "
                f"{r['c12']}, {r['ratio12']:.2f} | {r['worst']:.2f} ({r['worst_count']}) | "
                f"{r['slow_counts']} | "
                f"{r['friendly_measured']} | {r['friendly_slow']} | {_f(r['best_friendly'])} | "
                f"{_f(r['best_any'])} |"
            )
        fn = plot(rows, out, name)
        tot = sum(r["slow_counts"] for r in rows)
        ftot = sum(r["friendly_slow"] for r in rows)
        fm = sum(r["friendly_measured"] for r in rows)
        L += [
            "",
            f"Totals: {tot} of {sum(r['counts'] for r in rows)} measured counts > 5% slower than dense "
            f"(uninstructed pruning can land on any of them); hwprune's friendly counts: {ftot} of "
            f"{fm} slower.",
            "",
        ]
        if fn:
            L += [f"![staircases {name}]({fn})", ""]
    L += [
        "## P4: profiling cost per backend (from the tables' sidecars)",
        "",
        "| table | device | rows | configs measured | measuring wall s | predictor fit s (here) | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in costs:
        L.append(
            f"| {c['table']} | {c['device']} | {c['rows']} | {c['measured']} | {c['measure_wall_s']:.0f} | "
            f"{c['fit_s']:.1f} | {c['note'][:160]} |"
        )
    L += [
        "",
        "The wall time is the sum of the sidecar's recorded runs (`runs[].wall_s`); a sidecar that lost "
        "its runs (see its note) shows 0. The predictor's accuracy against the P1 goal is in "
        "`docs/PREDICTOR.md` (goal >= 99% within 10% not met on any backend); so 'to the "
        "predictor's accuracy "
        "goal' cannot be stated — these are the costs of the tables as shipped.",
        "",
    ]
    (out / "REPRODUCTION.md").write_text("\n".join(L))
    (out / "reproduction.json").write_text(
        json.dumps(
            {
                "meta": st,
                "layers": [{k: v for k, v in r.items() if k != "curve"} for r in all_rows],
                "cost": costs,
            },
            indent=1,
        )
    )
    print(f"wrote {out}/REPRODUCTION.md: {len(all_rows)} layer sweeps from {len(tables)} tables")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

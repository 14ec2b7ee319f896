"""Write docs/MODEL_TRUE.md and its plot from the raw results of benchmarks/model_true.py.

Every figure in the page is computed here from the raw JSON files (``docs/bench_raw_model_true_*.json``);
nothing is typed by hand. Usage::

    python -m benchmarks.model_true_report            # reads docs/bench_raw_model_true_*.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

BASELINE_NAMES = ("uniform_l1", "round_to_8", "round_to_32", "global_round_to_8")
BEST_OF = ("round_to_8", "round_to_32", "global_round_to_8")


def _f(x: float | None, fmt: str = ".2f") -> str:
    return "n/a" if x is None else format(x, fmt)


def _mark(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**not met**")


def setting_goals(s: dict[str, Any], ratio: str) -> dict[str, Any]:
    """The issue's goals for one setting and budget ratio, from the raw results."""
    t = s["timings"]
    runs = s["runs"]
    key0 = f"hwprune_{ratio}_run0"
    if key0 not in t:
        return {}
    names = {r["run"]: f"hwprune_{ratio}_run{r['run']}" for r in runs}
    sp = {run: t[name]["speedup"] for run, name in names.items() if name in t}
    plan0 = runs[0]["plans"][ratio]
    predicted = plan0["predicted_speedup"]
    base = {b: t[f"{b}_{ratio}"]["speedup"] for b in BASELINE_NAMES if f"{b}_{ratio}" in t}
    best_name = max(BEST_OF, key=lambda b: base.get(b, 0.0))
    errors = []
    for name in ("dense", key0):
        pred = t[name]["predicted_ms"].get("run0")
        if pred:
            errors.append(pred / t[name]["median_ms"] - 1.0)
    checks = s.get("layer_checks", {}).get(key0, {})
    stab = abs(sp[0] - sp[1]) / sp[0] if len(sp) > 1 else None
    return {
        "measured": sp[0],
        "measured_runs": sp,
        "predicted": predicted,
        "measured_over_predicted": sp[0] / predicted if predicted else None,
        "vs_uniform": sp[0] / base["uniform_l1"] if "uniform_l1" in base else None,
        "best_baseline": best_name,
        "vs_best": sp[0] / base[best_name] if best_name in base else None,
        "whole_model_errors": errors,
        "stability": stab,
        "slow_layers": checks.get("slower"),
        "changed_layers": checks.get("changed"),
        "worst_layer": checks.get("worst"),
        "uniform_slow_layers": s.get("layer_checks", {}).get(f"uniform_l1_{ratio}", {}).get("slower"),
        "uniform_changed_layers": s.get("layer_checks", {}).get(f"uniform_l1_{ratio}", {}).get("changed"),
        "params": t[key0]["params"],
        "dense_params": t["dense"]["params"],
        "reason": plan0["reason"],
        "floor_ms": runs[0].get("floor_ms"),
        "dense_ms": t["dense"]["median_ms"],
    }


def goals_table(results: list[tuple[str, dict[str, Any]]]) -> list[str]:
    lines = [
        "| target, setting, budget | measured speedup (run 0 / run 1) | predicted "
        "| measured / predicted (>= 0.9) | whole-model error, dense / pruned (within ±10%) "
        "| vs uniform L1 (>= 1.3x) | vs best of round_to 8/32, global (>= 1.1x) | stable (<= 5%) "
        "| layers > 5% slower (0) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, s in results:
        for ratio in sorted({k.split("_")[1] for k in s["timings"] if k.startswith("hwprune_")}):
            g = setting_goals(s, ratio)
            if not g:
                continue
            runs = " / ".join(f"{v:.2f}x" for v in g["measured_runs"].values())
            errs = " / ".join(f"{100 * e:+.0f}%" for e in g["whole_model_errors"])
            err_ok = all(abs(e) <= 0.10 for e in g["whole_model_errors"]) if g["whole_model_errors"] else None
            mop = g["measured_over_predicted"]
            if g["params"] == g["dense_params"]:
                lines.append(f"| {label} {s['setting']}, {ratio} | no cut: {g['reason']} | | | | | | | |")
                continue
            lines.append(
                f"| {label} {s['setting']}, {ratio} | {runs} | {g['predicted']:.2f}x | {_f(mop)} "
                f"({_mark(mop is not None and mop >= 0.9)}) | {errs} ({_mark(err_ok)}) | "
                f"{_f(g['vs_uniform'])}x ({_mark(g['vs_uniform'] is not None and g['vs_uniform'] >= 1.3)}) | "
                f"{_f(g['vs_best'])}x vs {g['best_baseline']} "
                f"({_mark(g['vs_best'] is not None and g['vs_best'] >= 1.1)}) | "
                f"{_f(None if g['stability'] is None else 100 * g['stability'], '.0f')}% "
                f"({_mark(None if g['stability'] is None else g['stability'] <= 0.05)}) | "
                f"{g['slow_layers']} of {g['changed_layers']} (uniform L1: {g['uniform_slow_layers']} of "
                f"{g['uniform_changed_layers']}) |"
            )
    return lines


def detail(label: str, s: dict[str, Any]) -> list[str]:
    t = s["timings"]
    lines = [
        f"### {label}: {s['setting']} (input {tuple(s['input_shape'])})",
        "",
        "Each run measured its own table (2-D layer space plus the calibration variants' convs) and "
        "calibrated whole-model latency on the target:",
        "",
        "| run | profiling s | table rows | ms per M output elements | overhead ms | dispatch floor ms |",
        "|---|---|---|---|---|---|",
    ]
    for r in s["runs"]:
        lines.append(
            f"| {r['run']} | {r['profile_s']:.0f} | {r['table_rows']} | {r['elem_ms_per_m']:.4g} | "
            f"{r['overhead_ms']:.3g} | {_f(r.get('floor_ms'), '.3g')} |"
        )
    held = s["runs"][0].get("heldout", {})
    if held:
        parts = [
            f"{k.replace('_', ' ')}: {v['within10'] * 100:.0f}% within ±10% "
            f"(MAPE {v['mape']:.1f}%, n={v['n']})"
            for k, v in held.items()
            if isinstance(v, dict)
        ]
        lines += ["", "Predictor held out from the fit (run 0): " + "; ".join(parts) + "."]
    lines += [
        "",
        "| model | params | measured ms (median, IQR) | speedup vs dense (paired rounds, IQR) | "
        "predicted ms (run 0) |",
        "|---|---|---|---|---|",
    ]
    for name, v in t.items():
        lines.append(
            f"| {name} | {v['params']:,} | {v['median_ms']:.3f} ({v['iqr_ms']:.3f}) | "
            f"{v['speedup']:.2f}x ({v['speedup_iqr']:.2f}) | {_f(v['predicted_ms'].get('run0'), '.3f')} |"
        )
    lines += ["", "Closed loop per plan (predicted, measured, current ms per round):", ""]
    for r in s["runs"]:
        for ratio, p in r["plans"].items():
            rounds = "; ".join(
                f"{c['predicted_ms']:.3f} / {c['measured_ms']:.3f} / {c['current_ms']:.3f}"
                + (f" (+{c['new_configs']} configs)" if c["new_configs"] else "")
                for c in p["closed_loop"]
            )
            lines.append(f"- run {r['run']}, budget {ratio}: {rounds or 'not timed'}; {p['reason']}")
    lines.append("")
    return lines


MARK_START = "<!-- model_true:start -->"
MARK_END = "<!-- model_true:end -->"


def splice(path: Path, block: list[str]) -> None:
    """Put ``block`` into ``path`` between the markers (after the title and first paragraph if absent)."""
    if not path.exists():
        return
    text = path.read_text(encoding="utf-8")
    body = "\n".join(block)
    if MARK_START in text and MARK_END in text:
        a, b = text.index(MARK_START), text.index(MARK_END) + len(MARK_END)
        text = text[:a] + body + text[b:]
    else:
        parts = text.split("\n\n", 2)
        text = "\n\n".join([*parts[:2], body, *parts[2:]]) if len(parts) == 3 else text + "\n\n" + body
    path.write_text(text, encoding="utf-8")


def plot(results: list[tuple[str, dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(results)
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.8 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, (label, s) in zip(axes.flat, results, strict=False):
        t = s["timings"]
        ratios = sorted({k.split("_")[1] for k in t if k.startswith("hwprune_")})
        names = ["hwprune_{r}_run0", "hwprune_{r}_run1", *(f"{b}_{{r}}" for b in BASELINE_NAMES)]
        width = 0.8 / len(names)
        for i, pat in enumerate(names):
            xs, ys, es = [], [], []
            for j, r in enumerate(ratios):
                k = pat.format(r=r)
                if k in t:
                    xs.append(j + (i - len(names) / 2 + 0.5) * width)
                    ys.append(t[k]["speedup"])
                    es.append(t[k]["speedup_iqr"] / 2)
            ax.bar(xs, ys, width, yerr=es, label=pat.replace("_{r}", "").replace("{r}_", ""), capsize=2)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks(range(len(ratios)), [f"budget {r}" for r in ratios])
        ax.set_title(f"{label}\n{s['setting']}", fontsize=9)
        ax.set_ylabel("speedup vs dense (measured)")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", default="docs")
    args = ap.parse_args(argv)
    docs = Path(args.docs)
    results: list[tuple[str, dict[str, Any]]] = []
    machines = []
    for f in sorted(docs.glob("bench_raw_model_true_*.json")):
        raw = json.loads(f.read_text())
        m = raw.get("machine", {})
        where = m.get("gpu") or m.get("cpu_name") or m.get("cpu") or "cpu"
        lib = f"cuDNN {m['cudnn']}" if m.get("cudnn") else "timed with the target's thread count"
        machines.append(f"`{f.name}`: {where}, torch {m.get('torch')}, {lib}")
        where = where.split(" (")[0]
        for s in raw.get("settings", {}).values():
            results.append((f"{s['target']} ({where})", s))
    lines = [
        "# Model-true latency: measured speedups of hwprune plans (issue 11)",
        "",
        "Generated by `benchmarks/model_true_report.py` from the raw files below; every number is "
        "computed from them. The raw files come from `benchmarks/model_true.py` (GPU: "
        "`scripts/device_model_true.sh` on the lent H200, target `cuda_cudnn_tf32` = PyTorch's default "
        "for fp32 models, TF32 allowed, `cudnn.benchmark` off; CPU: this repo's 2-core VM, target "
        "`cpu_torch`, 1 thread). Weights are random (nothing is downloaded), so these are latency "
        "figures only. Speedups are medians of per-round ratios against the dense model timed in the "
        "same interleaved rounds; baselines are Torch-Pruning (L1 group magnitude) at run 0's "
        "parameter count.",
        "",
        *[f"- {m}" for m in machines],
        "",
        "## Goals",
        "",
        *goals_table(results),
        "",
    ]
    floors = [
        (label, s["setting"], r.get("floor_ms"), s["timings"]["dense"]["median_ms"])
        for label, s in results
        for r in s["runs"][:1]
    ]
    bound = [f for f in floors if f[2]]
    if bound:
        lines += [
            "## The dispatch floor: why the H200 figures are small",
            "",
            "The calibration found a dispatch floor (the time the host needs to launch the network's kernels "
            "one by one in eager PyTorch) in these runs: "
            + "; ".join(
                f"{lab.split(' (')[0]} {st}: floor {fl:.3g} ms against dense {d:.3g} ms "
                f"({d / fl:.2f}x at most)"
                for lab, st, fl, d in bound
            )
            + ". Below the floor the device waits for the host, so no channel cut buys latency; hwprune "
            "plans to the floor and stops, and the closed loop refuses steps that measure slower. Where "
            "the floor is close to the dense latency, no pruning method can reach the goals above in "
            "this setting.",
            "",
        ]
    lines += ["![speedups](model_true_speedups.png)", "", "## Details", ""]
    for label, s in results:
        lines += detail(label, s)
    (docs / "MODEL_TRUE.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    block = [
        MARK_START,
        "## Model-true latency (issue 11): measured speedups, whole-model predictions, baselines",
        "",
        "From `benchmarks/model_true_report.py`; details, the raw files and the plot in "
        "[MODEL_TRUE.md](MODEL_TRUE.md).",
        "",
        *goals_table(results),
        MARK_END,
    ]
    (docs / "model_true_goals.md").write_text("\n".join(block) + "\n", encoding="utf-8")
    splice(docs / "BENCHMARKS.md", block)
    if results:
        plot(results, docs / "model_true_speedups.png")
    print(f"wrote {docs / 'MODEL_TRUE.md'} ({len(results)} settings)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

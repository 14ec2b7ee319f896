"""Write docs/MODEL_TRUE.md and its plot from the raw results of benchmarks/model_true.py.

Every figure in the page is computed here from the raw JSON files (``docs/bench_raw_model_true_*.json``);
nothing is typed by hand. Usage::

    python -m benchmarks.model_true_report            # reads docs/bench_raw_model_true_*.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

UNIFORM = "uniform_l1"
"""The uninstructed baseline; every other matched baseline of a raw file is a hardware-friendly option."""
STABLE = 0.05
"""Runs of one setting and budget are stable when their measured speedups differ by at most this share."""


def _f(x: float | None, fmt: str = ".2f") -> str:
    return "n/a" if x is None else format(x, fmt)


def _mark(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**not met**")


def _m(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"


def ratios(s: dict[str, Any]) -> list[str]:
    """The budget ratios a setting was planned at, from its timing keys (``hwprune_<ratio>_run<r>``)."""
    return sorted({k.split("_")[1] for k in s["timings"] if k.startswith("hwprune_")}, key=float)


def speedup_interval(t: dict[str, Any], name: str) -> tuple[float, float, float]:
    """Median and quartiles of the per-round speedups of ``name`` against the dense model (paired rounds).

    Recomputed from ``rounds_ms``; the median is the raw file's ``speedup``.
    """
    ratios_ = [d / m for d, m in zip(t["dense"]["rounds_ms"], t[name]["rounds_ms"], strict=True)]
    if len(ratios_) < 2:
        return ratios_[0], ratios_[0], ratios_[0]
    q = statistics.quantiles(sorted(ratios_), n=4, method="inclusive")
    return float(statistics.median(ratios_)), float(q[0]), float(q[2])


def is_noise(lo: float, hi: float) -> bool:
    """A speedup whose inter-quartile interval over the rounds holds 1.0 cannot be told from no speedup."""
    return lo <= 1.0 <= hi


def dense_widths(s: dict[str, Any]) -> dict[str, int]:
    """Each group root's width in the dense model: the raw file's ``dense_widths``, else the model's own.

    Older raw files lack ``dense_widths``; the dense model is then built (random weights, no download) from
    the setting ``model:batch:size`` as ``benchmarks.model_true`` built it, and each root conv's
    ``out_channels`` read.
    """
    if s.get("dense_widths"):
        return {k: int(v) for k, v in s["dense_widths"].items()}
    from torch import nn

    from hwprune.models import build_model

    name, _, size = s["setting"].split(":")
    shape = s["input_shape"]
    model = build_model(
        name, num_classes=10 if int(size) <= 32 else 1000, in_channels=shape[1], input_size=shape[2]
    )
    return {n: int(m.out_channels) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def run_rows(s: dict[str, Any], ratio: str, widths: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """One record per run of one setting at one budget ratio: its cut, measured speedup, budget and errors.

    Args:
        s: One setting of a raw file.
        ratio: The budget ratio as in the timing keys (``"0.5"``).
        widths: The dense widths (:func:`dense_widths`); computed when None.

    Returns:
        The runs in order. ``cut`` is False when the plan kept every parameter ("no cut"); ``met`` is whether
        the final measurement is within ``ratio`` of the dense model's, timed in the same rounds.
    """
    t = s["timings"]
    widths = dense_widths(s) if widths is None else widths
    rows = []
    for run in s["runs"]:
        name = f"hwprune_{ratio}_run{run['run']}"
        if name not in t or ratio not in run["plans"]:
            continue
        plan = run["plans"][ratio]
        sp, lo, hi = speedup_interval(t, name)
        pred_key = f"run{run['run']}"
        errors = []
        for n in ("dense", name):
            pred = t[n]["predicted_ms"].get(pred_key)
            errors.append(None if not pred else pred / t[n]["median_ms"] - 1.0)
        changed = sum(1 for g, w in plan["widths"].items() if int(w) != widths.get(g, int(w)))
        predicted = plan["predicted_speedup"]
        checks = s.get("layer_checks", {}).get(name)
        rows.append(
            {
                "run": run["run"],
                "name": name,
                "params": t[name]["params"],
                "dense_params": t["dense"]["params"],
                "cut": t[name]["params"] != t["dense"]["params"],
                "groups_changed": changed,
                "groups": len(plan["widths"]),
                "speedup": sp,
                "lo": lo,
                "hi": hi,
                "noise": is_noise(lo, hi),
                "met": t[name]["median_ms"] <= float(ratio) * t["dense"]["median_ms"],
                "predicted": predicted,
                "measured_over_predicted": sp / predicted if predicted else None,
                "errors": errors,
                "reason": plan["reason"],
                "accepted": plan.get("accepted"),
                "slow_layers": None if checks is None else checks.get("slower"),
                "changed_layers": None if checks is None else checks.get("changed"),
            }
        )
    return rows


def closed_loop_verdict(reason: str) -> str:
    """The closed loop's own word on a plan, from its ``reason``: met, NOT met, refused, or the reason."""
    if reason.startswith("refused"):
        return "refused"
    if "NOT met" in reason:
        return "NOT met"
    if reason.endswith(": met"):
        return "met"
    return reason


def stability(rows: list[dict[str, Any]]) -> float | None:
    """``(max - min) / min`` of the measured speedups of every run, "no cut" runs included."""
    sp = [r["speedup"] for r in rows]
    return (max(sp) - min(sp)) / min(sp) if len(sp) > 1 else None


def baseline_names(s: dict[str, Any]) -> list[str]:
    """The matched Torch-Pruning baselines a raw file holds, in its order (``baselines`` keys
    ``<name>_<ratio>``; fixed-ratio references, marked ``reference``, are not matched and left out)."""
    names: list[str] = []
    for key, info in s.get("baselines", {}).items():
        if info.get("reference") or "_" not in key:
            continue
        name, _, ratio = key.rpartition("_")
        try:
            float(ratio)
        except ValueError:
            continue
        if name not in names:
            names.append(name)
    return names


def baselines(s: dict[str, Any], ratio: str) -> dict[str, dict[str, Any]]:
    """Torch-Pruning baselines at one budget: speedup with its interval, parameters kept."""
    t = s["timings"]
    out = {}
    for b in baseline_names(s):
        key = f"{b}_{ratio}"
        if key in t:
            sp, lo, hi = speedup_interval(t, key)
            out[b] = {"speedup": sp, "lo": lo, "hi": hi, "params": t[key]["params"]}
    return out


def setting_goals(s: dict[str, Any], ratio: str) -> dict[str, Any]:
    """Every run of one setting and budget ratio, its stability and its baselines, from the raw results."""
    rows = run_rows(s, ratio)
    if not rows:
        return {}
    base = baselines(s, ratio)
    best = max((b for b in base if b != UNIFORM), key=lambda b: base[b]["speedup"], default=None)
    checks = s.get("layer_checks", {}).get(f"{UNIFORM}_{ratio}", {})
    return {
        "runs": rows,
        "stability": stability(rows),
        "cuts_agree": len({r["cut"] for r in rows}) == 1,
        "baselines": base,
        "best_baseline": best,
        "uniform_slow_layers": checks.get("slower"),
        "uniform_changed_layers": checks.get("changed"),
        "floor_ms": [r.get("floor_ms") for r in s["runs"]],
        "dense_ms": s["timings"]["dense"]["median_ms"],
    }


def _speedup(sp: float, lo: float, hi: float) -> str:
    return f"{sp:.2f}x [{lo:.2f}, {hi:.2f}]" + (" **noise**" if is_noise(lo, hi) else "")


def _vs(run: dict[str, Any], b: dict[str, Any] | None, name: str, goal: float) -> str:
    if b is None:
        return "n/a"
    v = run["speedup"] / b["speedup"]
    noise = " (baseline is noise)" if is_noise(b["lo"], b["hi"]) else ""
    return f"{v:.2f}x vs {name} at {_m(b['params'])} params{noise} ({_mark(v >= goal)})"


def goals_table(results: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The goals table: one line per run of every setting and budget ratio, nothing left out."""
    lines = [
        'One line per run: every fresh-table run of every setting and budget is shown, "no cut" runs '
        "included. Speedups are medians of the per-round ratios against the dense model, with their "
        "inter-quartile interval over the rounds in brackets; **noise** marks an interval that holds 1.0. "
        "Budget met: the final measurement is within the budget ratio of the dense model's, timed in the "
        "same rounds. Stability is `(max - min) / min` of the measured speedups of all runs of the setting "
        "and budget (goal <= 5%). The Torch-Pruning baselines were matched to run 0's parameter count, so "
        "the comparison with them is at equal parameters only for run 0.",
        "",
        "| target, setting, budget | run | cut: params kept, groups changed | measured speedup [IQR] "
        "| budget met | predicted | measured / predicted (>= 0.9) "
        "| whole-model error, dense / pruned (within ±10%) | vs uniform L1 (>= 1.3x) "
        "| vs the best hardware-friendly Torch-Pruning option (>= 1.1x) | stable across runs (<= 5%) "
        "| layers > 5% slower (0) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, s in results:
        widths = dense_widths(s)
        for ratio in ratios(s):
            g = setting_goals(s, ratio)
            if not g:
                continue
            stab = g["stability"]
            stab_txt = (
                "n/a (one run)"
                if stab is None
                else f"{100 * stab:.0f}% ({_mark(stab <= STABLE and g['cuts_agree'])})"
                + ("" if g["cuts_agree"] else ": some runs cut, some did not")
            )
            base = g["baselines"]
            best = g["best_baseline"]
            for r in run_rows(s, ratio, widths):
                cut = (
                    f"{_m(r['params'])} of {_m(r['dense_params'])} params, {r['groups_changed']} of "
                    f"{r['groups']} groups"
                    if r["cut"]
                    else f"no cut ({r['reason']})"
                )
                e_ok = all(e is not None and abs(e) <= 0.10 for e in r["errors"])
                errs = " / ".join("n/a" if e is None else f"{100 * e:+.0f}%" for e in r["errors"])
                mop = r["measured_over_predicted"]
                matched = r["run"] == 0
                slow = (
                    "not timed"
                    if r["slow_layers"] is None
                    else f"{r['slow_layers']} of {r['changed_layers']}"
                    + (
                        ""
                        if g["uniform_slow_layers"] is None
                        else f" (uniform L1: {g['uniform_slow_layers']} of {g['uniform_changed_layers']})"
                    )
                )
                lines.append(
                    f"| {label} {s['setting']}, {ratio} | {r['run']} | {cut} | "
                    f"{_speedup(r['speedup'], r['lo'], r['hi'])} | {'yes' if r['met'] else '**no**'} "
                    f"(closed loop: {closed_loop_verdict(r['reason'])}) | "
                    f"{r['predicted']:.2f}x | {_f(mop)} ({_mark(mop is not None and mop >= 0.9)}) | "
                    f"{errs} ({_mark(e_ok)}) | "
                    + (_vs(r, base.get(UNIFORM), "uniform L1", 1.3) if matched else "not matched")
                    + " | "
                    + (_vs(r, base.get(best) if best else None, str(best), 1.1) if matched else "not matched")
                    + f" | {stab_txt} | {slow} |"
                )
    return lines


def readme_sentence(results: list[tuple[str, dict[str, Any]]]) -> str:
    """The README's model-true summary: every run of every setting, as the goals table states it."""
    parts = []
    for label, s in results:
        for ratio in ratios(s):
            rows = run_rows(s, ratio)
            runs = ", ".join(
                (_speedup(r["speedup"], r["lo"], r["hi"]) if r["cut"] else "no cut")
                + ("" if r["met"] else " (budget missed)")
                for r in rows
            )
            parts.append(f"{label.split(' (')[0]} {s['setting']} at {ratio}: {runs}")
    return (
        "Measured speedup of each fresh-table run (median [IQR over rounds]; **noise** = the interval "
        "holds 1.0): " + "; ".join(parts) + "."
    )


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
    run_keys = [f"run{r['run']}" for r in s["runs"]]
    build = any(v.get("build_s") for v in t.values())  # runtimes that capture or compile (issue 17)
    lines += [
        "",
        "| model | params | measured ms (median, IQR) | speedup vs dense (paired rounds) [IQR] | "
        + " | ".join(f"predicted ms ({k.replace('run', 'run ')})" for k in run_keys)
        + (" | prepare s (capture, compile)" if build else "")
        + " |",
        "|---|---|---|---|" + "---|" * (len(run_keys) + build),
    ]
    for name, v in t.items():
        sp = _speedup(*speedup_interval(t, name)) if name != "dense" else "1.00x"
        preds = " | ".join(_f(v["predicted_ms"].get(k), ".3f") for k in run_keys)
        prep = f" | {_f(v.get('build_s'), '.1f')}" if build else ""
        lines.append(
            f"| {name} | {v['params']:,} | {v['median_ms']:.3f} ({v['iqr_ms']:.3f}) | {sp} | {preds}{prep} |"
        )
    refs = {k: v for k, v in s.get("baselines", {}).items() if v.get("reference")}
    if refs:
        lines += [
            "",
            "Fixed-ratio references (not matched to a parameter count): "
            + "; ".join(
                f"{k}: pruning ratio {v['pruning_ratio']:g}, {v['params']:,} params" for k, v in refs.items()
            )
            + ".",
        ]
    watch = s.get("stopwatch")
    if watch:
        lines += [
            "",
            "Standalone stopwatch (`benchmarks/stopwatch.py`, each model timed alone, dense first and again "
            "last):",
            "",
            "| model | median ms | IQR ms | speedup vs dense |",
            "|---|---|---|---|",
        ]
        for name, v in watch.items():
            lines.append(
                f"| {name} | {v['median_ms']:.3f} | {v['iqr_ms']:.3f} | {_f(v.get('speedup'))}"
                + ("x" if v.get("speedup") is not None else "")
                + " |"
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
        rs = ratios(s)
        names = [f"hwprune_{{r}}_run{run['run']}" for run in s["runs"]]
        names += [f"{b}_{{r}}" for b in baseline_names(s)]
        width = 0.8 / len(names)
        for i, pat in enumerate(names):
            xs, ys, es = [], [], []
            for j, r in enumerate(rs):
                k = pat.format(r=r)
                if k in t:
                    xs.append(j + (i - len(names) / 2 + 0.5) * width)
                    ys.append(t[k]["speedup"])
                    es.append(t[k]["speedup_iqr"] / 2)
            ax.bar(xs, ys, width, yerr=es, label=pat.replace("_{r}", "").replace("{r}_", ""), capsize=2)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks(range(len(rs)), [f"budget {r}" for r in rs])
        ax.set_title(f"{label}\n{s['setting']}", fontsize=9)
        ax.set_ylabel("speedup vs dense (measured)")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load_results(docs: Path) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """Every setting of every ``bench_raw_model_true_*.json`` in ``docs``, labelled, and each file's machine.

    A setting's label is its target, its runtime when the raw file names one, and its machine.
    """
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
            runtime = s.get("runtime") or raw.get("config", {}).get("runtime")
            name = f"{s['target']}, {runtime}" if runtime else s["target"]
            results.append((f"{name} ({where})", s))
    return results, machines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", default="docs")
    args = ap.parse_args(argv)
    docs = Path(args.docs)
    results, machines = load_results(docs)
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
        (label, f"{s['setting']} run {r['run']}", r.get("floor_ms"), s["timings"]["dense"]["median_ms"])
        for label, s in results
        for r in s["runs"]
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

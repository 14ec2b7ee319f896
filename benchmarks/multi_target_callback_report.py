"""The callback run's section of docs/MULTI_TARGET.md, and docs/multi_target_callback.png, from its raw file.

:mod:`benchmarks.multi_target_report` puts this section at the top of the page, above the older planner-only
run. Every figure here is computed from the raw JSON that :mod:`benchmarks.multi_target_callback` wrote
(``docs/bench_raw_multi_target_callback.json``); nothing is typed by hand.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PLOT_NAME = "multi_target_callback.png"
"""The plot's file name, beside the page."""

SLOWDOWN_NOTE = 1.15
"""A median per-round slowdown above this (the timing thread waited for a CPU) is stated under the timing."""


def targets(raw: Mapping[str, Any]) -> list[str]:
    """The two targets, primary first."""
    return list(raw["targets"])


def model_keys(raw: Mapping[str, Any]) -> list[str]:
    """Every model in table order: dense, joint, each target alone, uniform L1."""
    return list(raw["models"])


def label(key: str) -> str:
    """A model's label in the tables."""
    if key.startswith("alone:"):
        return f"callback, {key.split(':', 1)[1]} alone"
    return {
        "dense": "dense",
        "joint": "callback, both targets (joint)",
        "uniform_l1": "uniform L1 (joint's params)",
    }.get(key, key)


def short_label(key: str) -> str:
    """A model's label under a bar."""
    if key.startswith("alone:"):
        return f"{key.split(':', 1)[1]}\nalone"
    return {"dense": "dense", "joint": "joint", "uniform_l1": "uniform L1"}.get(key, key)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _interval(s: Mapping[str, float], digits: int = 3) -> str:
    return f"{s['median']:.{digits}f} [{s['q1']:.{digits}f}, {s['q3']:.{digits}f}]"


def holds_one(s: Mapping[str, float]) -> bool:
    """Whether a per-round ratio's inter-quartile interval holds 1.0: the ratio is then noise."""
    return float(s["q1"]) <= 1.0 <= float(s["q3"])


def load_triplet(note: str) -> str:
    """``load average 0.5 2.1 4.4 on 2 ...`` -> ``0.5 / 2.1 / 4.4``."""
    parts = note.split()
    return " / ".join(parts[2:5]) if note.startswith("load average") and len(parts) >= 5 else note


def acc_se(acc: float, n: int) -> float:
    """Binomial standard error of an accuracy measured on ``n`` images."""
    return math.sqrt(max(acc * (1 - acc), 0.0) / max(n, 1))


def budget_cell(raw: Mapping[str, Any], key: str, t: str) -> str:
    """``met`` / ``**over**`` on the measured share of dense, with ``(noise)`` when the budget is inside the
    share's interval (the share over the budget holds 1.0 between its quartiles)."""
    if key == "dense":
        return ""
    m = raw["models"][key]["measured"][t]
    word = "met" if m["met"] else "**over**"
    return word + (", at the budget within noise" if holds_one(m["share_over_budget"]) else "")


def median_slowdown(raw: Mapping[str, Any], t: str) -> float | None:
    """The median per-round stretch of the final timing on ``t`` by waits for a CPU (None: unknown)."""
    vals = sorted(
        float(s)
        for m in raw["models"].values()
        for s in m["measured"][t].get("slowdowns", [])
        if s is not None
    )
    return vals[len(vals) // 2] if vals else None


# ------------------------------------------------------------------------------------------- verdicts
def callback_verdicts(raw: Mapping[str, Any], run: str) -> dict[str, bool]:
    """Target -> whether the callback's own final check called the budget met (``report["targets"]``)."""
    return {str(t["target"]): bool(t["met"]) for t in raw["runs"][run]["report"]["targets"]}


def infeasible_steps(raw: Mapping[str, Any], run: str) -> list[tuple[int, list[str]]]:
    """The run's steps whose plan the callback called infeasible, with the targets predicted over budget."""
    out = []
    for s in raw["runs"][run]["report"]["steps"]:
        if not s["feasible"]:
            out.append((int(s["step"]), [str(p["target"]) for p in s.get("per_target", []) if not p["met"]]))
    return out


def read_first(raw: Mapping[str, Any]) -> list[str]:
    """What a reader must know before the tables: missed budgets, infeasible plans, noise, contention."""
    ts = targets(raw)
    r_ = float(raw["config"]["ratio"])
    tol = float(raw["met_tolerance"])
    lines = ["### Read first", ""]
    if raw.get("quick"):
        lines.append(
            "- **This is a smoke run (`--quick`)**: tiny sizes and few timing rounds; it shows that the "
            "pipeline runs, and its figures are not results."
        )
    joint = raw["models"]["joint"]["measured"]
    missed_here = [t for t in ts if not joint[t]["met"]]
    cb = callback_verdicts(raw, "joint")
    missed_cb = [t for t, ok in cb.items() if not ok]
    steps = {int(s["step"]): s for s in raw["runs"]["joint"]["report"]["steps"]}
    for step, over in infeasible_steps(raw, "joint"):
        measured = [
            f"{p['target']} {p['measured_share']:.3f} of dense, {'met' if p['measured_met'] else 'NOT met'}"
            for p in steps[step].get("per_target", [])
            if p.get("measured_share") is not None and p.get("measured_met") is not None
        ]
        lines.append(
            f"- **The joint plan was not feasible at step {step}**: the planner found no width set that "
            "meets "
            f"every budget as predicted (predicted over on {', '.join(over) or 'a target'})"
            + (f"; the closed loop measured the applied step at {'; '.join(measured)}." if measured else ".")
        )
    if missed_cb:
        lines.append(
            f"- **The joint model missed its budget on {', '.join(missed_cb)}** in the callback's own final "
            f"check: {raw['runs']['joint']['report']['budget']['summary']}"
        )
    if missed_here:
        lines.append(
            "- **Timed again here, the joint model is over its budget on "
            + ", ".join(
                f"{t} ({joint[t]['share_of_dense']['median']:.3f} of dense > {r_:g} + {tol:.0%})"
                for t in missed_here
            )
            + "**."
        )
    if not (missed_cb or missed_here or infeasible_steps(raw, "joint")):
        lines.append(
            f"- The joint model met the budget ({r_:g} of dense, {tol:.0%} tolerance) on both targets, in "
            "the "
            "callback's final check and timed again here: "
            + ", ".join(f"{t} {joint[t]['share_of_dense']['median']:.3f} of dense" for t in ts)
            + "."
        )
    for run, r in raw["runs"].items():
        if run == "joint":
            continue
        missed = [t for t, ok in callback_verdicts(raw, run).items() if not ok]
        if missed:
            lines.append(
                f"- **The callback on {', '.join(r['targets'])} alone missed its own budget** in its final "
                f"check: {r['report']['budget']['summary']}"
            )
    here = str(raw["stamp"]["machine"]).split(",")[0].strip()
    for t, v in raw["targets"].items():
        if here and not any(here in d for d in v["table_devices"]):
            lines.append(
                f"- {t}'s layer table was measured on another machine ({', '.join(v['table_devices'])}, "
                "this one "
                f"is {here}): its per-layer stairs are that machine's; its whole-model terms were calibrated "
                "here, and every step and final model was timed here."
            )
    noise = []
    for t, c in raw["cost_of_sharing"].items():
        if holds_one(c["measured_ratio"]):
            noise.append(
                f"on {t} the joint model's {c['measured_ratio']['median']:.3f}x of the {t}-alone model's "
                "latency "
                f"(interval [{c['measured_ratio']['q1']:.3f}, {c['measured_ratio']['q3']:.3f}])"
            )
    for k in model_keys(raw):
        if k == "dense":
            continue
        for t in ts:
            s = raw["models"][k]["measured"][t]["share_of_dense"]
            if holds_one(s):
                noise.append(f"{label(k)} on {t}: {_interval(s)} of dense, no faster than dense")
            b = raw["models"][k]["measured"][t]["share_over_budget"]
            if holds_one(b):
                noise.append(
                    f"{label(k)} on {t}: its share over the budget, {_interval(b)}, so met or over is a "
                    "coin toss"
                )
    if noise:
        lines.append("- **Noise** (a per-round ratio whose interval holds 1.0): " + "; ".join(noise) + ".")
    slow = {t: median_slowdown(raw, t) for t in ts}
    busy = [f"{t} {v:.2f}x" for t, v in slow.items() if v is not None and v > SLOWDOWN_NOTE]
    if busy:
        lines.append(
            "- The final timing ran under contention (the timing thread waited for a CPU; median stretch of "
            "a round: " + ", ".join(busy) + "): absolute ms are high; the shares and ratios are taken within "
            "each round, which the load slows alike."
        )
    tr = raw["config"]["train"]
    lines.append(
        f"- **The accuracy is indicative**: a short subset run ({tr['train_images']:,} training images, "
        f"{tr['pretrain_epochs']} + {tr['finetune_epochs']} epochs, {tr['test_images']:,} test images), one "
        "seed, on a 2-core CPU."
    )
    return [*lines, ""]


# ---------------------------------------------------------------------------------------------- tables
def targets_table(raw: Mapping[str, Any]) -> list[str]:
    """Each target: batch, where its predictor came from, its calibration and the dense model at setup."""
    lines = [
        "| target | batch | predictor from | table rows (measured on) | whole-model calibration here "
        "| dense model measured at each run's setup | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for t, v in raw["targets"].items():
        cal = v.get("calibration_measured_ms") or []
        cal_s = (
            f"yes: {v.get('calibration_models', len(cal))} networks timed end to end (dense {cal[0]:.3f} ms)"
            if v["calibrated"] and cal
            else ("yes" if v["calibrated"] else "no")
        )
        setups = ", ".join(
            f"{run} {r['sides'][t]['dense_measured_ms_at_setup']:.3f} ms"
            for run, r in raw["runs"].items()
            if t in r["sides"] and r["sides"][t].get("dense_measured_ms_at_setup") is not None
        )
        lines.append(
            f"| {t} | {v['batch']} | {v['source']} | {v['table_rows']} ({', '.join(v['table_devices'])}) | "
            f"{cal_s} | {setups} | {v['seconds']:.0f} |"
        )
    return lines


def model_table(raw: Mapping[str, Any]) -> list[str]:
    """One row per model: params, and per target its measured ms, share of dense and budget; accuracy."""
    ts = targets(raw)
    r_ = float(raw["config"]["ratio"])
    tol = float(raw["met_tolerance"])
    n_test = int(raw["config"]["train"]["test_images"])
    head = "| model | params | " + " | ".join(
        f"{t} ms, median (IQR) | {t} share of dense, median [q1, q3] | {t} budget {r_:g} + {tol:.0%}"
        for t in ts
    )
    lines = [head + f" | test accuracy (n={n_test}) |", "|" + "---|" * (3 + 3 * len(ts))]
    for k in model_keys(raw):
        m = raw["models"][k]
        cells = [label(k), f"{m['params']:,}"]
        for t in ts:
            x = m["measured"][t]
            cells += [
                f"{x['median_ms']:.3f} ({x['iqr_ms']:.3f})",
                _interval(x["share_of_dense"]),
                budget_cell(raw, k, t),
            ]
        cells.append(_pct(m["test_acc"]))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def cost_table(raw: Mapping[str, Any]) -> list[str]:
    """Per target: the joint model's latency over that target's own model's, params and accuracy."""
    lines = [
        "| target | joint / own model, per-round latency ratio, median [q1, q3] | reading | params, joint / "
        "own "
        "| accuracy, joint minus own |",
        "|---|---|---|---|---|",
    ]
    for t, c in raw["cost_of_sharing"].items():
        mr = c["measured_ratio"]
        reading = (
            "**noise** (interval holds 1.0)"
            if holds_one(mr)
            else ("slower" if mr["median"] > 1 else "faster")
        )
        own = raw["models"][c["own_model"]]["params"]
        joint = raw["models"]["joint"]["params"]
        lines.append(
            f"| {t} | {_interval(mr)} | {reading} | {c['params_ratio']:.2f} ({joint:,} / {own:,}) | "
            f"{round(100 * c['acc_delta'], 1) + 0.0:+.1f} points |"
        )
    return lines


def _fmt(v: Any, digits: int = 3) -> str:
    return "n/a" if v is None else f"{float(v):.{digits}f}"


def steps_table(raw: Mapping[str, Any]) -> list[str]:
    """Every callback run's steps, per target, as the callback logged them (``pruning_report.json``)."""
    lines = [
        "| run | step (epoch) | outcome | target | planner budget ms | predicted ms before -> after "
        "| measured ms before -> after | dense measured ms (same rounds) | measured share | met (callback) "
        "| closed-loop rounds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run, r in raw["runs"].items():
        for s in r["report"]["steps"]:
            for p in s.get("per_target", []):
                rounds = sum(1 for c in s.get("closed_loop", []) if c.get("target") == p["target"])
                met = p.get("measured_met")
                lines.append(
                    f"| {run} | {s['step']} ({s['epoch']}) | {s['outcome']} | {p['target']} | "
                    f"{p['budget_ms']:.3f} | {p['before_ms']:.3f} -> {p['after_ms']:.3f} | "
                    f"{_fmt(p.get('measured_before_ms'))} -> {_fmt(p.get('measured_after_ms'))} | "
                    f"{_fmt(p.get('measured_dense_ms'))} | {_fmt(p.get('measured_share'))} | "
                    f"{'n/a' if met is None else ('met' if met else '**NOT met**')} | {rounds} |"
                )
    return lines


def final_check_table(raw: Mapping[str, Any]) -> list[str]:
    """Every callback run's final check per target (``report["targets"]``), as the callback wrote it."""
    lines = [
        "| run | target | predicted ms, dense -> pruned | measured ms, dense -> pruned (IQR) "
        "| measured share of dense (IQR) | met (callback) |",
        "|---|---|---|---|---|---|",
    ]
    for run, r in raw["runs"].items():
        for t in r["report"]["targets"]:
            m = t["measured_ms"]
            meas = (
                f"{m['before_ms']:.3f} -> {m['after_ms']:.3f} ({m.get('after_iqr_ms') or 0.0:.3f})"
                if m.get("after_ms") is not None
                else f"not timed ({m.get('note', '')})"
            )
            share = "n/a" if m.get("share") is None else f"{m['share']:.3f} ({m.get('share_iqr') or 0.0:.3f})"
            lines.append(
                f"| {run} | {t['target']} | {t['predicted_ms']['before']:.3f} -> "
                f"{t['predicted_ms']['after']:.3f} "
                f"| {meas} | {share} | {'met' if t['met'] else '**NOT met**'} |"
            )
    return lines


def widths_table(raw: Mapping[str, Any]) -> list[str]:
    """Each conv's output width in every model."""
    keys = model_keys(raw)
    convs = list(raw["models"]["dense"]["widths"])
    lines = [
        "| conv | " + " | ".join(short_label(k).replace("\n", " ") for k in keys) + " |",
        "|" + "---|" * (1 + len(keys)),
    ]
    for c in convs:
        lines.append(
            f"| `{c}` | " + " | ".join(str(raw["models"][k]["widths"].get(c, "")) for k in keys) + " |"
        )
    return lines


def reading(raw: Mapping[str, Any]) -> list[str]:
    """The plain reading, every number from the raw file."""
    ts = targets(raw)
    r_ = float(raw["config"]["ratio"])
    models = raw["models"]
    out = []
    for t_plan in ts:  # each single-target model on the other target: why plan jointly at all
        key = f"alone:{t_plan}"
        for t in ts:
            if t == t_plan:
                continue
            x = models[key]["measured"][t]
            out.append(
                f"- The {t_plan}-alone model on {t}: {x['share_of_dense']['median']:.3f} of dense against a "
                f"budget of {r_:g}: {budget_cell(raw, key, t)}."
            )
    j = models["joint"]["measured"]
    out.append(
        "- The joint model: "
        + "; ".join(
            f"{t} {j[t]['share_of_dense']['median']:.3f} of dense ({budget_cell(raw, 'joint', t)})"
            for t in ts
        )
        + f", with {models['joint']['params']:,} parameters."
    )
    u = models["uniform_l1"]["measured"]
    out.append(
        "- Torch-Pruning uniform L1 at the joint model's parameter count "
        f"({models['uniform_l1']['params']:,}): "
        + "; ".join(
            f"{t} {u[t]['share_of_dense']['median']:.3f} of dense ({budget_cell(raw, 'uniform_l1', t)})"
            for t in ts
        )
        + ": the same parameter budget, cut without regard to either target."
    )
    n_test = int(raw["config"]["train"]["test_images"])
    se_diff = math.sqrt(2) * acc_se(models["joint"]["test_acc"], n_test)
    out.append(
        "- **Accuracy** ("
        + ", ".join(f"{label(k)} {_pct(models[k]['test_acc'])}" for k in model_keys(raw))
        + f"): one standard error of a difference between two models on {n_test} test images is about "
        f"{100 * se_diff:.1f} points, so differences under about {200 * se_diff:.0f} points are noise; each "
        "model "
        "was fine-tuned once (one seed), and that training's own variance is not in this error bar."
    )
    return out


def section(raw: Mapping[str, Any], raw_name: str) -> list[str]:
    """The callback run's section of MULTI_TARGET.md (``##`` and ``###`` headings)."""
    s = raw["stamp"]
    cfg = raw["config"]
    tr = cfg["train"]
    cb = cfg["callback"]
    st = raw["stages"]
    ts = targets(raw)
    tm = cfg["timing"]
    lines = [
        "## The callback on two targets, timed on both (issue 19)",
        "",
        f"Generated by `benchmarks/multi_target_callback_report.py` from `{raw_name}` (written by "
        "`python -m benchmarks.multi_target_callback`, settings in "
        "`benchmarks/conf/multi_target_callback.yaml`); "
        "every number below is computed from that file.",
        "",
        f"- Run: {s['date']}, commit `{s['commit']}`, {s['machine']}, torch {s['torch']}; "
        f"{st['total_s'] / 60:.1f} min in all.",
        f"- Load (1, 5, 15 min): at start {load_triplet(raw['load_at_start'])}; before the layer sweep "
        f"{load_triplet(raw['load_before_measuring'])} (after waiting "
        f"{raw['waited_for_load_before_measuring_s']:.0f} s "
        f"for < {tm['wait_load_below']:g}); before the final timing "
        f"{load_triplet(raw['load_before_timing'])} "
        f"(after waiting {raw['waited_for_load_s']:.0f} s); after it "
        f"{load_triplet(raw['load_after_timing'])}.",
        "",
        *read_first(raw),
        "### What was run",
        "",
        f"{cfg['model']} (Fashion-MNIST: 1x28x28, 10 classes, batch 1) pruned by `HardwareAwarePruning` with "
        f"`verify=True` to `latency_ratio={float(cfg['ratio']):g}` on {' and '.join(ts)}, both timed end to "
        "end on "
        "this machine:",
        "",
        *targets_table(raw),
        "",
        f"1. A dense checkpoint trained {tr['pretrain_epochs']} epoch(s) on the first "
        f"{tr['train_images']:,} images "
        f"of the seeded Fashion-MNIST training split (AdamW, lr {tr['lr']}, batch {tr['batch_size']}; "
        f"{st['pretrain_s'] / 60:.1f} min); its test accuracy {_pct(raw['pretrained_dense_acc'])}.",
        "2. Three callback runs from that checkpoint: both targets at once (joint), and each target alone. "
        "Each "
        f"prunes in {cb['num_steps']} step(s) at the start of "
        + ("epoch 0" if int(cb["num_steps"]) == 1 else f"epochs 0 to {int(cb['num_steps']) - 1}")
        + f" (importance "
        f"`{cb['importance']}`, snap `{cb['snap']}`, min_channel_ratio {cb['min_channel_ratio']}, up to "
        f"{cb['closed_loop_rounds']} closed-loop re-plans a step): every candidate is timed on each of its "
        "targets "
        f"against the dense model in the same rounds ({raw['callback_stopwatch']}), and a step that measures "
        "no faster is refused. No accuracy guard (no validation set).",
        f"3. Torch-Pruning uniform L1 at the joint model's parameter count (pruning ratio "
        f"{raw['uniform_l1']['pruning_ratio']:.3f}), and the dense checkpoint: fine-tuned the same way "
        "without a "
        f"callback. Every model trains {tr['finetune_epochs']} epoch(s) after the checkpoint (AdamW, lr "
        f"{tr['finetune_lr']}, same seed and images), then is tested on the same {tr['test_images']:,} test "
        "images.",
        f"4. Every final model timed end to end on each target in {tm['rounds']} interleaved rounds "
        f"(`hwprune.measure.time_models`; each round's sample the median of {tm['evaluator']['repeat']} "
        "samples of "
        f">= {tm['evaluator']['min_repeat_ms']:g} ms). A model's share of dense is the median of its "
        "per-round "
        "ratio to the dense model, [q1, q3] its interval; the budget is met when the median share is at "
        "most "
        f"{float(cfg['ratio']):g} x (1 + {float(raw['met_tolerance']):.0%}), the callback's own tolerance.",
        "",
        "### Every model, timed on both targets",
        "",
        *model_table(raw),
        "",
        "### The cost of sharing one model",
        "",
        *cost_table(raw),
        "",
        "### The callback's steps, as it logged them",
        "",
        "Each step's per-target row of the callback's `pruning_report.json`: the predictor's figures, and "
        "the "
        "closed loop's measurement of the applied model beside the dense model timed in the same rounds.",
        "",
        *steps_table(raw),
        "",
        "### The callback's final check",
        "",
        *final_check_table(raw),
        "",
        "### Widths",
        "",
        *widths_table(raw),
        "",
        "### Reading",
        "",
        *reading(raw),
        "",
        f"![share of dense per target, every model]({PLOT_NAME})",
        "",
    ]
    return lines


def plot(raw: Mapping[str, Any], path: Path) -> None:
    """Per target, each model's measured share of dense (median, [q1, q3]) against the budget; accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = targets(raw)
    keys = model_keys(raw)
    r_ = float(raw["config"]["ratio"])
    tol = float(raw["met_tolerance"])
    colors = ["#777777", "#2ca02c", "#1f77b4", "#ff7f0e", "#d62728", "#9467bd"]
    fig, axes = plt.subplots(1, len(ts) + 1, figsize=(4.6 * (len(ts) + 1), 4.2), squeeze=False)
    xs = list(range(len(keys)))
    labels = [short_label(k) for k in keys]
    for ax, t in zip(axes[0], ts, strict=False):
        sh = [raw["models"][k]["measured"][t]["share_of_dense"] for k in keys]
        med = [s["median"] for s in sh]
        err = [[s["median"] - s["q1"] for s in sh], [s["q3"] - s["median"] for s in sh]]
        ax.bar(xs, med, yerr=err, color=colors[: len(keys)], capsize=3)
        ax.axhline(r_, color="k", ls="--", lw=0.9, label=f"budget {r_:g} of dense")
        ax.axhline(r_ * (1 + tol), color="k", ls=":", lw=0.9, label=f"+ {tol:.0%} tolerance")
        ax.set_xticks(xs, labels, fontsize=7)
        ax.set_ylabel("measured share of dense (median, [q1, q3])")
        ax.set_ylim(0, max(1.15, max(s["q3"] for s in sh) * 1.1))
        ax.set_title(f"{t}: timed here, batch {raw['targets'][t]['batch']}", fontsize=9)
        ax.legend(fontsize=7, loc="upper right")
    ax = axes[0][-1]
    accs = [100 * raw["models"][k]["test_acc"] for k in keys]
    ax.bar(xs, accs, color=colors[: len(keys)])
    ax.set_ylim(max(0.0, min(accs) - 10), min(100.0, max(accs) + 3))
    ax.set_xticks(xs, labels, fontsize=7)
    ax.set_ylabel("test accuracy, %")
    ax.set_title(f"accuracy (short subset run, n={raw['config']['train']['test_images']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

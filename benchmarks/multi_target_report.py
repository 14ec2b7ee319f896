"""Write docs/MULTI_TARGET.md and its plots from the raw results of the multi-target benchmarks.

The page holds the callback run on two targets (:mod:`benchmarks.multi_target_callback`,
``docs/bench_raw_multi_target_callback.json``, rendered by :mod:`benchmarks.multi_target_callback_report`)
first, and below it the older planner-only run (:mod:`benchmarks.multi_target`,
``docs/bench_raw_multi_target.json``, rendered here into ``docs/multi_target.png`` and its section). Either
raw file alone gives a page of that run. Every figure in the page is computed from the raw JSON; nothing is
typed by hand. Usage::

    python -m benchmarks.multi_target_report            # reads both raw files under docs/ where present
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

LABELS = {"dense": "dense", "joint": "joint (both targets)", "uniform_l1": "uniform L1 (joint's params)"}
"""Model key (without ``@ratio``) -> label; ``alone:<target>`` is labelled from the target."""


def label(key: str, measured: str) -> str:
    """A model's label in the tables (``alone:cpu_torch`` -> ``CPU alone (cpu_torch)``)."""
    base = key.split("@")[0]
    if base.startswith("alone:"):
        t = base.split(":", 1)[1]
        return f"{'CPU' if t == measured else 'GPU'} alone ({t})"
    return LABELS.get(base, base)


def load_triplet(note: str) -> str:
    """``load average 0.5 2.1 4.4 on 2 ...`` -> ``0.5 / 2.1 / 4.4``."""
    parts = note.split()
    return " / ".join(parts[2:5]) if note.startswith("load average") and len(parts) >= 5 else note


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def verdict(ms: float, budget: float) -> str:
    """``within`` or ``**over** by N%``."""
    return "within" if ms <= budget else f"**over** by {_pct(ms / budget - 1)}"


def acc_se(acc: float, n: int) -> float:
    """Binomial standard error of an accuracy measured on ``n`` images."""
    return math.sqrt(max(acc * (1 - acc), 0.0) / max(n, 1))


def model_keys(raw: dict[str, Any], ratio: str) -> list[str]:
    """The models of one budget ratio in table order: dense, each target alone, joint, uniform L1."""
    alone = [f"alone:{t}@{ratio}" for t in raw["targets"]]
    return ["dense", *alone, f"joint@{ratio}", f"uniform_l1@{ratio}"]


def names(raw: dict[str, Any]) -> tuple[str, list[str]]:
    """The measured (timed here) target and the predicted-only ones."""
    measured = raw["config"]["timing"]["target"]
    return measured, [t for t in raw["targets"] if t != measured]


def model_table(raw: dict[str, Any], ratio: str) -> list[str]:
    """One row per model: params, CPU measured and predicted, GPU predicted, budgets met, accuracy.

    The measured target's budget is judged on the model's measured share of the dense model (per round,
    paired), against the ratio: on a shared machine the absolute ms move with the load, the share much less.
    """
    measured, others = names(raw)
    info = raw["ratios"][ratio]
    budgets = info["budgets_ms"]
    r_ = float(info["ratio"])
    n_test = int(raw["config"]["train"]["test_images"])
    head = (
        f"| model | params | {measured} measured ms, median (IQR) | {measured} measured share of dense "
        f"(paired rounds, IQR) | {measured} predicted ms | {measured} budget: share <= {r_:g} (measured) | "
        + " | ".join(
            f"{t} predicted ms (not measured) | {t} budget {budgets[t]:.3f} ms (predicted)" for t in others
        )
        + f" | test accuracy (n={n_test}) |"
    )
    cols = 7 + 2 * len(others)
    lines = [head, "|" + "---|" * cols]
    for key in model_keys(raw, ratio):
        r = raw["models"][key]
        m = r["measured_ms"][measured]
        sh = r["measured_share_of_dense"][measured]
        cells = [
            label(key, measured),
            f"{r['params']:,}",
            f"{m['median']:.2f} ({m['iqr']:.2f})",
            f"{sh['median']:.3f} ({sh['iqr']:.3f})",
            f"{r['predicted_ms'][measured]:.2f}",
            "" if key == "dense" else ("met" if sh["median"] <= r_ else "**over**"),
        ]
        for t in others:
            p = r["predicted_ms"][t]
            cells += [
                f"{p:.3f}",
                "" if key == "dense" else ("met" if p <= budgets[t] * (1 + 1e-9) else "**over**"),
            ]
        cells.append(_pct(r["test_acc"]))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def cost_table(raw: dict[str, Any], ratio: str) -> list[str]:
    """Per target: its own plan's latency, the joint plan's, the ratio, and the accuracy difference."""
    measured, _ = names(raw)
    info = raw["ratios"][ratio]
    lines = [
        "| target | latency of its own plan | latency of the joint plan | joint / own (cost of sharing) "
        "| how | params, joint / own | accuracy, joint minus own plan |",
        "|---|---|---|---|---|---|---|",
    ]
    for t, c in info["cost_of_sharing"].items():
        own = raw["models"][c["own_plan"]]
        joint = raw["models"][f"joint@{ratio}"]
        if "measured_ratio" in c:
            a, b = own["measured_ms"][t]["median"], joint["measured_ms"][t]["median"]
            mr = c["measured_ratio"]
            ratio_s = f"{mr['median']:.3f}x (IQR {mr['iqr']:.3f}; predicted {c['predicted_ratio']:.3f}x)"
            how = "measured here, median of per-round ratios"
            lat = (f"{a:.2f} ms", f"{b:.2f} ms")
        else:
            a, b = own["predicted_ms"][t], joint["predicted_ms"][t]
            ratio_s = f"{c['predicted_ratio']:.3f}x"
            how = "predicted, not measured: no device time"
            lat = (f"{a:.3f} ms", f"{b:.3f} ms")
        lines.append(
            f"| {t} | {lat[0]} | {lat[1]} | {ratio_s} | {how} | "
            f"{joint['params'] / own['params']:.2f} ({joint['params']:,} / {own['params']:,}) | "
            f"{round(100 * c['acc_delta'], 1) + 0.0:+.1f} points |"
        )
    return lines


def conflict_lines(raw: dict[str, Any], ratio: str) -> list[str]:
    """The joint plan's per-target outcome and the groups where a target gave way."""
    j = raw["ratios"][ratio]["plans"]["joint"]
    lines = [
        f"The joint plan took {j['rounds']} planner round(s) and is "
        f"{'feasible (every target within budget, as predicted)' if j['feasible'] else '**not feasible**'}.",
        "",
        "| target | budget ms | predicted dense -> joint ms | met (predicted) | final weight "
        "| gave way (ms, sum) "
        "| groups where it gave way |",
        "|---|---|---|---|---|---|---|",
    ]
    for t, r in j["targets"].items():
        n = sum(1 for c in j["conflicts"] if c["target"] == t)
        lines.append(
            f"| {t} | {r['budget_ms']:.3f} | {r['latency_before_ms']:.3f} -> {r['latency_after_ms']:.3f} | "
            f"{'yes' if r['met'] else 'no'} | {r['weight']:.2f} | {r['gave_way_ms']:.4f} | {n} |"
        )
    if j["conflicts"]:
        lines += [
            "",
            "Where a target gave way (the planned width is not a friendly count on it; `extra ms` is what it "
            "would save at its own next friendly count below):",
            "",
            "| target | group (root conv) | planned width | its friendly count below | extra ms |",
            "|---|---|---|---|---|",
        ]
        for c in sorted(j["conflicts"], key=lambda c: -c["extra_ms"]):
            lines.append(
                f"| {c['target']} | `{c['root']}` | {c['width']} | {c['friendly_below']} "
                f"| {c['extra_ms']:.4f} |"
            )
    else:
        lines += ["", "No conflicts: every planned width is a friendly count on every target."]
    return lines


def widths_table(raw: dict[str, Any], ratio: str) -> list[str]:
    """Each group's width in the dense model and in every hwprune plan."""
    plans = raw["ratios"][ratio]["plans"]
    keys = [k for k in plans if "widths" in plans[k]]
    roots = list(plans["joint"]["widths"])
    measured, _ = names(raw)
    dense_w = raw.get("dense_widths", {})
    lines = [
        "| group (root conv) | dense | " + " | ".join(label(k, measured) for k in keys) + " |",
        "|" + "---|" * (2 + len(keys)),
    ]
    for root in roots:
        cells = [f"`{root}`", str(dense_w.get(root, ""))]
        cells += [str(plans[k]["widths"].get(root, dense_w.get(root, ""))) for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def reading(raw: dict[str, Any], ratio: str) -> list[str]:
    """The plain reading of one budget ratio, every number from the raw file."""
    measured, others = names(raw)
    info = raw["ratios"][ratio]
    r_ = float(info["ratio"])
    models = raw["models"]
    cost = info["cost_of_sharing"]
    budgets = info["budgets_ms"]
    joint = models[f"joint@{ratio}"]
    n_test = int(raw["config"]["train"]["test_images"])
    n_rounds = len(models["dense"]["measured_ms"][measured]["rounds"])
    out = []
    c = cost[measured]
    mr = c["measured_ratio"]
    spread = mr["iqr"] / mr["median"] if mr["median"] > 0 else float("inf")
    out.append(
        f"- **Speed on {measured} (measured here):** the joint model runs at {mr['median']:.3f}x the latency "
        f"of the CPU-alone plan (median of {n_rounds} paired rounds, IQR {mr['iqr']:.3f}; the predictor said "
        f"{c['predicted_ratio']:.3f}x)."
        + (
            f" The rounds spread widely (IQR {_pct(spread)} of the median): the machine was shared "
            "(load above), so read this as a rough figure."
            if spread > 0.10
            else ""
        )
    )
    for t in others:
        c = cost[t]
        out.append(
            f"- **Speed on {t} (predicted only):** the joint model's predicted latency is "
            f"{c['predicted_ratio']:.3f}x the GPU-alone plan's. The H200 could not be reached this session: "
            "this is the uncalibrated predictor's sum of conv latencies at batch "
            f"{raw['targets'][t]['batch']}, not a measurement."
        )
    jplan = info["plans"]["joint"]

    def fill(t: str) -> str:
        v, b = joint["predicted_ms"][t], budgets[t]
        return (
            f"{t} {v:.3f} of {b:.3f} ms ({_pct(1 - v / b)} under)"
            if v <= b
            else f"{t} {v:.3f} ms, {verdict(v, b)}"
        )

    own_params = ", ".join(
        f"{joint['params'] / models[f'alone:{t}@{ratio}']['params']:.2f}x the {t}-alone plan's"
        for t in raw["targets"]
    )
    if jplan["feasible"]:
        out.append(
            "- **Where the cost goes:** a shared model must fit every budget at once, so on each target it "
            "sits at or under the budget that target's own plan fills; the price is paid in width, not in "
            "speed. "
            f"Predicted, the joint model uses {', '.join(fill(t) for t in raw['targets'])}, and keeps "
            f"{joint['params']:,} parameters: {own_params}."
        )
    else:
        missed = [t for t, r in jplan["targets"].items() if not r["met"]]
        out.append(
            f"- **The joint plan missed a budget:** after {jplan['rounds']} planner rounds "
            "`plan_for_targets` found no width set that meets every budget and kept the one with the "
            "smallest overrun: "
            f"{', '.join(fill(t) for t in raw['targets'])} (predicted): sharing cost "
            f"{' and '.join(missed)} its budget by that much. The joint model keeps "
            f"{joint['params']:,} parameters: {own_params}."
        )
    for t_plan in raw["targets"]:  # each single-target plan on the other target: why plan jointly at all
        key = f"alone:{t_plan}@{ratio}"
        for t in raw["targets"]:
            if t == t_plan:
                continue
            if t == measured:
                sh = models[key]["measured_share_of_dense"][t]["median"]
                what = (
                    f"{sh:.3f} of the dense model's latency (measured, paired rounds) against a budget of "
                    f"{r_:g}: {verdict(sh, r_)}"
                )
            else:
                v = models[key]["predicted_ms"][t]
                what = f"{v:.3f} ms (predicted) against a budget of {budgets[t]:.3f} ms: "
                what += verdict(v, budgets[t])
            out.append(f"- The {t_plan}-alone plan on {t}: {what}.")
    jsh = joint["measured_share_of_dense"][measured]["median"]
    psh = joint["predicted_ms"][measured] / models["dense"]["predicted_ms"][measured]
    out.append(
        f"- The joint model on {measured}: {jsh:.3f} of the dense model's latency measured, {psh:.3f} "
        f"predicted, against a budget of {r_:g} ({verdict(jsh, r_)})."
    )

    def pshare(k: str) -> float:
        return models[k]["predicted_ms"][measured] / models["dense"]["predicted_ms"][measured]

    uni = models[f"uniform_l1@{ratio}"]
    out.append(
        f"- Torch-Pruning uniform L1 at the joint model's parameter count ({uni['params']:,}): "
        f"{uni['measured_share_of_dense'][measured]['median']:.3f} of dense on {measured} (measured), and "
        + ", ".join(
            f"{uni['predicted_ms'][t]:.3f} ms on {t} (predicted, "
            f"{uni['predicted_ms'][t] / models['dense']['predicted_ms'][t]:.2f}x dense)"
            for t in others
        )
        + ": the same parameter budget, cut without regard to either target."
    )
    errs = "; ".join(
        f"{short_label(k, measured)} {pshare(k):.3f} predicted, "
        f"{models[k]['measured_share_of_dense'][measured]['median']:.3f} measured"
        for k in model_keys(raw, ratio)[1:]
    )
    out.append(f"- The {measured} predictor's share of dense against the measured share: {errs}.")
    cal = raw["targets"][measured].get("calibration_measured_ms") or []
    if cal:
        dm = models["dense"]["measured_ms"][measured]["median"]
        out.append(
            f"- Load moves the absolute CPU figures: the dense model measured {cal[0]:.2f} ms when the "
            f"predictor was calibrated (before pretraining) and {dm:.2f} ms in the final timing "
            f"({_pct(dm / cal[0] - 1)}); the shares and ratios above are taken within each round, which the "
            "load slows alike."
        )
    gave = {
        t: sum(x["extra_ms"] for x in info["plans"]["joint"]["conflicts"] if x["target"] == t)
        for t in raw["targets"]
    }
    if any(gave.values()):
        out.append(
            "- **Conflicts:** "
            + "; ".join(
                f"{t} gave way on {sum(1 for x in info['plans']['joint']['conflicts'] if x['target'] == t)} "
                f"group(s), {g:.3f} ms predicted ({_pct(g / budgets[t])} of its budget)"
                for t, g in gave.items()
                if g > 0
            )
            + "".join(f"; {t} gave way nowhere" for t, g in gave.items() if g <= 0)
            + "."
        )
    se_diff = math.sqrt(2) * acc_se(joint["test_acc"], n_test)
    accs = ", ".join(f"{label(k, measured)} {_pct(models[k]['test_acc'])}" for k in model_keys(raw, ratio))
    deltas = ", ".join(
        f"{round(100 * cost[t]['acc_delta'], 1) + 0.0:+.1f} points against the {t}-alone plan"
        for t in raw["targets"]
    )
    pruned_accs = sorted(models[k]["test_acc"] for k in model_keys(raw, ratio)[1:])
    mid = pruned_accs[len(pruned_accs) // 2]
    low = [k for k in model_keys(raw, ratio)[1:] if models[k]["test_acc"] < mid - 2 * se_diff]
    out.append(
        f"- **Accuracy** ({accs}) comes from a short subset run. The joint model: {deltas}. One standard "
        f"error of a difference between two models on {n_test} test images is about "
        f"{100 * se_diff:.1f} points, so differences under about {200 * se_diff:.0f} points are noise. That "
        "error bar covers the test sample only: each model was fine-tuned once (one seed, one short epoch), "
        "and that training's own variance is not in it."
        + (
            " "
            + ", ".join(f"{short_label(k, measured)} ({_pct(models[k]['test_acc'])})" for k in low)
            + f" fell well below the middle of the pruned models ({_pct(mid)}); with a single short "
            "fine-tune this is as likely the run as the architecture, and one run cannot tell them apart."
            if low
            else ""
        )
    )
    return out


def sharing_interval(mr: dict[str, float]) -> tuple[float, float]:
    """The measured joint/own ratio's inter-quartile interval: stored quartiles, else median ± IQR / 2."""
    if "q1" in mr and "q3" in mr:
        return float(mr["q1"]), float(mr["q3"])
    return mr["median"] - mr["iqr"] / 2, mr["median"] + mr["iqr"] / 2


def planner_changes_since(commit: str) -> list[str]:
    """Commits that changed the planner (``hwprune/prune``) after ``commit``, newest first; [] if unknown."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(
            ["git", "log", "--format=%h %s", f"{commit}..HEAD", "--", "hwprune/prune"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def read_first(raw: dict[str, Any]) -> list[str]:
    """What the figures below are and are not: infeasible joint plans, what ran, noise, later changes."""
    measured, others = names(raw)
    lines = ["## Read first", ""]
    for ratio, info in raw["ratios"].items():
        j = info["plans"]["joint"]
        if not j["feasible"]:
            over = [
                f"{t} {100 * (r['latency_after_ms'] / r['budget_ms'] - 1):+.1f}% over its budget (predicted)"
                for t, r in j["targets"].items()
                if not r["met"]
            ]
            lines.append(f"- **The joint plan at budget {ratio} is not feasible**: " + "; ".join(over) + ".")
        for t, c in info["cost_of_sharing"].items():
            if "measured_ratio" in c:
                lo, hi = sharing_interval(c["measured_ratio"])
                if lo <= 1.0 <= hi:
                    lines.append(
                        f"- On {t} the joint plan's {c['measured_ratio']['median']:.3f}x of its own plan's "
                        f"latency is **noise**: its interval over the rounds [{lo:.3f}, {hi:.3f}] holds 1.0."
                    )
    lines.append(
        "- This run calls the planner (`plan_for_targets`) directly; the `HardwareAwarePruning` callback was "
        f"not run on several targets here. Only {measured} was timed; "
        + ", ".join(others)
        + " is predicted only."
    )
    changes = planner_changes_since(raw["stamp"]["commit"])
    if changes:
        lines.append(
            f"- The planner (`hwprune/prune`) changed after this run (commit `{raw['stamp']['commit']}`), in "
            f"{len(changes)} commit(s) up to the one this page was rendered at: "
            + ", ".join(f"`{c.split()[0]}`" for c in changes)
            + " (`git log` lists them); these figures are from the planner before them."
        )
    return [*lines, ""]


def page(raw: dict[str, Any], raw_name: str) -> list[str]:
    """The whole MULTI_TARGET.md page."""
    s = raw["stamp"]
    cfg = raw["config"]
    tr = cfg["train"]
    measured, others = names(raw)
    st = raw["stages"]
    lines = [
        "# One plan for several targets: the cost of sharing one model (issue 14, part 2)",
        "",
        f"Generated by `benchmarks/multi_target_report.py` from `{raw_name}` (written by "
        "`python -m benchmarks.multi_target`, settings in `benchmarks/conf/multi_target.yaml`); every "
        "number below is computed from that file.",
        "",
        f"- Run: {s['date']}, commit `{s['commit']}`, {s['machine']}, torch {s['torch']}; "
        f"{st['total_s'] / 60:.1f} min in all.",
        f"- Load (1, 5, 15 min): at start {load_triplet(raw['load_at_start'])}; "
        + (
            f"before measuring the CPU layers {load_triplet(raw['load_before_measuring'])} "
            f"(after waiting {raw['waited_for_load_before_measuring_s']:.0f} s for < "
            f"{cfg['timing']['wait_load_below']:g}); "
            if "load_before_measuring" in raw
            else ""
        )
        + f"before the final timing {load_triplet(raw['load_before_timing'])}"
        + (
            f" (after waiting {raw['waited_for_load_s']:.0f} s for < {cfg['timing']['wait_load_below']:g})"
            if "waited_for_load_s" in raw
            else ""
        )
        + f"; after it {load_triplet(raw['load_after_timing'])}. "
        + f"{raw['stamp']['machine'].split(',')[-1].strip()}, shared with other agents' jobs.",
        "",
        *read_first(raw),
        "## What was run",
        "",
        f"{cfg['model']} (Fashion-MNIST: 1x28x28, 10 classes) planned for two targets together and for each "
        "alone, at a latency budget of "
        + ", ".join(f"{float(r):g}" for r in cfg["ratios"])
        + " of each target's predicted dense latency:",
        "",
        "| target | batch | predictor from | table rows | whole-model calibration | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for t, v in raw["targets"].items():
        cal = (
            f"yes, on this CPU ({v.get('calibration_models', '?')} models timed end to end)"
            if v["calibrated"]
            else "no (sum of the convs' predicted latencies)"
        )
        lines.append(
            f"| {t} | {v['batch']} | {v['source']} ({', '.join(v['table_devices'])}) | {v['table_rows']} | "
            f"{cal} | {v['seconds']:.0f} |"
        )
    pl = cfg["planner"]
    lines += [
        "",
        f"1. A dense checkpoint trained {tr['pretrain_epochs']} epoch(s) on the first {tr['train_images']:,} "
        f"images of the seeded Fashion-MNIST training split (AdamW, lr {tr['lr']}, batch {tr['batch_size']}, "
        f"no augmentation; {st['pretrain_s'] / 60:.1f} min). Its test accuracy: "
        f"{_pct(raw['pretrained_dense_acc'])}.",
        f"2. From that checkpoint: the {measured}-alone plan and the "
        + ", ".join(f"{t}-alone plan" for t in others)
        + " (`plan_pruning` with that target's predictor at its batch), the joint plan (`plan_for_targets` "
        f"over both), all with importance `{pl['importance']}`, snap `{pl['snap']}`, min_channel_ratio "
        f"{pl['min_channel_ratio']}; and Torch-Pruning uniform L1 (group magnitude) at the joint plan's "
        "parameter count.",
        f"3. Every pruned model fine-tuned {tr['finetune_epochs']} epoch(s) the same way"
        + (
            " (the dense reference too)"
            if tr["finetune_dense"]
            else " (the dense reference not: it is the checkpoint)"
        )
        + f", then tested on the same {tr['test_images']:,} "
        "test images (a seeded sample of the 10,000; `ClassificationModule`'s `test/acc`, torchmetrics' "
        "macro-averaged accuracy).",
        f"4. Every final model timed end to end on {measured} (1 thread, batch 1) in "
        f"{cfg['timing']['rounds']} interleaved rounds (`hwprune.measure.time_models`; each sample at least "
        f"{cfg['timing']['evaluator']['min_repeat_ms']:g} ms). The "
        + ", ".join(others)
        + " latencies are **predicted, not measured: no device time** was left this session, and that "
        "predictor is not calibrated end to end (it sums the convs, missing BatchNorm, activations and "
        "launches).",
        "",
        "**The accuracy is from a short subset run** "
        f"({tr['train_images']:,} training images, {tr['pretrain_epochs']} + {tr['finetune_epochs']} epochs, "
        f"{tr['test_images']:,} test images) on a 2-core CPU: it compares the models with each other, not "
        "with published Fashion-MNIST figures.",
        "",
    ]
    for ratio in raw["ratios"]:
        lines += [
            f"## Budget {ratio} of each target's dense latency",
            "",
            "### The cost of sharing one model",
            "",
            *cost_table(raw, ratio),
            "",
            "### Every model",
            "",
            *model_table(raw, ratio),
            "",
            "### Where the targets disagreed",
            "",
            *conflict_lines(raw, ratio),
            "",
            "### Widths",
            "",
            *widths_table(raw, ratio),
            "",
            "### Reading",
            "",
            *reading(raw, ratio),
            "",
        ]
    lines += ["![latency per target](multi_target.png)", ""]
    return lines


SHORT = {"dense": "dense", "joint": "joint", "uniform_l1": "uniform L1"}


def short_label(key: str, measured: str) -> str:
    """A model's label under a bar (``CPU alone``, ``joint``, ...)."""
    base = key.split("@")[0]
    if base.startswith("alone:"):
        return "CPU alone" if base.split(":", 1)[1] == measured else "GPU alone"
    return SHORT.get(base, base)


def plot(raw: dict[str, Any], path: Path) -> None:
    """Per target, each model's latency (CPU measured with IQR bars and predicted dots; GPU predicted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured, others = names(raw)
    targets = [measured, *others]
    ratios = list(raw["ratios"])
    n = len(targets) + 1
    fig, axes = plt.subplots(len(ratios), n, figsize=(4.3 * n, 4.0 * len(ratios)), squeeze=False)
    colors = ["#777777", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]
    for row, ratio in zip(axes, ratios, strict=True):
        keys = model_keys(raw, ratio)
        labels = [short_label(k, measured) for k in keys]
        budgets = raw["ratios"][ratio]["budgets_ms"]
        xs = list(range(len(keys)))
        for ax, t in zip(row, targets, strict=False):
            if t == measured:
                med = [raw["models"][k]["measured_ms"][t]["median"] for k in keys]
                iqr = [raw["models"][k]["measured_ms"][t]["iqr"] / 2 for k in keys]
                ax.bar(
                    xs, med, yerr=iqr, color=colors[: len(keys)], capsize=3, label="measured (median, IQR)"
                )
                pred = [raw["models"][k]["predicted_ms"][t] for k in keys]
                ax.plot(xs, pred, "kD", ms=4, ls="none", label="predicted")
                ax.axhline(
                    float(ratio) * med[0],
                    color="k",
                    ls=":",
                    lw=0.9,
                    label=f"{ratio} x dense as measured here",
                )
                ax.set_title(f"{t}: measured here (batch {raw['targets'][t]['batch']}, 1 thread)", fontsize=9)
            else:
                pred = [raw["models"][k]["predicted_ms"][t] for k in keys]
                ax.bar(
                    xs,
                    pred,
                    color=colors[: len(keys)],
                    hatch="//",
                    edgecolor="white",
                    label="predicted, not measured",
                )
                ax.set_title(
                    f"{t}\npredicted, not measured: no device time (batch {raw['targets'][t]['batch']})",
                    fontsize=9,
                )
            ax.axhline(budgets[t], color="k", ls="--", lw=0.9, label=f"budget ({ratio} x predicted dense)")
            ax.set_xticks(xs, labels, fontsize=8)
            ax.set_ylabel("latency, ms")
            top = ax.get_ylim()[1]
            ax.set_ylim(0, top * 1.3)  # room for the legend above the bars
            ax.legend(fontsize=6.5, loc="upper right", ncol=2)
        ax = row[-1]
        accs = [100 * raw["models"][k]["test_acc"] for k in keys]
        ax.bar(xs, accs, color=colors[: len(keys)])
        ax.set_ylim(max(0.0, min(accs) - 10), min(100.0, max(accs) + 3))
        ax.set_xticks(xs, labels, fontsize=8)
        ax.set_ylabel("test accuracy, %")
        ax.set_title(f"accuracy (short subset run, n={raw['config']['train']['test_images']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def as_older_section(lines: list[str]) -> list[str]:
    """The planner-only page as a section below the callback run: its title marked older and planner-only,
    every heading one level down."""
    out = [
        "## Older run, planner only: " + lines[0].lstrip("# ").strip(),
        "",
        "*Older, and planner-only:* the run below called the planner (`plan_for_targets`) directly, not the "
        "`HardwareAwarePruning` callback, and timed one of its two targets; the callback run above replaces "
        "it as this page's result. It is kept because it was made.",
    ]
    for line in lines[1:]:
        out.append("#" + line if line.startswith("#") else line)
    return out


def compose(docs: Path, raw_path: Path | None, callback_raw_path: Path | None) -> tuple[list[str], list[str]]:
    """The page's lines and the plots written: the callback run first (where its raw file exists), then
    the planner-only run (where its raw file exists), marked older below a callback run.

    Raises:
        FileNotFoundError: If neither raw file exists.
    """
    from benchmarks import multi_target_callback_report as cbr

    has_cb = callback_raw_path is not None and callback_raw_path.is_file()
    has_old = raw_path is not None and raw_path.is_file()
    if not (has_cb or has_old):
        raise FileNotFoundError(f"no raw file: looked for {callback_raw_path} and {raw_path}")
    lines: list[str] = []
    plots: list[str] = []
    if has_cb:
        assert callback_raw_path is not None
        cb_raw = json.loads(callback_raw_path.read_text())
        lines += [
            "# One model for several targets (issues 14 and 19)",
            "",
            *cbr.section(cb_raw, callback_raw_path.name),
        ]
        cbr.plot(cb_raw, docs / cbr.PLOT_NAME)
        plots.append(cbr.PLOT_NAME)
    if has_old:
        assert raw_path is not None
        raw = json.loads(raw_path.read_text())
        old = page(raw, raw_path.name)
        lines += as_older_section(old) if has_cb else old
        plot(raw, docs / "multi_target.png")
        plots.append("multi_target.png")
    return lines, plots


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", default="docs", help="where MULTI_TARGET.md and the plots go")
    ap.add_argument(
        "--raw", default=None, help="planner-only raw file (default DOCS/bench_raw_multi_target.json)"
    )
    ap.add_argument(
        "--callback-raw",
        default=None,
        help="callback run's raw file (default DOCS/bench_raw_multi_target_callback.json; first if present)",
    )
    args = ap.parse_args(argv)
    docs = Path(args.docs)
    raw_path = Path(args.raw) if args.raw else docs / "bench_raw_multi_target.json"
    cb_path = Path(args.callback_raw) if args.callback_raw else docs / "bench_raw_multi_target_callback.json"
    lines, plots = compose(docs, raw_path, cb_path)
    (docs / "MULTI_TARGET.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {docs / 'MULTI_TARGET.md'} and {', '.join(str(docs / p) for p in plots)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

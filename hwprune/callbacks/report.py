"""What :class:`~hwprune.callbacks.HardwareAwarePruning` reports: per step, and at the end of the fit.

Each prune step is a :class:`PruneStepLog` (the callback's state keeps them) and a set of logged metrics
(:func:`step_metrics`). At fit end, :func:`build_report` gathers the dense and pruned models' predicted
and measured latency, accuracy, parameters and per-layer widths into a JSON-ready dict and judges it
against the budget (:func:`budget_status`); :func:`write_report` writes
``pruning_report.json`` and ``pruning_report.md`` and logs the Markdown.

Example:
    >>> print(render_markdown(report))  # doctest: +SKIP
    # hwprune pruning report
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import nn

from hwprune.callbacks._lightning import rank_zero_only
from hwprune.prune.graph import count_macs
from hwprune.prune.model_latency import predicted_latency
from hwprune.staircase import Predictor
from hwprune.verify.budget import Budget
from hwprune.verify.report import PruneStepLog, measured_latency, report_targets, summary
from hwprune.verify.sides import TargetSide
from hwprune.verify.stopwatch import MET_TOLERANCE, judge

log = logging.getLogger(__name__)

__all__ = [
    "budget_status",
    "build_report",
    "fit_report",
    "log_step",
    "render_markdown",
    "step_metrics",
    "write_report",
]


def step_metrics(net: nn.Module, input_shape: Sequence[int], entry: PruneStepLog) -> dict[str, float]:
    """The metrics logged after a prune step: latency, size, MACs and every conv's width.

    Args:
        net: The network after the step.
        input_shape: Its input shape (MACs are per sample, :func:`hwprune.prune.graph.count_macs`).
        entry: The step.

    Returns:
        ``pruning/...`` metric name -> value.
    """
    metrics = {
        "pruning/predicted_latency_ms": entry.latency_after_ms,
        "pruning/params": float(sum(p.numel() for p in net.parameters())),
        "pruning/macs": float(count_macs(net, input_shape)),
        "pruning/step": float(entry.step),
        "pruning/budget_ms": entry.budget_ms,
    }
    if entry.score_before is not None:
        metrics["pruning/accuracy"] = entry.score_before
    for name, m in net.named_modules():
        if isinstance(m, nn.Conv2d):
            metrics[f"pruning/channels/{name}"] = float(m.out_channels)
    return metrics


def log_step(trainer: Any, net: nn.Module, input_shape: Sequence[int], entry: PruneStepLog) -> None:
    """Log a prune step's :func:`step_metrics` to the Trainer's loggers, and a line to this logger.

    A step measured slower on the target than the model before it is also logged as a warning.

    Args:
        trainer: The Trainer (its ``loggers`` and ``global_step``).
        net: The network after the step.
        input_shape: Its input shape.
        entry: The step.
    """
    metrics = step_metrics(net, input_shape, entry)
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=trainer.global_step)
    before, after = entry.measured_before_ms, entry.measured_after_ms
    if before is not None and after is not None and after > before:
        rank_zero_only(log.warning)(
            "prune step %d measured slower on the target: %.4f -> %.4f ms", entry.step, before, after
        )
    rank_zero_only(log.info)(
        "prune step %d (epoch %d): predicted %.4f -> %.4f ms (budget %.4f), %d params, %.2f MMACs, %s",
        entry.step,
        entry.epoch,
        entry.latency_before_ms,
        entry.latency_after_ms,
        entry.budget_ms,
        int(metrics["pruning/params"]),
        metrics["pruning/macs"] / 1e6,
        entry.outcome,
    )


def _conv_channels(net: nn.Module) -> dict[str, tuple[int, int]]:
    return {
        n: (int(m.in_channels), int(m.out_channels))
        for n, m in net.named_modules()
        if isinstance(m, nn.Conv2d)
    }


def build_report(
    *,
    dense: nn.Module,
    pruned: nn.Module,
    input_shape: Sequence[int],
    predictor: Predictor | None,
    target: Any,
    verify: bool,
    budget_ms: float | None,
    monitor: str,
    score_before: float | None,
    score_after: float | None,
    steps: Sequence[PruneStepLog],
    scheduled_steps: int,
    latency_ratio: float | None = None,
    budget_basis: str = "",
    measured: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Gather the fit's outcome into a JSON-ready dict (the content of ``pruning_report.json``).

    Args:
        dense: The dense network.
        pruned: The pruned network.
        input_shape: The planned input shape.
        predictor: The latency predictor (None: no predicted latency).
        target: The target to time both networks on (:func:`measured_latency`), or None.
        verify: False: nothing is timed.
        budget_ms: The final predicted-latency budget, or None if unknown.
        monitor: The monitored metric's name.
        score_before: Its dense baseline.
        score_after: Its last value.
        steps: The prune steps.
        scheduled_steps: The schedule's number of steps.
        latency_ratio: The budget as a share of dense, or None (a budget in ms): timed on the target, it is
            judged on the measured share of dense.
        budget_basis: What the budget is a share of, in words (the callback's ``budget_basis``).
        measured: :func:`measured_latency`'s dict when already timed (several targets: the primary
            target's entry), so that the report holds one measured figure per target; None times here.

    Returns:
        The report: ``target``, ``input_shape``, ``budget_ms``, ``latency_ratio``, ``budget_basis``,
        ``tolerance``, ``predicted_ms``, ``measured_ms``, ``accuracy``, ``params``, ``layers``, ``steps``
        and ``budget`` (:func:`budget_status`).
    """
    pred_before = pred_after = None
    if predictor is not None:
        pred_before = predicted_latency(predictor, dense, input_shape)
        pred_after = predicted_latency(predictor, pruned, input_shape)
    name = getattr(predictor, "target_", None)
    if measured is None:
        measured = measured_latency(target, dense, pruned, input_shape, verify=verify, target_name=name)
    before, after = _conv_channels(dense), _conv_channels(pruned)
    report = {
        "target": name,
        "input_shape": list(input_shape),
        "budget_ms": budget_ms,
        "latency_ratio": latency_ratio,
        "budget_basis": budget_basis,
        "tolerance": MET_TOLERANCE,
        "predicted_ms": {"before": pred_before, "after": pred_after},
        "measured_ms": dict(measured),
        "accuracy": {"metric": monitor, "before": score_before, "after": score_after},
        "params": {
            "before": sum(p.numel() for p in dense.parameters()),
            "after": sum(p.numel() for p in pruned.parameters()),
        },
        "layers": [
            {
                "name": n,
                "in_before": before[n][0],
                "out_before": before[n][1],
                "in_after": after.get(n, before[n])[0],
                "out_after": after.get(n, before[n])[1],
            }
            for n in before
        ],
        "steps": [asdict(s) for s in steps],
    }
    report["budget"] = budget_status(report, scheduled_steps=scheduled_steps)
    return report


def fit_report(
    sides: Sequence[TargetSide],
    dense: nn.Module,
    pruned: nn.Module,
    input_shape: Sequence[int],
    budget: Budget,
    dense_by_target: Mapping[str, float],
    steps: Sequence[PruneStepLog],
    *,
    verify: bool,
    budget_basis: str,
    monitor: str,
    score_before: float | None,
    score_after: float | None,
    scheduled_steps: int,
) -> dict[str, Any]:
    """The fit-end report over every target (one target is a list of one), each target timed once.

    The report's single-target figures (``predicted_ms``, ``measured_ms``, ``budget``) are the primary
    (first) target's; ``targets`` holds every target's entry (:func:`hwprune.verify.report.report_targets`),
    and with several targets the verdict is over all of them (:func:`hwprune.verify.report.summary`).

    Args:
        sides: The targets, the primary one first (empty: setup never resolved them).
        dense: The dense network.
        pruned: The pruned network.
        input_shape: The run's input shape.
        budget: The callback's budget.
        dense_by_target: Each target's predicted dense latency.
        steps: The prune steps.
        verify: False: nothing is timed.
        budget_basis: What the primary target's budget is a share of, in words.
        monitor: The monitored metric's name.
        score_before: Its dense baseline.
        score_after: Its last value.
        scheduled_steps: The schedule's number of steps.

    Returns:
        :func:`build_report`'s dict with ``targets`` added.
    """
    primary = sides[0] if sides else None
    last = asdict(steps[-1]) if steps else None
    targets = []
    if sides:
        targets = report_targets(sides, dense, pruned, input_shape, budget, dense_by_target, last, verify)
    ratio, _ = budget.one()
    result = build_report(
        dense=dense,
        pruned=pruned,
        input_shape=input_shape,
        predictor=None if primary is None else primary.predictor,
        target=None if primary is None else primary.timing,
        verify=verify,
        budget_ms=None if primary is None else budget.final_ms(primary.name, dense_by_target[primary.name]),
        latency_ratio=ratio,
        budget_basis=budget_basis,
        monitor=monitor,
        score_before=score_before,
        score_after=score_after,
        steps=steps,
        scheduled_steps=scheduled_steps,
        measured=targets[0]["measured_ms"] if targets else None,
    )
    result["targets"] = targets
    if len(targets) > 1:  # the verdict over every target
        result["budget"] = summary(targets, steps)
    return result


def budget_status(report: Mapping[str, Any], *, scheduled_steps: int) -> dict[str, Any]:
    """Whether the pruned model meets the budget, in words and as data.

    Timed on the target, the budget is judged on the measurement as the closed loop judges a step
    (:func:`hwprune.verify.stopwatch.judge`, within :data:`~hwprune.verify.stopwatch.MET_TOLERANCE`): a
    ``latency_ratio`` on the pruned model's per-round share of the dense one, a budget in ms on its
    median; otherwise on the predicted latency.

    Args:
        report: :func:`build_report`'s dict.
        scheduled_steps: The schedule's number of prune steps.

    Returns:
        ``{"met": bool, "summary": str}``; the summary starts with ``budget met`` or ``budget NOT met``.
    """
    budget, after = report.get("budget_ms"), report["predicted_ms"]["after"]
    if budget is None or after is None:
        return {"met": False, "summary": "budget NOT met: no predicted latency (no predictor)"}
    outcomes = [s["outcome"] for s in report["steps"]]
    ran = sum(o == "pruned" for o in outcomes)
    steps = f"({ran} of {scheduled_steps} scheduled prune step(s) pruned, {len(outcomes)} attempted)"
    m = report.get("measured_ms") or {}
    ratio = report.get("latency_ratio")
    tolerance = float(report.get("tolerance", MET_TOLERANCE))
    if m.get("after_ms") is not None:
        from hwprune.measure.model_timing import ModelTiming

        rounds_after = tuple(m.get("after_rounds_ms") or (m["after_ms"],))
        rounds_before = tuple(m.get("before_rounds_ms") or (m["before_ms"],))
        pruned_t = ModelTiming(float(m["after_ms"]), float(m.get("after_iqr_ms") or 0.0), rounds_after)
        dense_t = (
            None
            if m.get("before_ms") is None or len(rounds_before) != len(rounds_after)
            else ModelTiming(float(m["before_ms"]), float(m.get("before_iqr_ms") or 0.0), rounds_before)
        )
        verdict = judge(
            pruned_t,
            dense_t,
            latency_ratio=ratio if dense_t is not None else None,
            budget_ms=float(budget),
            tolerance=tolerance,
        )
        summary = (
            f"budget {verdict.describe()} on the target (predicted {after:.4f} ms, planner budget "
            f"{budget:.4f} ms) {steps}"
        )
        return {"met": verdict.met, "summary": summary, "verdict": asdict(verdict)}
    met = bool(after <= budget * (1.0 + 1e-6))
    summary = (
        f"budget {'met' if met else 'NOT met'}: predicted {after:.4f} ms "
        f"{'<=' if met else '>'} budget {budget:.4f} ms, not measured ({m.get('note', 'not timed')}) {steps}"
    )
    return {"met": met, "summary": summary}


def _fmt(v: Any) -> str:
    return "n/a" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))


def _share(meas: Mapping[str, Any]) -> str:
    if meas.get("share") is None:
        return "n/a"
    return f"{meas['share']:.3f} (IQR {meas.get('share_iqr') or 0.0:.3f})"


def render_markdown(r: Mapping[str, Any]) -> str:
    """The report as Markdown: a summary table, per-layer widths and per-step outcomes.

    Args:
        r: :func:`build_report`'s dict, with ``budget`` (:func:`budget_status`) when known.

    Returns:
        The Markdown text, starting with ``# hwprune pruning report``.
    """
    pred, meas, acc = r["predicted_ms"], r["measured_ms"], r["accuracy"]
    lines = [
        "# hwprune pruning report",
        "",
        f"target: {r['target']}, input {r['input_shape']}, budget "
        + (
            f"latency_ratio {r['latency_ratio']:g} of dense (planner budget {_fmt(r['budget_ms'])} ms "
            "predicted)"
            if r.get("latency_ratio") is not None
            else f"{_fmt(r['budget_ms'])} ms"
        ),
        "",
        *([f"**{r['budget']['summary']}**", ""] if "budget" in r else []),
        "| | before | after |",
        "|---|---|---|",
        f"| predicted latency (ms) | {_fmt(pred['before'])} | {_fmt(pred['after'])} |",
        f"| measured latency (ms) | {_fmt(meas['before_ms'])} | {_fmt(meas['after_ms'])} |",
        f"| measured IQR (ms) | {_fmt(meas.get('before_iqr_ms'))} | {_fmt(meas.get('after_iqr_ms'))} |",
        f"| measured share of dense | 1 | {_share(meas)} |",
        f"| {acc['metric']} | {_fmt(acc['before'])} | {_fmt(acc['after'])} |",
        f"| parameters | {r['params']['before']} | {r['params']['after']} |",
        "",
        f"measured: {meas['note']}",
        "",
        *([f"budget: {r['budget_basis']}", ""] if r.get("budget_basis") else []),
        *_targets_markdown(r.get("targets") or []),
        "| layer | in before | in after | out before | out after |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {x['name']} | {x['in_before']} | {x['in_after']} | {x['out_before']} | {x['out_after']} |"
        for x in r["layers"]
    ]
    lines += [
        "",
        "| step | epoch | budget ms | predicted before | after | measured before | after | dense "
        "| share of dense | measured budget ms | met | plan s | outcome |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {s['step']} | {s['epoch']} | {s['budget_ms']:.4f} | {s['latency_before_ms']:.4f} | "
        f"{s['latency_after_ms']:.4f} | {_fmt(s.get('measured_before_ms'))} | "
        f"{_fmt(s.get('measured_after_ms'))} | {_fmt(s.get('measured_dense_ms'))} | "
        f"{'n/a' if s.get('measured_share') is None else format(s['measured_share'], '.3f')} | "
        f"{_fmt(s.get('measured_budget_ms'))} | "
        f"{'n/a' if s.get('measured_met') is None else ('yes' if s['measured_met'] else 'NO')} | "
        f"{s['plan_seconds']:.2f} | {s['outcome']} |"
        for s in r["steps"]
    ]
    return "\n".join(lines) + "\n"


def _targets_markdown(targets: Sequence[Mapping[str, Any]]) -> list[str]:
    """Several targets: one row per target, and where the shared plan was not friendly on it."""
    if not targets:
        return []
    lines = [
        "| target | batch | budget ms | predicted before | after | measured before | after | met "
        "| gave way (ms, groups) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in targets:
        p, m = t["predicted_ms"], t["measured_ms"]
        lines.append(
            f"| {t['target']} | {t['batch']} | {t['budget_ms']:.4f} | {_fmt(p['before'])} "
            f"| {_fmt(p['after'])} "
            f"| {_fmt(m['before_ms'])} | {_fmt(m['after_ms'])} | {'yes' if t['met'] else 'NO'} "
            f"| {float(t['gave_way_ms']):.4f}, {len(t['conflicts'])} |"
        )
    lines.append("")
    for t in targets:
        for root, width, below, extra in t["conflicts"]:
            lines.append(
                f"- {t['target']} gave way on `{root}`: {width} channels is not a friendly count there"
                + (f"; its next friendly count below, {below}, would save {extra:.4f} ms" if below else "")
            )
    return [*lines, ""] if any(t["conflicts"] for t in targets) else lines


def write_report(report: Mapping[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``pruning_report.json`` and ``pruning_report.md`` into ``out_dir`` and log the Markdown.

    Args:
        report: :func:`build_report`'s dict (with ``budget``).
        out_dir: The folder (created if missing).

    Returns:
        The JSON and Markdown paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "pruning_report.json", out / "pruning_report.md"
    json_path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    md = render_markdown(report)
    md_path.write_text(md, encoding="utf-8")
    log.info("pruning report (%s):\n%s", md_path, md)
    return json_path, md_path

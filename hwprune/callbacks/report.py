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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hwprune.callbacks._lightning import rank_zero_only
from hwprune.prune.graph import count_macs
from hwprune.prune.model_latency import predicted_latency
from hwprune.staircase import SLOWDOWN_TOLERANCE, Predictor

log = logging.getLogger(__name__)

__all__ = [
    "PruneStepLog",
    "budget_status",
    "build_report",
    "log_step",
    "measured_latency",
    "render_markdown",
    "step_metrics",
    "write_report",
]


@dataclass(frozen=True)
class PruneStepLog:
    """One scheduled prune step, as reported.

    Attributes:
        step: Step number (0-based, counting attempts).
        epoch: Epoch at whose start it ran.
        budget_ms: The step's predicted-latency budget.
        latency_before_ms: Predicted latency before.
        latency_after_ms: Predicted latency after.
        feasible: Whether the budget was met.
        plan_seconds: Planning + pruning wall time.
        score_before: Monitored metric at the time of the step.
        outcome: ``"pruned"``, ``"no-op"`` or ``"rolled back"``.
        measured_before_ms: Measured latency on the target before the step (the closed loop), else None.
        measured_after_ms: Measured latency of the applied step's model; the closed loop never applies
            one above ``measured_before_ms``.
        closed_loop: The closed loop's rounds (predicted, measured, current ms, configs added).
        closed_loop_note: Why the step was accepted or refused.
        per_target: With several targets, each target's side of the step (empty with one target).
    """

    step: int
    epoch: int
    budget_ms: float
    latency_before_ms: float
    latency_after_ms: float
    feasible: bool
    plan_seconds: float
    score_before: float | None
    outcome: str
    measured_before_ms: float | None = None
    measured_after_ms: float | None = None
    closed_loop: tuple[dict[str, Any], ...] = ()
    closed_loop_note: str = ""
    per_target: tuple[dict[str, Any], ...] = ()


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


def measured_latency(
    target: Any,
    dense: nn.Module,
    pruned: nn.Module,
    input_shape: Sequence[int],
    *,
    verify: bool = True,
    target_name: str | None = None,
    rounds: int = 5,
) -> dict[str, Any]:
    """The dense and pruned networks timed end to end on ``target`` in interleaved rounds.

    Args:
        target: The :class:`~hwprune.measure.Target` to time on, which times whole models here
            (:func:`hwprune.measure.can_time_models`); None when it cannot be timed in this process. Its
            backend sets the target's threads for the timing and hands training's back when it closes.
        dense: The dense network.
        pruned: The pruned network.
        input_shape: The input shape, including the deployment batch.
        verify: False: nothing is timed (the note says so).
        target_name: The name the note gives an untimed target.
        rounds: Interleaved rounds (the median is reported).

    Returns:
        ``{"before_ms", "after_ms", "note"}``; the note names the target, its settings and torch, or why
        nothing was timed (times are then None).
    """
    if not verify:
        return {"before_ms": None, "after_ms": None, "note": "verify=False"}
    if target is None:
        name = target_name or "the target"
        return {
            "before_ms": None,
            "after_ms": None,
            "note": f"target {name!r} cannot be timed in this process",
        }
    from hwprune.measure import time_models

    a, b = time_models(target, [dense, pruned], input_shape, rounds=rounds)
    opts = ", ".join(f"{k}={v}" for k, v in sorted(target.options.items()))
    note = (
        f"measured on target {target.name} ({target.backend}, {target.dtype}, batch {input_shape[0]}, "
        f"{opts}), torch {torch.__version__}, median of {rounds} interleaved rounds"
    )
    return {"before_ms": a.median_ms, "after_ms": b.median_ms, "note": note}


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

    Returns:
        The report: ``target``, ``input_shape``, ``budget_ms``, ``predicted_ms``, ``measured_ms``,
        ``accuracy``, ``params``, ``layers``, ``steps`` and ``budget`` (:func:`budget_status`).
    """
    pred_before = pred_after = None
    if predictor is not None:
        pred_before = predicted_latency(predictor, dense, input_shape)
        pred_after = predicted_latency(predictor, pruned, input_shape)
    name = getattr(predictor, "target_", None)
    measured = measured_latency(target, dense, pruned, input_shape, verify=verify, target_name=name)
    before, after = _conv_channels(dense), _conv_channels(pruned)
    report = {
        "target": name,
        "input_shape": list(input_shape),
        "budget_ms": budget_ms,
        "predicted_ms": {"before": pred_before, "after": pred_after},
        "measured_ms": measured,
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


def budget_status(report: Mapping[str, Any], *, scheduled_steps: int) -> dict[str, Any]:
    """Whether the pruned model meets the budget, in words and as data.

    Timed on the target, the budget is judged on the measurement as the closed loop judges a step (within
    :data:`~hwprune.staircase.SLOWDOWN_TOLERANCE`); otherwise on the predicted latency.

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
    measured = (report.get("measured_ms") or {}).get("after_ms")
    if measured is not None:
        met = bool(measured <= budget * (1.0 + SLOWDOWN_TOLERANCE))
        summary = (
            f"budget {'met' if met else 'NOT met'}: measured {measured:.4f} ms "
            f"{'<=' if met else '>'} budget {budget:.4f} ms + {SLOWDOWN_TOLERANCE:.0%} on the target "
            f"(predicted {after:.4f} ms) {steps}"
        )
        return {"met": met, "summary": summary}
    met = bool(after <= budget * (1.0 + 1e-6))
    summary = (
        f"budget {'met' if met else 'NOT met'}: predicted {after:.4f} ms "
        f"{'<=' if met else '>'} budget {budget:.4f} ms {steps}"
    )
    return {"met": met, "summary": summary}


def _fmt(v: Any) -> str:
    return "n/a" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))


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
        f"target: {r['target']}, input {r['input_shape']}, budget {_fmt(r['budget_ms'])} ms",
        "",
        *([f"**{r['budget']['summary']}**", ""] if "budget" in r else []),
        "| | before | after |",
        "|---|---|---|",
        f"| predicted latency (ms) | {_fmt(pred['before'])} | {_fmt(pred['after'])} |",
        f"| measured latency (ms) | {_fmt(meas['before_ms'])} | {_fmt(meas['after_ms'])} |",
        f"| {acc['metric']} | {_fmt(acc['before'])} | {_fmt(acc['after'])} |",
        f"| parameters | {r['params']['before']} | {r['params']['after']} |",
        "",
        f"measured: {meas['note']}",
        "",
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
        "| step | epoch | budget ms | predicted before | after | measured before | after | plan s "
        "| outcome |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {s['step']} | {s['epoch']} | {s['budget_ms']:.4f} | {s['latency_before_ms']:.4f} | "
        f"{s['latency_after_ms']:.4f} | {_fmt(s.get('measured_before_ms'))} | "
        f"{_fmt(s.get('measured_after_ms'))} | {s['plan_seconds']:.2f} | {s['outcome']} |"
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

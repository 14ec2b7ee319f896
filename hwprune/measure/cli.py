"""``hwprune measure``, ``hwprune devices`` and ``hwprune staircase``."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["default_table_path", "register", "sweep_exit_code"]


def default_table_path(
    target: str, model: str | None, input_shape: tuple[int, ...], grid: str | None
) -> Path:
    """Where ``hwprune measure`` writes without ``--out``: the cache folder, never a shipped table.

    The path is ``$XDG_CACHE_HOME/hwprune/tables/<target>/<model>_<H>.csv`` (``~/.cache`` by default), the
    file that ``PredictorFactory`` (``train.py``) looks for, or ``<grid stem>.csv`` there for ``--grid``.

    Args:
        target: The target's name.
        model: The model (None with ``grid``).
        input_shape: The model's input shape.
        grid: The grid YAML, or None.

    Returns:
        The table path.

    Example:
        >>> default_table_path("cpu_torch", "small_resnet", (1, 1, 28, 28), None).name
        'small_resnet_28.csv'
    """
    root = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "hwprune" / "tables" / target
    return root / (f"{Path(grid).stem}.csv" if grid else f"{model}_{int(input_shape[-1])}.csv")


def input_shape_arg(text: str) -> tuple[int, ...]:
    """argparse type for ``--input N,C,H,W`` (shared by every stage's CLI)."""
    try:
        shape = tuple(int(x) for x in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"`--input` must be N,C,H,W integers, got {text!r}") from err
    if len(shape) != 4:
        raise argparse.ArgumentTypeError(f"`--input` must be N,C,H,W (4 integers), got {text!r}")
    return shape


def _fleet_arg(text: str) -> int | str:
    """argparse type for ``--fleet N|auto``."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"`--fleet` must be a positive integer or 'auto', got {text!r}"
        ) from err


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the measure-stage sub-commands to the top-level ``hwprune`` parser.

    Args:
        subparsers: The parent's ``add_subparsers()`` object.
    """
    p = subparsers.add_parser(
        "measure", help="time a model's conv layer space on a target, append to a table"
    )
    _add_space_args(p)
    _add_table_args(p)
    _add_timing_args(p)
    _add_run_args(p)
    _add_sampling_args(p)
    p.set_defaults(func=_cmd_measure)

    d = subparsers.add_parser("devices", help="print the device inventory (CPU, CUDA, OpenCL, versions)")
    d.add_argument("--json", action="store_true", help="print JSON instead of text")
    d.set_defaults(func=_cmd_devices)

    s = subparsers.add_parser("staircase", help="plot latency against out-channels for one layer")
    s.add_argument("--table", required=True, help="measurement table CSV")
    s.add_argument("--layer", required=True, help="layer label as in the table's `layer` column")
    s.add_argument("--out", required=True, help="PNG path")
    s.add_argument(
        "--batch", type=int, default=None, help="batch to plot (default: the smallest in the table)"
    )
    s.add_argument("--title", default=None, help="plot title")
    s.set_defaults(func=_cmd_staircase)


def _add_space_args(p: argparse.ArgumentParser) -> None:
    """``hwprune measure``: what to time (the target and the layer space)."""
    p.add_argument(
        "--target", default="cpu_torch", help="catalogue name (hwprune/conf/device/<name>.yaml) or YAML path"
    )
    p.add_argument("--model", default="small_resnet", help="factory model name (ignored with --grid)")
    p.add_argument("--input", type=input_shape_arg, default=(1, 1, 28, 28), help="N,C,H,W input shape")
    p.add_argument("--batch", type=int, default=None, help="override the target's batch")
    p.add_argument("--floor", type=float, default=0.25, help="smallest fraction of each layer's channels")
    p.add_argument("--step", type=int, default=1, help="channel step of the sweep")
    p.add_argument("--layers", default=None, help="comma-separated conv names (prefixes) to sweep")
    p.add_argument(
        "--sweep-in",
        default="2d",
        choices=("2d", "coupled", "all", "none"),
        help="2d: out sweep, in sweep and (in, out) pairs over every residue mod 8 (default); "
        "coupled: out sweep only",
    )
    p.add_argument("--pairs", type=int, default=24, help="(in, out) pairs per conv shape in the 2d space")
    p.add_argument("--grid", default=None, help="YAML grid file instead of a model")


def _add_table_args(p: argparse.ArgumentParser) -> None:
    """``hwprune measure``: the table it appends to."""
    p.add_argument(
        "--out",
        default=None,
        help="table CSV (default: $XDG_CACHE_HOME/hwprune/tables/<target>/<model>_<H>.csv, ~/.cache by "
        "default; never a shipped table)",
    )
    p.add_argument(
        "--allow-mixed-targets",
        action="store_true",
        help="append to a table that holds another target's rows (plots accept it; `fit` does not)",
    )
    p.add_argument(
        "--allow-mixed-devices",
        action="store_true",
        help="append to a table measured on another device or library version (CPU model, GPU name, "
        "torch/cuDNN/TVM version); the sidecar keeps the first machine's record",
    )


def _add_timing_args(p: argparse.ArgumentParser) -> None:
    """``hwprune measure``: how each config is timed (the harness's EvaluatorConfig)."""
    p.add_argument("--warmup", type=int, default=3, help="untimed runs per config")
    p.add_argument("--number", type=int, default=1, help="minimum runs per sample")
    p.add_argument("--repeat", type=int, default=7, help="samples per config")
    p.add_argument("--min-repeat-ms", type=float, default=20.0, help="minimum duration of a sample")
    p.add_argument(
        "--max-rel-spread",
        type=float,
        default=0.10,
        help="a row whose IQR/median exceeds this is noisy: timed again, and marked if it stays noisy",
    )
    p.add_argument("--retime", type=int, default=2, help="extra timings of a noisy config")


def _add_run_args(p: argparse.ArgumentParser) -> None:
    """``hwprune measure``: how much of the space a run times, in what order and where."""
    p.add_argument("--limit", type=int, default=None, help="time at most this many new configs")
    # One flag per budget: seconds (--budget-s, plain and adaptive sweeps alike) and configurations
    # (--adapt-budget). The older spellings stay as hidden aliases so scripts keep working.
    p.add_argument(
        "--budget-s",
        dest="budget_s",
        type=float,
        default=None,
        help="stop starting configs after this many seconds (plain and --adaptive sweeps)",
    )
    p.add_argument("--time-budget", dest="budget_s", type=float, help=argparse.SUPPRESS)
    p.add_argument(
        "--shuffle",
        type=int,
        default=None,
        metavar="SEED",
        help="time configs in a random order (spreads load bursts as noise, not fake stairs)",
    )
    p.add_argument(
        "--fleet",
        type=_fleet_arg,
        default=None,
        metavar="N|auto",
        help="share the sweep between N servers of the target's TVM RPC tracker key (auto: all it lists)",
    )
    p.add_argument("--load-note", default=None, help="note on machine load, stored in the sidecar")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--retry-errors", action="store_true", help="time again configs that failed before")


def _add_sampling_args(p: argparse.ArgumentParser) -> None:
    """``hwprune measure``: the two ways to measure less (hwprune.predict.adapt)."""
    p.add_argument("--adaptive", action="store_true", help="adaptive sampling (hwprune.predict.adapt)")
    p.add_argument("--goal", type=float, default=0.99, help="adaptive: share of predictions within 10%%")
    p.add_argument(
        "--adapt-from",
        default=None,
        metavar="PRED_OR_TABLE",
        help="adapt another target's predictor (.skops) or table: measure only --adapt-budget selected "
        "configs, then fit and save the adapted predictor (hwprune.predict.adapt)",
    )
    p.add_argument(
        "--adapt-budget", dest="adapt_budget", type=int, default=None, help="--adapt-from: configs to measure"
    )
    p.add_argument("--budget", dest="adapt_budget", type=int, help=argparse.SUPPRESS)
    p.add_argument(
        "--out-predictor", default=None, help="--adapt-from: predictor file (default: the table's, .skops)"
    )


def _cmd_measure(args: argparse.Namespace) -> int:
    import sys

    try:
        return _measure(args)
    except KeyboardInterrupt:
        # Every finished row is flushed and fsynced; the row in flight is cut on the next open.
        out = args.out or "the table"
        print(
            f"hwprune measure: interrupted; {out} keeps every row finished so far: run the same command "
            "again to resume (configs already there are skipped)",
            file=sys.stderr,
        )
        return 130


def _measure(args: argparse.Namespace) -> int:
    _check_sampling_args(args)
    target = _target(args)
    space = _space(args)
    out = args.out or default_table_path(target.name, args.model, args.input, args.grid)
    log.info("writing to %s", out)
    sidecar: dict[str, object] = {"load_note": args.load_note} if args.load_note else {}
    if not args.grid:
        sidecar["space"] = {"model": args.model, "input": list(args.input)}
    ev = _evaluator(args)
    if args.adapt_from is not None:
        return _measure_and_adapt(args, target, space, out, ev, sidecar)
    if args.adaptive:
        from hwprune.predict.adapt import adaptive_measure  # lazy: it loads scikit-learn

        adaptive_measure(
            target,
            space,
            out,
            goal_within10=args.goal,
            time_budget_s=args.budget_s,
            evaluator=ev,
            progress=not args.no_progress,
        )
        return 0
    return _sweep(args, target, space, out, ev, sidecar)


def _check_sampling_args(args: argparse.Namespace) -> None:
    """Refuse flags of the two ways to measure less that do not go together, before anything is timed."""
    if (args.adapt_budget is not None or args.out_predictor) and args.adapt_from is None:
        raise ValueError("`--adapt-budget` and `--out-predictor` need `--adapt-from PRED_OR_TABLE`")
    if args.adapt_from is not None and args.adaptive:
        raise ValueError("`--adaptive` and `--adapt-from` are two ways to measure less: choose one")
    if args.adapt_from is not None and args.adapt_budget is None:
        raise ValueError("`--adapt-budget` must be given with --adapt-from (configs to measure, >= 1)")


def _target(args: argparse.Namespace) -> Any:
    """The target, with ``--batch`` and ``--fleet`` applied."""
    from hwprune.measure.targets import load_target

    target = load_target(args.target)
    if args.batch is not None:
        target = dataclasses.replace(target, batch=args.batch)
    if args.fleet is not None:  # as the target's option, so the adaptive sweep shares the fleet too
        target = dataclasses.replace(target, options={**target.options, "fleet": args.fleet})
    return target


def _space(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The layer space: the ``--grid`` file's, or the ``--model``'s."""
    from hwprune.measure.space import grid_space, model_space

    if args.grid:
        return grid_space(args.grid)
    layers = [x.strip() for x in args.layers.split(",")] if args.layers else None
    return model_space(
        args.model,
        args.input,
        floor=args.floor,
        step=args.step,
        layers=layers,
        sweep_in=args.sweep_in,
        pairs=args.pairs,
    )


def _evaluator(args: argparse.Namespace) -> Any:
    """The harness's timing settings from the timing flags."""
    from hwprune.measure.evaluator import EvaluatorConfig

    return EvaluatorConfig(
        warmup=args.warmup,
        number=args.number,
        repeat=args.repeat,
        min_repeat_ms=args.min_repeat_ms,
        max_rel_spread=args.max_rel_spread,
        retime=args.retime,
    )


def _measure_and_adapt(
    args: argparse.Namespace,
    target: Any,
    space: list[dict[str, Any]],
    out: str | os.PathLike[str],
    ev: Any,
    sidecar: dict[str, object],
) -> int:
    """``--adapt-from``: measure the selected configs, fit and save the adapted predictor."""
    from hwprune.predict.adapt import measure_and_adapt  # lazy: it loads scikit-learn

    res = measure_and_adapt(
        target,
        space,
        out,
        adapt_from=args.adapt_from,
        budget=args.adapt_budget,
        out_predictor=args.out_predictor or Path(out).with_suffix(".skops"),
        evaluator=ev,
        progress=not args.no_progress,
        sidecar=sidecar or None,
    )
    v = res.predictor.validation_
    print(
        f"{res.table}: {res.n_selected} of {res.n_candidates} configs selected, {res.measured} measured "
        f"now; wrote {res.predictor_path} (correction {res.predictor.correction_}, cross-validated "
        f"within ±10% {100 * v.get('count_within10', float('nan')):.1f}%, prior alone "
        f"{100 * v['prior_within10']:.1f}%), {res.wall_s:.1f} s"
    )
    return 0


def _sweep(
    args: argparse.Namespace,
    target: Any,
    space: list[dict[str, Any]],
    out: str | os.PathLike[str],
    ev: Any,
    sidecar: dict[str, object],
) -> int:
    """The plain sweep: time every config of the space not yet in the table."""
    from hwprune.measure.sweep import measure

    summary = measure(
        target,
        space,
        out,
        evaluator=ev,
        progress=not args.no_progress,
        retry_errors=args.retry_errors,
        limit=args.limit,
        time_budget_s=args.budget_s,
        shuffle_seed=args.shuffle,
        sidecar=sidecar or None,
        allow_mixed_targets=args.allow_mixed_targets,
        allow_mixed_devices=args.allow_mixed_devices,
    )
    failed_before = (
        f", {summary.skipped_failed} of them failed before (--retry-errors times them again)"
        if summary.skipped_failed
        else ""
    )
    print(
        f"{summary.path}: measured {summary.measured}, failed {summary.failed}, "
        f"skipped {summary.skipped} (already there{failed_before}), noisy {summary.noisy}, "
        f"{summary.wall_s:.1f} s"
    )
    if summary.fleet is not None:
        print(summary.fleet.describe())
    return sweep_exit_code(summary)


def sweep_exit_code(summary: object) -> int:
    """``hwprune measure``'s exit status: 1 when every configuration it timed failed, printing why.

    Args:
        summary: The :class:`~hwprune.measure.sweep.MeasureSummary`.

    Returns:
        0, or 1 (the first error printed to stderr) when the sweep timed configs and none succeeded.

    Example:
        >>> from hwprune.measure.sweep import MeasureSummary
        >>> sweep_exit_code(MeasureSummary(Path("t.csv"), "x", 0, 3, 0, 1.0, first_error="no device"))
        1
    """
    import sys

    measured, failed = int(getattr(summary, "measured", 0)), int(getattr(summary, "failed", 0))
    if failed and not measured:
        print(
            f"hwprune measure: every one of the {failed} configs failed on target "
            f"{getattr(summary, 'target', '?')}; the first error: {getattr(summary, 'first_error', None)}",
            file=sys.stderr,
        )
        return 1
    return 0


def _cmd_devices(args: argparse.Namespace) -> int:
    import json

    from hwprune.measure.device_info import collect, format_inventory

    info = collect()
    print(json.dumps(info, indent=2, default=str) if args.json else format_inventory(info))
    return 0


def _cmd_staircase(args: argparse.Namespace) -> int:
    from hwprune.measure.plot import plot_staircase

    path = plot_staircase(args.table, args.layer, args.out, batch=args.batch, title=args.title)
    print(f"wrote {Path(path)}")
    return 0

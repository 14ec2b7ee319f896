"""``hwprune fit`` and ``hwprune report``: the predict stage's sub-commands.

Both call the same library functions as Python users: :meth:`LatencyPredictor.fit`/:meth:`save` and
:func:`hwprune.predict.report.evaluate`.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["ESTIMATOR_CHOICES", "TRANSFORM_CHOICES", "register"]

# The values of `EstimatorKind` and `TargetTransform` (hwprune.predict.predictor), spelled out so that
# `hwprune --help` needs no scikit-learn import; tests/predict/test_report_cli.py pins them equal.
ESTIMATOR_CHOICES: tuple[str, ...] = ("auto", "hist_gradient_boosting", "extra_trees")
TRANSFORM_CHOICES: tuple[str, ...] = ("auto", "log", "log_per_flop")


def register(subparsers: Any) -> None:
    """Add ``fit`` and ``report`` to the top-level ``hwprune`` parser.

    Args:
        subparsers: The object returned by ``ArgumentParser.add_subparsers``.

    Example:
        >>> register(argparse.ArgumentParser().add_subparsers())
    """
    fit = subparsers.add_parser("fit", help="fit a latency predictor on a measurement table")
    fit.add_argument("table", type=Path, help="measurement CSV (one target)")
    fit.add_argument("--out", type=Path, required=True, help="predictor file to write (.skops)")
    fit.add_argument(
        "--estimator",
        choices=ESTIMATOR_CHOICES,
        default="auto",
        help="regressor (auto: chosen by grouped CV)",
    )
    fit.add_argument(
        "--transform",
        choices=TRANSFORM_CHOICES,
        default="auto",
        help="regression target (auto: chosen by grouped CV)",
    )
    fit.add_argument("--cv-folds", type=int, default=5, help="grouped CV folds (0: none, fixed model)")
    fit.set_defaults(func=_run_fit)

    rep = subparsers.add_parser("report", help="score a predictor on a measurement table")
    rep.add_argument("predictor", type=Path, help="predictor file (.skops)")
    rep.add_argument("table", type=Path, help="measurement CSV of the same target")
    rep.add_argument("--json", action="store_true", help="print the report as JSON")
    rep.add_argument(
        "--plot-dir", type=Path, default=None, help="write predicted_vs_measured.png and staircase.png here"
    )
    rep.add_argument("--layer", default=None, help="sweep to plot as a staircase (substring of its label)")
    rep.set_defaults(func=_run_report)


def _run_fit(args: argparse.Namespace) -> int:
    from hwprune.measure.table import read_table, warn_if_inconsistent, warn_if_noisy
    from hwprune.predict.predictor import LatencyPredictor

    df = read_table(args.table)
    warn_if_noisy(df, str(args.table))
    warn_if_inconsistent(df, str(args.table))
    pred = LatencyPredictor(estimator=args.estimator, target_transform=args.transform, cv_folds=args.cv_folds)
    pred.fit(args.table)
    path = pred.save(args.out)
    v = pred.validation_
    msg = (
        f"wrote {path}: target {pred.target_}, {pred.n_train_rows_} rows, "
        f"{pred.estimator_kind_}/{pred.transform_}"
    )
    if v:
        msg += (
            f"; grouped-CV within ±10%: unseen counts {100 * v['count_within10']:.1f}%, "
            f"unseen layer shapes {100 * v['layer_within10']:.1f}%"
        )
    print(msg)
    return 0


def _run_report(args: argparse.Namespace) -> int:
    from hwprune.predict.predictor import LatencyPredictor
    from hwprune.predict.report import evaluate, format_report, plot_predicted_vs_measured, plot_staircase

    pred = LatencyPredictor.load(args.predictor)
    rep, rows = evaluate(pred, args.table)
    if args.json:
        print(json.dumps(rep.to_dict(), indent=2))
    else:
        print(format_report(rep))
    if args.plot_dir is not None:
        scatter = plot_predicted_vs_measured(
            rows, args.plot_dir / "predicted_vs_measured.png", title=f"{rep.target}: predicted vs measured"
        )
        stairs = plot_staircase(rows, args.plot_dir / "staircase.png", layer=args.layer)
        log.info("wrote %s and %s", scatter, stairs)
    return 0

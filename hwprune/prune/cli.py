"""``hwprune prune``: prune a factory model offline to a latency budget and print the plan."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from hwprune.measure.cli import input_shape_arg

log = logging.getLogger(__name__)

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``hwprune prune`` to the top-level parser.

    Args:
        subparsers: The parent's ``add_subparsers()`` object.
    """
    p = subparsers.add_parser("prune", help="prune a model offline to a latency budget and print the plan")
    p.add_argument("--model", default="small_resnet", help="factory model name")
    p.add_argument("--input", type=input_shape_arg, default=(1, 1, 28, 28), help="N,C,H,W input shape")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--predictor", help="saved LatencyPredictor (.skops)")
    src.add_argument("--table", help="measurement table CSV to fit a predictor on")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--latency-ratio", type=float, help="budget as a fraction of the dense latency")
    budget.add_argument("--latency-ms", type=float, help="budget in ms")
    p.add_argument("--snap", default="up", choices=("up", "down", "nearest", "none"), help="snap mode")
    p.add_argument("--importance", default="l1", choices=("l1", "l2", "bn_scale"), help="channel importance")
    p.add_argument("--min-ratio", type=float, default=0.25, help="smallest share of a group's channels")
    p.add_argument("--out", default=None, help="write the pruned-model bundle here (for load_pruned)")
    p.set_defaults(func=_cmd_prune)


def _cmd_prune(args: argparse.Namespace) -> int:
    import torch

    from hwprune.models.factory import build_model
    from hwprune.predict import LatencyPredictor
    from hwprune.prune import conv_widths, predicted_latency, prune_to_budget

    if args.predictor:
        predictor = LatencyPredictor.load(args.predictor)
    else:
        predictor = LatencyPredictor(
            estimator="extra_trees", target_transform="log_per_flop", cv_folds=0, n_estimators=100
        ).fit(args.table)
    shape = tuple(args.input)
    model = build_model(args.model, in_channels=shape[1], input_size=shape[-1]).eval()
    dense = conv_widths(model)
    before = predicted_latency(predictor, model, shape)
    if args.latency_ratio is not None and not 0 < args.latency_ratio < 1:
        raise ValueError(f"`--latency-ratio` must be a fraction in (0, 1), got {args.latency_ratio}")
    budget = args.latency_ms if args.latency_ms is not None else args.latency_ratio * before
    res = prune_to_budget(
        model,
        predictor,
        shape,
        budget,
        importance=args.importance,
        snap_mode=None if args.snap == "none" else args.snap,
        min_ratio=args.min_ratio,
    )
    print(
        f"{args.model} {shape}: predicted {before:.4f} -> {res.latency_after_ms:.4f} ms "
        f"(budget {budget:.4f} ms, {'met' if res.plan.feasible else 'NOT met'}), "
        f"plan {res.plan.seconds:.2f} s"
    )
    print(f"{'group root':<32} {'before':>6} {'after':>6} {'saved ms':>9}  friendly (top 8)")
    for d in res.plan.decisions:
        print(
            f"{d.root:<32} {d.width_before:>6} {d.width_after:>6} {d.latency_saved_ms:>9.4f}  "
            f"{list(d.friendly[-8:])}"
        )
    if args.out:
        torch.save(
            {
                "format": "hwprune-pruned/1",
                "input_shape": list(shape),
                "history": [res.history],
                "ignored_layers": [],
                "model_spec": {
                    "_target_": "hwprune.models.build_model",
                    "name": args.model,
                    "in_channels": shape[1],
                    "input_size": shape[-1],
                },
                "state_dict": model.state_dict(),
            },
            Path(args.out),
        )
        print(f"wrote {args.out} ({sum(dense.values())} -> {sum(conv_widths(model).values())} conv channels)")
    return 0

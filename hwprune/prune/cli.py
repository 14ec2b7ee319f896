"""``hwprune prune``: prune a factory model offline to a latency budget and print the plan.

Exit status: 0 when the plan meets the budget, 1 when it cannot (the plan is still printed and written),
2 for a bad argument or a predictor that never measured most of the model's layer shapes.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from hwprune.measure.cli import input_shape_arg
from hwprune.options import DEFAULT_MIN_CHANNEL_RATIO, OFFLINE_IMPORTANCE_KINDS, SNAP_MODES

log = logging.getLogger(__name__)

__all__ = ["missing_layer_shapes", "model_and_input", "register"]


def model_and_input(
    model: str | None, input_shape: tuple[int, ...] | None, table: str | None
) -> tuple[str, tuple[int, ...]]:
    """The model and input to plan for: the ones given, else those recorded in the table's sidecar.

    Args:
        model: ``--model`` or None.
        input_shape: ``--input`` or None.
        table: ``--table`` or None.

    Returns:
        ``(model name, input shape)``.

    Raises:
        ValueError: If one is missing and no table sidecar records it.

    Example:
        >>> model_and_input("small_resnet", (1, 1, 28, 28), None)
        ('small_resnet', (1, 1, 28, 28))
    """
    space: dict[str, object] = {}
    if table is not None and (model is None or input_shape is None):
        import json

        sidecar = Path(table).with_suffix(".json")
        if sidecar.exists():
            space = dict(json.loads(sidecar.read_text(encoding="utf-8")).get("space") or {})
    model = model or (str(space["model"]) if space.get("model") else None)
    if input_shape is None and space.get("input"):
        input_shape = tuple(int(x) for x in space["input"])  # type: ignore[attr-defined]
    if model is None or input_shape is None:
        where = f"the sidecar of {table} records no model space" if table else "no --table was given"
        raise ValueError(
            f"`--model` and `--input` must be given ({where}), got model={model!r}, input={input_shape!r}: "
            "a predictor knows only the layer shapes it was measured on"
        )
    return model, tuple(input_shape)


def missing_layer_shapes(model: Any, input_shape: tuple[int, ...], table: str) -> list[str]:
    """Conv layers of ``model`` whose layer shape (all but the channel counts) the table never measured.

    Args:
        model: The dense model.
        input_shape: Its input shape.
        table: The measurement CSV.

    Returns:
        The names of the layers the predictor would extrapolate to.

    Example:
        >>> missing_layer_shapes(build_model("resnet18", 3, input_size=224), (1, 3, 224, 224), "t.csv")
        ... # doctest: +SKIP
        ['conv1', 'layer1.0.conv1', ...]
    """
    import pandas as pd

    from hwprune.contract import conv_layer_configs
    from hwprune.measure.table import read_table
    from hwprune.predict.features import config_frame, layer_key

    df = read_table(table)
    default = None if "dtype" in df.columns else "float32"
    known = set(layer_key(config_frame(df, default_dtype=default)))
    dtype = str(df["dtype"].iloc[0]) if "dtype" in df.columns and len(df) else "float32"
    layers = conv_layer_configs(model, input_shape)
    keys = layer_key(config_frame(pd.DataFrame([{**c.config, "dtype": dtype} for c in layers])))
    return [c.name for c, k in zip(layers, keys, strict=True) if k not in known]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``hwprune prune`` to the top-level parser.

    Args:
        subparsers: The parent's ``add_subparsers()`` object.
    """
    p = subparsers.add_parser(
        "prune",
        help="prune a model offline to a latency budget and print the plan",
        description="Prune a factory model offline to a latency budget and print the plan. The model and "
        "input come from the table's sidecar (written by `hwprune measure`) when --table is given, else "
        "--model and --input are required: a predictor only knows the layer shapes it was fitted on.",
    )
    p.add_argument("--model", default=None, help="factory model name (default: the table's)")
    p.add_argument(
        "--input", type=input_shape_arg, default=None, help="N,C,H,W input shape (default: the table's)"
    )
    p.add_argument("--predictor", help="saved LatencyPredictor (.skops)")
    p.add_argument(
        "--table",
        help="measurement CSV: fits a predictor when --predictor is not given; also names the model and "
        "input, and is checked for the layer shapes the plan needs",
    )
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--latency-ratio", type=float, help="budget as a fraction of the dense latency")
    budget.add_argument("--latency-ms", type=float, help="budget in ms")
    p.add_argument("--snap", default="up", choices=(*SNAP_MODES, "none"), help="snap mode")
    p.add_argument("--importance", default="l1", choices=OFFLINE_IMPORTANCE_KINDS, help="channel importance")
    p.add_argument(
        "--min-channel-ratio",
        type=float,
        default=DEFAULT_MIN_CHANNEL_RATIO,
        help="no group below this share of its channels (default: %(default)s)",
    )
    p.add_argument("--out", default=None, help="write the pruned-model bundle here (for load_pruned)")
    p.add_argument(
        "--allow-unmeasured",
        action="store_true",
        help="plan even when more than 10%% of the predicted latency lies on conv shapes the predictor "
        "never measured (they are named in a warning either way)",
    )
    p.set_defaults(func=_cmd_prune)


def _check_layer_shapes(args: argparse.Namespace, predictor: Any, model: Any, shape: tuple[int, ...]) -> None:
    """Refuse (or, with ``--allow-unmeasured``, warn about) conv shapes the predictor never measured."""
    from hwprune.prune.coverage import UNMEASURED_SHARE_LIMIT, check_coverage, unmeasured_layers

    coverage = unmeasured_layers(predictor, model, shape)
    if coverage.known:
        check_coverage(
            coverage,
            "warn" if args.allow_unmeasured else "raise",
            limit=UNMEASURED_SHARE_LIMIT,
            what=f"{args.model} at {shape}",
            opt_in="--allow-unmeasured",
        )
    elif args.table:  # a predictor file from before layer shapes were recorded: check against the table
        missing = missing_layer_shapes(model, shape, args.table)
        if missing:
            log.warning(
                "the plan extrapolates: %d conv layer(s) of %s at %s have layer shapes absent from %s: %s",
                len(missing),
                args.model,
                shape,
                args.table,
                ", ".join(missing),
            )
    else:
        log.warning("cannot check that the predictor was measured on %s's layer shapes", args.model)


def _cmd_prune(args: argparse.Namespace) -> int:
    from hwprune.models.factory import build_model
    from hwprune.predict import LatencyPredictor
    from hwprune.prune import conv_widths, predicted_latency, prune_to_budget
    from hwprune.verify.budget import Budget

    if not args.predictor and not args.table:
        raise ValueError("`--predictor` or `--table` must be given, got neither")
    name, shape = model_and_input(args.model, args.input, args.table)
    args.model = name
    if args.predictor:
        predictor = LatencyPredictor.load(args.predictor)
    else:
        predictor = LatencyPredictor(
            estimator="extra_trees", target_transform="log_per_flop", cv_folds=0, n_estimators=100
        ).fit(args.table)
    model = build_model(args.model, in_channels=shape[1], input_size=shape[-1]).eval()
    _check_layer_shapes(args, predictor, model, shape)
    dense = conv_widths(model)
    before = predicted_latency(predictor, model, shape)
    try:
        spec = Budget.parse(args.latency_ratio, args.latency_ms)
    except ValueError as err:  # the CLI's names for the same arguments
        raise ValueError(
            str(err).replace("`latency_ratio`", "`--latency-ratio`").replace("`latency_ms`", "`--latency-ms`")
        ) from None
    budget = spec.final_ms("cli", before)
    res = prune_to_budget(
        model,
        predictor,
        shape,
        budget,
        importance=args.importance,
        snap=None if args.snap == "none" else args.snap,
        min_channel_ratio=args.min_channel_ratio,
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
        from hwprune.prune.bundle import write_bundle

        spec = {
            "_target_": "hwprune.models.build_model",
            "name": args.model,
            "in_channels": shape[1],
            "input_size": shape[-1],
        }
        write_bundle(args.out, model, shape, [res.history], model_spec=spec)
        print(f"wrote {args.out} ({sum(dense.values())} -> {sum(conv_widths(model).values())} conv channels)")
    if not res.plan.feasible:
        import sys

        print(
            f"hwprune prune: budget NOT met: the plan predicts {res.latency_after_ms:.4f} ms, over the "
            f"budget of {budget:.4f} ms (no group goes below --min-channel-ratio {args.min_channel_ratio:g} "
            "of its width, on friendly counts); raise the budget or lower --min-channel-ratio",
            file=sys.stderr,
        )
        return 1
    return 0

"""Measure the layer tables behind ``reproduce_paper.py``: every conv of ResNet-18, ResNet-50 and VGG-16.

The seed paper (Radu et al., IISWC 2019) swept the output channels of every conv layer of these networks at
224x224, batch 1. This does the same on one target through the measurement harness (``hwprune.measure``),
following ``benchmarks/conf/paper_sweep.yaml``: for each distinct conv shape, the output channels go from
the dense count down to half of it, every ``max(1, C // divisor)``-th count (every count for C <= divisor),
plus the exact count at 12% removed (the paper's headline setting). Tables are written to
``tables/<target>/paper_<model>_224.csv``; they are append-only and resumable, so a run cut short by
``--budget-s`` goes on where it stopped.

    python -m benchmarks.paper_sweep --target cpu_torch --divisor 64 --budget-s 3000
    python3 -m benchmarks.paper_sweep --target cuda_cudnn_fp32_heuristics --divisor 512   # on a GPU
    python -m benchmarks.paper_sweep --target cpu_torch --models vgg16 --quick --out /tmp/t

Every model is built with random weights (timing does not depend on them); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, load_config
from hwprune.contract import CONFIG_COLUMNS, conv_layer_configs
from hwprune.measure import EvaluatorConfig, load_target, measure
from hwprune.models import build_model


def paper_space(
    model: str,
    divisor: int,
    floor: float = 0.5,
    removed: Sequence[float] = (0.12,),
    shape: Sequence[int] = (1, 3, 224, 224),
) -> list[dict[str, Any]]:
    """Configs of every distinct conv of ``model`` at 224x224, batch 1, out channels swept over 0-50% removed.

    Args:
        model: Factory model name.
        divisor: Step is ``max(1, C // divisor)`` for a conv of ``C`` output channels.
        floor: Smallest fraction of the dense count.
        removed: Shares removed whose exact counts are added (0.12: the paper's 12%).
        shape: Input shape including batch.

    Returns:
        Config dicts (``CONFIG_COLUMNS`` plus ``layer``, the conv names joined by ``;``), widest layer
        shapes first within each conv.

    Raises:
        ValueError: If ``divisor`` < 1 or ``floor`` not in (0, 1].
    """
    if divisor < 1:
        raise ValueError(f"`divisor` must be >= 1, got {divisor}")
    if not 0 < floor <= 1:
        raise ValueError(f"`floor` must be in (0, 1], got {floor}")
    shape = tuple(int(s) for s in shape)
    net = build_model(model, num_classes=1000, in_channels=shape[1], input_size=shape[-1])
    seen: dict[tuple[int, ...], dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for layer in conv_layer_configs(net, shape):
        base = dict(layer.config)
        C = int(base["out_channels"])
        step = max(1, C // divisor)
        lo = max(1, -(-int(floor * C * 1000) // 1000))
        counts = sorted(set(range(C, lo - 1, -step)) | {round((1 - r) * C) for r in removed}, reverse=True)
        for c in counts:
            cfg = {**base, "out_channels": c, "layer": layer.name}
            key = tuple(int(cfg[k]) for k in CONFIG_COLUMNS)
            if key in seen:
                if layer.name not in seen[key]["layer"].split(";"):
                    seen[key]["layer"] += ";" + layer.name
                continue
            seen[key] = cfg
            out.append(cfg)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--target", required=True, help="catalogue name (hwprune/conf/device/<name>.yaml) or YAML path"
    )
    ap.add_argument("--models", default=None, help="comma-separated, from the config's models")
    ap.add_argument("--divisor", type=int, default=None, help="step = max(1, C // divisor)")
    ap.add_argument("--out", default=str(ROOT / "tables"), help="tables land in OUT/<target>/")
    ap.add_argument("--budget-s", type=float, default=None, help="stop starting configs after this")
    ap.add_argument("--warmup", type=int, default=None, help="evaluator.warmup")
    ap.add_argument("--repeat", type=int, default=None, help="evaluator.repeat")
    ap.add_argument("--min-repeat-ms", type=float, default=None, help="evaluator.min_repeat_ms")
    ap.add_argument("--shuffle", type=int, default=None, help="time in a random order (this seed)")
    ap.add_argument("--load-note", default="", help="note on machine load for the sidecar")
    ap.add_argument("--quick", action="store_true", help="3 configs of the first model (smoke test)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--config", default="paper_sweep", help="experiment config (benchmarks/conf/<name>.yaml)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    cfg = load_config(args.config, quick=args.quick, overrides=args.set)
    known = tuple(cfg["models"])
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else list(known)
    bad = [m for m in models if m not in known]
    if bad:
        ap.error(f"--models must be among {known}, got {bad}")
    divisor = args.divisor or int(cfg["divisor"])
    ev_kw = dict(cfg["evaluator"])
    for key in ("warmup", "repeat", "min_repeat_ms"):
        if getattr(args, key) is not None:
            ev_kw[key] = getattr(args, key)
    target = load_target(args.target)
    ev = EvaluatorConfig(**ev_kw)
    limit = cfg.get("limit")
    t0 = time.perf_counter()
    for model in models:
        left = None if args.budget_s is None else args.budget_s - (time.perf_counter() - t0)
        if left is not None and left < 1:
            print(f"budget spent: skipping {model}")
            continue
        space = paper_space(model, divisor, cfg["floor"], cfg["removed"], cfg["input_shape"])
        if limit is not None:
            space = space[: int(limit)]
        path = Path(args.out) / target.name / f"paper_{model}_224.csv"
        s = measure(
            target,
            space,
            path,
            evaluator=ev,
            progress=not args.no_progress,
            time_budget_s=left,
            shuffle_seed=args.shuffle,
            sidecar={"load_note": args.load_note, "paper_sweep": {"divisor": divisor, "floor": cfg["floor"]}},
        )
        print(
            f"{target.name} {model}: {len(space)} configs, measured {s.measured}, failed {s.failed}, "
            f"skipped {s.skipped}, {s.wall_s:.0f} s (total {time.perf_counter() - t0:.0f} s) -> {path}",
            flush=True,
        )
        if args.quick:
            break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Measure the layer tables behind ``reproduce_paper.py``: every conv of ResNet-18, ResNet-50 and VGG-16.

The seed paper (Radu et al., IISWC 2019) swept the output channels of every conv layer of these networks at
224x224, batch 1. This does the same on one target through the measurement harness (``hwprune.measure``):
for each distinct conv shape, the output channels go from the dense count down to half of it, every
``max(1, C // divisor)``-th count (every count for C <= divisor), plus the exact count at 12% removed (the
paper's headline setting). Tables are written to ``tables/<target>/paper_<model>_224.csv``; they are
append-only and resumable, so a run cut short by ``--budget-s`` goes on where it stopped.

    .venv/bin/python benchmarks/paper_sweep.py --target cpu_torch --divisor 64 --budget-s 3000
    python3 benchmarks/paper_sweep.py --target cuda_cudnn_fp32_heuristics --divisor 512   # on a GPU
    .venv/bin/python benchmarks/paper_sweep.py --target cpu_torch --models vgg16 --quick --out /tmp/t

Every model is built with random weights (timing does not depend on them); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hwprune.measure import EvaluatorConfig, load_target, measure  # noqa: E402
from hwprune.measure.space import conv_layer_configs  # noqa: E402
from hwprune.measure.table import CONFIG_COLUMNS  # noqa: E402
from hwprune.models import build_model  # noqa: E402

MODELS = ("resnet18", "vgg16", "resnet50")
SHAPE = (1, 3, 224, 224)


def paper_space(model: str, divisor: int, floor: float = 0.5) -> list[dict[str, Any]]:
    """Configs of every distinct conv of ``model`` at 224x224, batch 1, out channels swept over 0-50% removed.

    Args:
        model: Factory model name.
        divisor: Step is ``max(1, C // divisor)`` for a conv of ``C`` output channels.
        floor: Smallest fraction of the dense count.

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
    net = build_model(model, num_classes=1000, in_channels=3, input_size=SHAPE[-1])
    seen: dict[tuple[int, ...], dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for layer in conv_layer_configs(net, SHAPE):
        base = dict(layer.config)
        C = int(base["out_channels"])
        step = max(1, C // divisor)
        lo = max(1, -(-int(floor * C * 1000) // 1000))
        counts = sorted(set(range(C, lo - 1, -step)) | {round(0.88 * C)}, reverse=True)
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
    ap.add_argument("--target", required=True, help="catalogue name (conf/device/<name>.yaml) or YAML path")
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {MODELS}")
    ap.add_argument("--divisor", type=int, default=64, help="step = max(1, C // divisor)")
    ap.add_argument("--out", default=str(ROOT / "tables"), help="tables land in OUT/<target>/")
    ap.add_argument("--budget-s", type=float, default=None, help="stop starting configs after this")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--min-repeat-ms", type=float, default=5.0)
    ap.add_argument("--shuffle", type=int, default=None, help="time in a random order (this seed)")
    ap.add_argument("--load-note", default="", help="note on machine load for the sidecar")
    ap.add_argument("--quick", action="store_true", help="3 configs of the first model (smoke test)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in MODELS]
    if bad:
        ap.error(f"--models must be among {MODELS}, got {bad}")
    target = load_target(args.target)
    ev = EvaluatorConfig(warmup=args.warmup, number=1, repeat=args.repeat, min_repeat_ms=args.min_repeat_ms)
    t0 = time.perf_counter()
    for model in models:
        left = None if args.budget_s is None else args.budget_s - (time.perf_counter() - t0)
        if left is not None and left < 1:
            print(f"budget spent: skipping {model}")
            continue
        space = paper_space(model, args.divisor)
        if args.quick:
            space = space[:3]
        path = Path(args.out) / target.name / f"paper_{model}_224.csv"
        s = measure(
            target,
            space,
            path,
            evaluator=ev,
            progress=not args.no_progress,
            time_budget_s=left,
            shuffle_seed=args.shuffle,
            sidecar={"load_note": args.load_note, "paper_sweep": {"divisor": args.divisor, "floor": 0.5}},
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

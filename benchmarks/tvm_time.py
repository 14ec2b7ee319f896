"""Whole-model latency through TVM (apache-tvm 0.27, Relax): the ``tvm_llvm`` column of the benchmarks.

Every model is timed on a local TVM target by :func:`hwprune.measure.time_models` (the TVM backend builds
it: ``torch.export`` -> ``tvm.relax.frontend.torch.from_exported_program`` -> ``tvm.compile`` -> Relax VM)
in interleaved rounds (every model once per round, dense included), so drift of a shared machine's load
hits all models alike. The default target, ``cpu_tvm_llvm_untuned``, builds with TVM's default schedules
(no MetaSchedule tuning), like the table hwprune plans from.

    python -m benchmarks.tvm_time --raw docs/bench_raw_fmnist.json   # time the fmnist finals

Used by ``python -m benchmarks.e2e --stage fmnist --tvm``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from benchmarks.arch import fmnist_base, rebuild
from benchmarks.common import time_rounds
from hwprune.measure import EvaluatorConfig, load_target

TARGET = "cpu_tvm_llvm_untuned"
"""The TVM target the fmnist finals are timed on (llvm on this CPU's 2 cores, default schedules)."""
EVALUATOR = EvaluatorConfig(warmup=1, number=1, repeat=3, min_repeat_ms=20.0)
"""Each round's sample of a model."""


def time_tvm_rounds(
    models: Mapping[str, nn.Module],
    input_shape: Sequence[int],
    *,
    target: str = TARGET,
    rounds: int = 5,
    evaluator: EvaluatorConfig = EVALUATOR,
) -> dict[str, Any]:
    """Time every model through TVM in interleaved rounds.

    Args:
        models: Name -> model (any device; the backend copies it to the CPU).
        input_shape: Full input shape, e.g. ``(1, 1, 28, 28)``.
        target: A local TVM target (catalogue name or YAML path).
        rounds: Rounds over all models; each round gives one sample per model.
        evaluator: Each round's sample.

    Returns:
        ``{"target": TVM target dict, "target_name", "tvm": version, "rounds", "models": {name:
        {"samples_ms", "median_ms", "q1_ms", "q3_ms"}}}``.

    Raises:
        ImportError: If apache-tvm is not installed (``pip install 'hwprune[tvm]'``).

    Example:
        >>> time_tvm_rounds({"dense": dense}, (1, 1, 28, 28), rounds=3)  # doctest: +SKIP
    """
    import tvm

    tgt = load_target(target)
    samples = time_rounds(tgt, models, input_shape, rounds=rounds, evaluator=evaluator)
    out: dict[str, Any] = {}
    for k, v in samples.items():
        q = statistics.quantiles(v, n=4) if len(v) >= 2 else [v[0]] * 3
        out[k] = {"samples_ms": v, "median_ms": statistics.median(v), "q1_ms": q[0], "q3_ms": q[2]}
    return {
        "target": dict(tgt.options.get("target") or {}),
        "target_name": tgt.name,
        "tvm": tvm.__version__,
        "rounds": rounds,
        "models": out,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raw", required=True, help="a bench_raw_fmnist*.json with each final's `arch`")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--target", default=TARGET, help="local TVM target (catalogue name or YAML path)")
    ap.add_argument("--only", default="", help="comma-separated model names (default: all)")
    ap.add_argument(
        "--cpu",
        action="store_true",
        help="also time the models with torch on this CPU (the cpu_torch target, interleaved rounds), as "
        "`cpu_latency`",
    )
    args = ap.parse_args(argv)
    raw_path = Path(args.raw)
    raw = json.loads(raw_path.read_text())
    base = fmnist_base(raw)
    keep = [s.strip() for s in args.only.split(",") if s.strip()] or list(raw["results"])
    missing = [k for k in keep if "arch" not in raw["results"].get(k, {})]
    if missing:
        ap.error(f"{raw_path} holds no `arch` for {missing}; re-run python -m benchmarks.e2e --stage fmnist")
    models = {k: rebuild(base, raw["results"][k]["arch"]) for k in keep}
    if args.cpu:
        samples = time_rounds("cpu_torch", models, (1, 1, 28, 28), rounds=args.rounds, evaluator=EVALUATOR)
        raw["cpu_latency"] = {"threads": 1, "rounds": args.rounds, "samples_ms": samples}
        for k, v in samples.items():
            print(f"torch CPU {k:24s} {statistics.median(v):.3f} ms")
    raw["tvm"] = time_tvm_rounds(models, (1, 1, 28, 28), target=args.target, rounds=args.rounds)
    raw_path.write_text(json.dumps(raw, indent=1))
    for k, v in raw["tvm"]["models"].items():
        print(f"TVM {k:24s} {v['median_ms']:.3f} ms [{v['q1_ms']:.3f}, {v['q3_ms']:.3f}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

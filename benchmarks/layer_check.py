"""Time every layer decision of the Fashion-MNIST benchmark models against the unpruned layer.

The goal "zero hwprune layer decisions slower than the unpruned layer when measured": for each final model
in a ``bench_raw_fmnist*.json`` (its ``arch``), every conv whose shape differs from the dense model's is a
decision. Both shapes, pruned and dense, are timed alone by the measurement harness (``hwprune.measure``)
on the target that planned the model (:func:`benchmarks.common.time_decisions`), and the rows are added to
the raw JSON under ``layer_check``.

    python -m benchmarks.layer_check --raw docs/bench_raw_fmnist.json \\
        --check hwprune,uninstructed,uninstructed_r8:cpu_torch:1 \\
        --check hwprune_tvm,uninstructed_tvm:cpu_tvm_llvm_untuned:1
    python3 -m benchmarks.layer_check --raw docs/bench_raw_fmnist_resnet18_gpu.json \\
        --check hwprune,uninstructed:cuda_cudnn_fp32_heuristics:256      # on the lent GPU

Each ``--check`` is ``methods:target:batch``; a method name ending in ``*`` matches by prefix.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks.arch import fmnist_base, rebuild
from benchmarks.common import changed_convs, time_decisions
from hwprune.measure import EvaluatorConfig
from hwprune.staircase import SLOWDOWN_TOLERANCE, is_slowdown

EVALUATOR = EvaluatorConfig(warmup=3, number=1, repeat=9, min_repeat_ms=5.0)
"""Timing of each decision's two convs (through ``hwprune.measure.measure``)."""


def _models(raw: dict[str, Any], methods: list[str]) -> tuple[Any, dict[str, Any]]:
    base = fmnist_base(raw)
    return base().eval(), {name: rebuild(base, raw["results"][name]["arch"]) for name in methods}


def decisions(raw: dict[str, Any], methods: list[str], batch: int) -> list[dict[str, Any]]:
    """Every conv of the named final models whose config differs from the dense model's."""
    dense, models = _models(raw, methods)
    return [
        {"method": d.model, "layer": d.layer, "pruned": d.pruned, "dense": d.dense}
        for d in changed_convs(dense, models, (batch, 1, 28, 28))
    ]


def check(raw: dict[str, Any], methods: list[str], target_name: str, batch: int) -> list[dict[str, Any]]:
    """Time the decisions of ``methods`` on ``target_name`` at ``batch``; return one row per decision."""
    dense, models = _models(raw, methods)
    rows = time_decisions(target_name, dense, models, (batch, 1, 28, 28), evaluator=EVALUATOR, progress=True)
    return [{"method": r.pop("model"), **r} for r in rows]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raw", required=True, help="bench_raw_fmnist*.json holding each final's `arch`")
    ap.add_argument("--check", action="append", required=True, help="methods:target:batch (repeatable)")
    args = ap.parse_args(argv)
    raw_path = Path(args.raw)
    raw = json.loads(raw_path.read_text())
    all_rows = []
    for spec in args.check:
        try:
            meths, target, batch = spec.split(":")
            b = int(batch)
        except ValueError:
            ap.error(f"--check must be methods:target:batch, got {spec!r}")
        names = []
        for m in meths.split(","):
            if m.endswith("*"):
                names += [k for k in raw["results"] if k.startswith(m[:-1])]
            elif m in raw["results"]:
                names.append(m)
            else:
                ap.error(f"{raw_path} has no method {m!r}; it has {sorted(raw['results'])}")
        missing = [k for k in names if "arch" not in raw["results"][k]]
        if missing:
            ap.error(
                f"{raw_path} holds no `arch` for {missing}; re-run python -m benchmarks.e2e --stage fmnist"
            )
        rows = check(raw, names, target, b)
        all_rows += rows
        for m in names:
            sel = [r for r in rows if r["method"] == m]
            slow = [r for r in sel if is_slowdown(r["pruned_ms"], r["dense_ms"])]
            worst = max((r["pruned_ms"] / r["dense_ms"] for r in sel), default=float("nan"))
            print(
                f"{target} b{b} {m}: {len(slow)} of {len(sel)} decisions > {SLOWDOWN_TOLERANCE:.0%} slower "
                f"(worst {worst:.2f}x)"
            )
    raw["layer_check"] = all_rows
    raw_path.write_text(json.dumps(raw, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

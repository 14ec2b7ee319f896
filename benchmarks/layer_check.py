"""Time every layer decision of the Fashion-MNIST benchmark models against the unpruned layer.

The goal "zero hwprune layer decisions slower than the unpruned layer when measured": for each final model
in a ``bench_raw_fmnist*.json`` (its ``arch``), every conv whose shape differs from the dense model's is a
decision. Both shapes, pruned and dense, are timed alone by the measurement harness (``hwprune.measure``)
on the target that planned the model, and the rows are added to the raw JSON under ``layer_check``.

    .venv/bin/python benchmarks/layer_check.py --raw docs/bench_raw_fmnist.json \\
        --check hwprune,uninstructed,uninstructed_r8:cpu_torch:1 \\
        --check hwprune_tvm,uninstructed_tvm:cpu_tvm_llvm_untuned:1
    python3 benchmarks/layer_check.py --raw docs/bench_raw_fmnist_resnet18_gpu.json \\
        --check hwprune,uninstructed:cuda_cudnn_fp32_heuristics:256      # on the lent GPU

Each ``--check`` is ``methods:target:batch``; a method name ending in ``*`` matches by prefix.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from _arch import fmnist_base, rebuild  # noqa: E402

from hwprune.measure import EvaluatorConfig, load_target, measure  # noqa: E402
from hwprune.measure.space import conv_layer_configs  # noqa: E402
from hwprune.measure.table import CONFIG_COLUMNS, read_table  # noqa: E402

SLOW = 1.05


def decisions(raw: dict[str, Any], methods: list[str], batch: int) -> list[dict[str, Any]]:
    """Every conv of the named final models whose config differs from the dense model's."""
    base = fmnist_base(raw)
    shape = (batch, 1, 28, 28)
    dense = {c.name: c.config for c in conv_layer_configs(base().eval(), shape)}
    out = []
    for name in methods:
        net = rebuild(base, raw["results"][name]["arch"])
        for c in conv_layer_configs(net, shape):
            if c.config != dense[c.name]:
                out.append({"method": name, "layer": c.name, "pruned": c.config, "dense": dense[c.name]})
    return out


def check(raw: dict[str, Any], methods: list[str], target_name: str, batch: int) -> list[dict[str, Any]]:
    """Time the decisions of ``methods`` on ``target_name`` at ``batch``; return one row per decision."""
    rows = decisions(raw, methods, batch)
    if not rows:
        return []
    target = dataclasses.replace(load_target(target_name), batch=batch)
    space = [r["pruned"] for r in rows] + [r["dense"] for r in rows]
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "check.csv"
        measure(
            target,
            space,
            table,
            evaluator=EvaluatorConfig(warmup=3, number=1, repeat=9, min_repeat_ms=5.0),
            progress=True,
        )
        df = read_table(table)
    lat = {tuple(int(r[k]) for k in CONFIG_COLUMNS): float(r["latency_ms"]) for _, r in df.iterrows()}

    def key(cfg: dict[str, Any]) -> tuple[int, ...]:
        return tuple(int(cfg[k]) for k in CONFIG_COLUMNS)

    out = []
    for r in rows:
        d, p = lat[key(r["dense"])], lat[key(r["pruned"])]
        out.append(
            {
                "method": r["method"],
                "layer": r["layer"],
                "target": target_name,
                "batch": batch,
                "dense_in_out": [r["dense"]["in_channels"], r["dense"]["out_channels"]],
                "pruned_in_out": [r["pruned"]["in_channels"], r["pruned"]["out_channels"]],
                "dense_ms": d,
                "pruned_ms": p,
            }
        )
    return out


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
            ap.error(f"{raw_path} holds no `arch` for {missing}; re-run benchmarks/e2e.py --stage fmnist")
        rows = check(raw, names, target, b)
        all_rows += rows
        for m in names:
            sel = [r for r in rows if r["method"] == m]
            slow = [r for r in sel if r["pruned_ms"] > SLOW * r["dense_ms"]]
            worst = max((r["pruned_ms"] / r["dense_ms"] for r in sel), default=float("nan"))
            print(f"{target} b{b} {m}: {len(slow)} of {len(sel)} decisions > 5% slower (worst {worst:.2f}x)")
    raw["layer_check"] = all_rows
    raw_path.write_text(json.dumps(raw, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

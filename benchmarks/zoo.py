"""Prune ResNet-18 and MobileNetV2 at 224x224 with each method, to matched parameter counts.

Runs on this machine (hwprune, Torch-Pruning), following ``benchmarks/conf/zoo.yaml``. Writes
``<out>/zoo.json``: one entry per pruned model with its method, the target whose predictor planned it, the
budget, params, MACs, predicted latencies and the architecture as per-module shapes (``benchmarks.arch``),
which ``benchmarks.gpu_time`` and ``benchmarks.e2e`` rebuild.

    python -m benchmarks.zoo --out .bench             # full
    python -m benchmarks.zoo --out /tmp/z --quick     # ResNet-18, one budget
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.arch import arch_spec, rebuild
from benchmarks.common import (
    ROOT,
    commit,
    load_config,
    matched_uninstructed,
    n_params,
    time_decisions,
    uninstructed,
)
from hwprune.callbacks.predictor_factory import FAST_PREDICTOR
from hwprune.measure import EvaluatorConfig
from hwprune.models.factory import build_model
from hwprune.predict import LatencyPredictor
from hwprune.prune import predicted_latency, prune_to_budget
from hwprune.prune.graph import count_macs

log = logging.getLogger(__name__)

__all__ = ["build_zoo", "entry", "zoo_decisions"]


def entry(
    name: str, base: str, method: str, model: nn.Module, dense_params: int, size: int, **extra: Any
) -> dict[str, Any]:
    """One zoo.json entry: the model's shapes, params and per-sample MACs at ``size`` x ``size``."""
    model.eval()
    spec = arch_spec(model)
    assert n_params(rebuild(base, spec)) == n_params(model), f"{name}: rebuilt params differ"
    return {
        "name": name,
        "base": base,
        "method": method,
        "params": n_params(model),
        "param_ratio": n_params(model) / dense_params,
        "macs": count_macs(model, (1, 3, size, size)),
        "spec": spec,
        **extra,
    }


def build_zoo(cfg: dict[str, Any]) -> dict[str, Any]:
    """Prune every base of ``cfg["models"]`` with hwprune and the uninstructed baselines.

    Args:
        cfg: A ``zoo`` config (:func:`benchmarks.common.load_config`).

    Returns:
        The ``zoo.json`` document.
    """
    size = int(cfg["input_size"])
    trace = tuple(cfg["trace_shape"])
    plan_batch = cfg["plan_batch"]
    out: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    for base, targets in cfg["models"].items():
        dense = build_model(base, num_classes=1000, in_channels=3, input_size=size).eval()
        torch.manual_seed(0)
        p0 = n_params(dense)
        preds = {t: LatencyPredictor(**FAST_PREDICTOR).fit(ROOT / v["table"]) for t, v in targets.items()}

        def predict_all(m: nn.Module, preds: dict[str, LatencyPredictor] = preds) -> dict[str, float]:
            return {
                t: float(predicted_latency(p, m, (plan_batch[t], 3, size, size))) for t, p in preds.items()
            }

        out.append(entry(f"{base}/dense", base, "dense", dense, p0, size, predicted_ms=predict_all(dense)))
        for ratio in cfg["uniform_ratios"]:
            for rt in cfg["round_to"]:
                m = uninstructed(dense, trace, ratio, round_to=rt)
                tag = "tp_l1" if rt is None else f"tp_l1_r{rt}"
                out.append(
                    entry(
                        f"{base}/{tag}_uniform{int(ratio * 100)}",
                        base,
                        tag,
                        m,
                        p0,
                        size,
                        channel_ratio=ratio,
                        predicted_ms=predict_all(m),
                    )
                )
        for target, spec in targets.items():
            pred = preds[target]
            shape = (plan_batch[target], 3, size, size)
            dense_ms = predicted_latency(pred, dense, shape)
            for lr in spec["budgets"]:
                m = copy.deepcopy(dense)
                t0 = time.perf_counter()
                res = prune_to_budget(
                    m, pred, shape, lr * dense_ms, min_channel_ratio=cfg["min_channel_ratio"]
                )
                plan_s = time.perf_counter() - t0
                hw_name = f"{base}/hwprune_{target}_{int(lr * 100)}"
                decisions = [
                    {"root": d.root, "before": d.width_before, "after": d.width_after}
                    for d in res.plan.decisions
                ]
                out.append(
                    entry(
                        hw_name,
                        base,
                        "hwprune",
                        m,
                        p0,
                        size,
                        plan_target=target,
                        latency_ratio=lr,
                        plan_s=plan_s,
                        feasible=bool(res.plan.feasible),
                        decisions=decisions,
                        predicted_ms=predict_all(m),
                    )
                )
                log.info(
                    "%s: params %.3f, predicted %.3f of dense, plan %.1f s",
                    hw_name,
                    n_params(m) / p0,
                    res.latency_after_ms / dense_ms,
                    plan_s,
                )
                for rt in cfg["round_to"]:
                    mt, r = matched_uninstructed(
                        dense, n_params(m), trace, round_to=rt, iters=cfg["match_iters"]
                    )
                    tag = "tp_l1" if rt is None else f"tp_l1_r{rt}"
                    out.append(
                        entry(
                            f"{hw_name}/{tag}",
                            base,
                            tag,
                            mt,
                            p0,
                            size,
                            channel_ratio=r,
                            matched_to=hw_name,
                            predicted_ms=predict_all(mt),
                        )
                    )
                    log.info("  %s matched: ratio %.3f, params %.3f", tag, r, n_params(mt) / p0)
    return {
        "models": out,
        "wall_s": time.perf_counter() - t_start,
        "trace_shape": list(trace),
        "commit": commit(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "plan_batch": plan_batch,
    }


def zoo_decisions(
    zoo: list[dict[str, Any]],
    batch: int,
    prefix: str,
    evaluator: EvaluatorConfig | None = None,
) -> list[dict[str, Any]]:
    """Time every layer decision of the zoo's models planned for targets named ``prefix*``.

    A hwprune model is timed on the target that planned it, a matched Torch-Pruning model on its hwprune
    model's target, the uniform ones on ``cuda_cudnn_fp32`` (or ``prefix`` itself for another prefix), each
    at ``batch`` (:func:`benchmarks.common.time_decisions`).

    Args:
        zoo: ``zoo.json``'s ``models``.
        batch: Batch the convs are timed at.
        prefix: Target-name prefix, e.g. ``cuda_cudnn`` or ``cpu_torch``.
        evaluator: Timing settings.

    Returns:
        One row per decision (``time_decisions``' fields plus ``method`` and ``dtype``).
    """
    dense = {e["base"]: e for e in zoo if e["method"] == "dense"}
    by_target: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for e in zoo:
        if e["method"] == "hwprune":
            target = e["plan_target"]
        elif e.get("matched_to"):
            target = next(z["plan_target"] for z in zoo if z["name"] == e["matched_to"])
        elif e["method"].startswith("tp_l1"):  # the uniform 12% / 50%, in the backend's default dtype
            target = "cuda_cudnn_fp32" if prefix == "cuda_cudnn" else prefix
        else:
            continue
        if target.startswith(prefix):
            by_target.setdefault((e["base"], target), []).append(e)
    rows: list[dict[str, Any]] = []
    for (base, target), entries in by_target.items():
        ref = rebuild(base, dense[base]["spec"])
        models = {e["name"]: rebuild(base, e["spec"]) for e in entries}
        method = {e["name"]: e["method"] for e in entries}
        dtype = "fp16" if target.endswith("fp16") else "fp32"
        for r in time_decisions(target, ref, models, (batch, 3, 224, 224), evaluator=evaluator):
            rows.append({**r, "method": method[r["model"]], "dtype": dtype})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=".bench", help="folder for zoo.json")
    ap.add_argument(
        "--quick", action="store_true", help="ResNet-18, one cpu_torch budget, one matched baseline"
    )
    ap.add_argument(
        "--config", default="zoo", help="experiment config (benchmarks/conf/<name>.yaml or a path)"
    )
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(2)
    zoo = build_zoo(load_config(args.config, quick=args.quick, overrides=args.set))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "zoo.json").write_text(json.dumps(zoo))
    print(f"wrote {args.out}/zoo.json: {len(zoo['models'])} models in {zoo['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

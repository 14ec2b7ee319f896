"""Prune ResNet-18 and MobileNetV2 at 224x224 with each method, to matched parameter counts.

Runs on this machine (hwprune, Torch-Pruning). Writes ``<out>/zoo.json``: one entry per pruned model
with its method, the target whose predictor planned it, the budget, params, MACs, predicted latencies and
the architecture as per-module shapes (see ``_arch.py``), which ``gpu_time.py`` and ``e2e.py`` rebuild.

    .venv/bin/python benchmarks/zoo.py --out .bench        # full
    .venv/bin/python benchmarks/zoo.py --out /tmp/z --quick  # ResNet-18, one budget
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _arch import arch_spec, rebuild  # noqa: E402

from hwprune.models.factory import build_model  # noqa: E402
from hwprune.predict import LatencyPredictor  # noqa: E402
from hwprune.prune import predicted_latency, prune_to_budget  # noqa: E402
from hwprune.prune.graph import resolve_ignored  # noqa: E402

log = logging.getLogger("zoo")
TRACE = (1, 3, 64, 64)  # Torch-Pruning traces at 64x64: same graph as 224, 12x less compute per trace
TABLES = {
    ("resnet18", "cuda_cudnn_fp32"): "tables/cuda_cudnn_fp32/resnet18_224.csv",
    ("resnet18", "cuda_cudnn_fp16"): "tables/cuda_cudnn_fp16/resnet18_224.csv",
    ("resnet18", "cpu_torch"): "tables/cpu_torch/resnet18_224.csv",
    ("mobilenet_v2", "cuda_cudnn_fp32"): "tables/cuda_cudnn_fp32/mobilenet_v2_224.csv",
    ("mobilenet_v2", "cuda_cudnn_fp16"): "tables/cuda_cudnn_fp16/mobilenet_v2_224.csv",
}
# Batch each predictor plans for: the cuDNN tables hold batch 1 and 32; the issue times cuDNN at 32.
PLAN_BATCH = {"cuda_cudnn_fp32": 32, "cuda_cudnn_fp16": 32, "cpu_torch": 1}
FULL_BUDGETS: dict[tuple[str, str], list[float]] = {
    ("resnet18", "cuda_cudnn_fp32"): [0.85, 0.7, 0.5, 0.35],
    ("resnet18", "cuda_cudnn_fp16"): [0.7, 0.5],
    ("resnet18", "cpu_torch"): [0.7, 0.5],
    ("mobilenet_v2", "cuda_cudnn_fp32"): [0.85, 0.7, 0.5],
    ("mobilenet_v2", "cuda_cudnn_fp16"): [0.5],
}
QUICK_BUDGETS = {("resnet18", "cpu_torch"): [0.5]}
UNIFORM_RATIOS = [0.12, 0.5]  # the reference points: 12% and 50% of channels removed, uniform L1


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def macs(m: nn.Module, shape: tuple[int, ...]) -> int:
    ops, _ = tp.utils.count_ops_and_params(m, torch.zeros(*shape))
    return int(ops)


def tp_uniform(dense: nn.Module, ratio: float, round_to: int | None) -> nn.Module:
    """Torch-Pruning's uninstructed baseline: uniform L1 channel pruning (as UninstructedPruning does)."""
    m = copy.deepcopy(dense)
    pruner = tp.pruner.MetaPruner(
        m,
        torch.zeros(*TRACE),
        importance=tp.importance.GroupMagnitudeImportance(p=1),
        pruning_ratio=ratio,
        round_to=round_to,
        ignored_layers=resolve_ignored(m),
    )
    pruner.step()
    return m


def tp_matched(
    dense: nn.Module, target_params: int, round_to: int | None, iters: int
) -> tuple[nn.Module, float]:
    """Uniform L1 at the ratio whose parameter count is nearest ``target_params`` (secant on sqrt)."""
    p0 = n_params(dense)
    lo, hi = 0.0, 0.95
    r = min(0.9, max(0.01, 1.0 - (target_params / p0) ** 0.5))  # params ~ (1 - r)^2
    best: tuple[float, nn.Module, float] | None = None
    for _ in range(iters):
        m = tp_uniform(dense, r, round_to)
        err = (n_params(m) - target_params) / target_params
        if best is None or abs(err) < abs(best[0]):
            best = (err, m, r)
        if abs(err) < 0.01:
            break
        if err > 0:
            lo = r
        else:
            hi = r
        # Correct the sqrt model by the observed error, but stay inside the bracket.
        guess = 1.0 - (1.0 - r) * (1.0 + err) ** -0.5
        r = guess if lo < guess < hi else (lo + hi) / 2
    assert best is not None
    return best[1], best[2]


def entry(
    name: str, base: str, method: str, model: nn.Module, dense_params: int, **extra: Any
) -> dict[str, Any]:
    model.eval()
    spec = arch_spec(model)
    assert n_params(rebuild(base, spec)) == n_params(model), f"{name}: rebuilt params differ"
    return {
        "name": name,
        "base": base,
        "method": method,
        "params": n_params(model),
        "param_ratio": n_params(model) / dense_params,
        "macs": macs(model, (1, 3, 224, 224)),
        "spec": spec,
        **extra,
    }


def predict_all(preds: dict[str, LatencyPredictor], m: nn.Module) -> dict[str, float]:
    return {t: float(predicted_latency(p, m, (PLAN_BATCH[t], 3, 224, 224))) for t, p in preds.items()}


def build_zoo(quick: bool) -> dict[str, Any]:
    budgets = QUICK_BUDGETS if quick else FULL_BUDGETS
    bases = sorted({b for b, _ in budgets})
    out: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    for base in bases:
        dense = build_model(base, num_classes=1000, in_channels=3, input_size=224).eval()
        torch.manual_seed(0)
        p0 = n_params(dense)
        preds = {
            t: LatencyPredictor(
                estimator="extra_trees", target_transform="log_per_flop", cv_folds=0, n_estimators=100
            ).fit(path)
            for (b, t), path in TABLES.items()
            if b == base and (not quick or (b, t) in budgets)
        }
        out.append(entry(f"{base}/dense", base, "dense", dense, p0, predicted_ms=predict_all(preds, dense)))
        for ratio in [] if quick else UNIFORM_RATIOS:
            for rt in (None, 8):
                m = tp_uniform(dense, ratio, rt)
                tag = "tp_l1" if rt is None else "tp_l1_r8"
                out.append(
                    entry(
                        f"{base}/{tag}_uniform{int(ratio * 100)}",
                        base,
                        tag,
                        m,
                        p0,
                        channel_ratio=ratio,
                        predicted_ms=predict_all(preds, m),
                    )
                )
        for (b, target), ratios in budgets.items():
            if b != base:
                continue
            pred = preds[target]
            shape = (PLAN_BATCH[target], 3, 224, 224)
            dense_ms = predicted_latency(pred, dense, shape)
            for lr in ratios:
                m = copy.deepcopy(dense)
                t0 = time.perf_counter()
                res = prune_to_budget(m, pred, shape, lr * dense_ms, min_ratio=0.25)
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
                        plan_target=target,
                        latency_ratio=lr,
                        plan_s=plan_s,
                        feasible=bool(res.plan.feasible),
                        decisions=decisions,
                        predicted_ms=predict_all(preds, m),
                    )
                )
                log.info(
                    "%s: params %.3f, predicted %.3f of dense, plan %.1f s",
                    hw_name,
                    n_params(m) / p0,
                    res.latency_after_ms / dense_ms,
                    plan_s,
                )
                for rt in (None, 8) if not quick else (None,):
                    mt, r = tp_matched(dense, n_params(m), rt, iters=2 if quick else 6)
                    tag = "tp_l1" if rt is None else "tp_l1_r8"
                    out.append(
                        entry(
                            f"{hw_name}/{tag}",
                            base,
                            tag,
                            mt,
                            p0,
                            channel_ratio=r,
                            matched_to=hw_name,
                            predicted_ms=predict_all(preds, mt),
                        )
                    )
                    log.info("  %s matched: ratio %.3f, params %.3f", tag, r, n_params(mt) / p0)
    import subprocess

    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except Exception:  # noqa: BLE001
        rev = "unknown"
    return {
        "models": out,
        "wall_s": time.perf_counter() - t_start,
        "trace_shape": list(TRACE),
        "commit": rev,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "plan_batch": PLAN_BATCH,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=".bench", help="folder for zoo.json")
    ap.add_argument(
        "--quick", action="store_true", help="ResNet-18, one cpu_torch budget, one matched baseline"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(2)
    zoo = build_zoo(args.quick)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "zoo.json").write_text(json.dumps(zoo))
    print(f"wrote {args.out}/zoo.json: {len(zoo['models'])} models in {zoo['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

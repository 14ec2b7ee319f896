"""Model-true latency (issue 11): measured speedups of hwprune plans against Torch-Pruning baselines.

For each setting (model, batch, image size) on one target, in the setting users deploy with:

1. ``runs`` times, each with a fresh cache (a freshly measured table): the training path's predictor
   (:func:`hwprune.callbacks.predictor_factory.ensure_predictor`: 2-D layer space + pruned variants' configs,
   fitted, then whole-model calibrated on the target), then for each budget ratio a plan made through the
   closed loop (:func:`hwprune.verify.loop.plan_and_verify`) and applied.
2. Torch-Pruning baselines at the same parameter count as run 0's plan: uniform L1, ``round_to=8``,
   ``round_to=32``, and global pruning with ``round_to=8`` (the pruning ratio is bisected to match).
3. Every model, the dense one included, timed end to end on the target in interleaved rounds
   (:func:`hwprune.measure.time_models`), and every conv decision of hwprune and uniform L1 timed against
   its dense layer.
4. The predictor's held-out accuracy: on (in, out) pairs left out of the fit, and on the configs of pruned
   models (the calibration variants' convs) left out of the fit.

Weights are random (no pretrained weights are downloaded): this benchmark measures latency only; accuracy
is the Fashion-MNIST benchmarks' job (``benchmarks.e2e``). Settings: ``benchmarks/conf/model_true.yaml``;
each flag below overrides its key.

Usage (the lent GPU: scripts/device_model_true.sh; this CPU: see docs/BENCHMARKS.md)::

    python -m benchmarks.model_true --target cuda_cudnn_tf32 --setting resnet18:32:224 --out OUT
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import platform
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmarks.common import load_config, matched_uninstructed, n_params, time_decisions, uninstructed
from hwprune.callbacks.predictor_factory import FAST_PREDICTOR, ensure_predictor
from hwprune.measure import EvaluatorConfig, load_target, read_table, time_models
from hwprune.models import build_model
from hwprune.predict import LatencyPredictor
from hwprune.predict.tables import within_share
from hwprune.prune import apply_removals, build_groups, plan_pruning
from hwprune.staircase import is_slowdown
from hwprune.verify.loop import plan_and_verify

log = logging.getLogger(__name__)


def hwprune_plan(
    dense: nn.Module, pred: Any, shape: tuple[int, ...], ratio: float, target: Any, min_channel_ratio: float
) -> tuple[nn.Module, dict[str, Any]]:
    """Plan to ``ratio`` of the dense model's predicted latency through the closed loop; apply it."""
    model = copy.deepcopy(dense)
    dense_pred = float(pred.predict_model(dense, shape))
    budget = ratio * dense_pred
    planner = partial(_plan, predictor=pred, shape=shape, min_channel_ratio=min_channel_ratio)
    t0 = time.perf_counter()
    vp = plan_and_verify(model, pred, shape, budget, planner, target=target)
    seconds = time.perf_counter() - t0
    apply_removals(build_groups(model, shape), dict(vp.plan.removals))
    return model, {
        "budget_ms": budget,
        "predicted_dense_ms_at_plan": vp.plan.latency_before_ms,
        "predicted_ms_at_plan": vp.plan.latency_after_ms,
        "predicted_speedup": vp.plan.latency_before_ms / max(vp.plan.latency_after_ms, 1e-12),
        "closed_loop": [r.__dict__ for r in vp.rounds],
        "accepted": vp.accepted,
        "reason": vp.reason,
        "plan_and_verify_s": seconds,
        "widths": dict(vp.plan.widths),
    }


def _plan(gm: Any, budget: float, *, predictor: Any, shape: tuple[int, ...], min_channel_ratio: float) -> Any:
    return plan_pruning(
        gm, predictor, shape, budget, importance="l1", snap="up", min_channel_ratio=min_channel_ratio
    )


def layer_check(
    target: Any, dense: nn.Module, pruned: nn.Module, shape: tuple[int, ...], ev: EvaluatorConfig
) -> dict[str, Any]:
    """Time every conv whose config changed against the same conv at its dense config."""
    rows = time_decisions(target, dense, {"pruned": pruned}, shape, evaluator=ev)
    slow = [r for r in rows if is_slowdown(r["pruned_ms"], r["dense_ms"])]
    return {
        "changed": len(rows),
        "slower": len(slow),
        "worst": max((r["pruned_ms"] / r["dense_ms"] for r in rows), default=None),
        "slow_layers": slow,
    }


def heldout_accuracy(table: str | Path, shape: tuple[int, ...]) -> dict[str, Any]:
    """Predictor accuracy on held-out (in, out) pairs and on held-out pruned-model configs."""
    df = read_table(table)
    df = df[df["latency_ms"].notna()].reset_index(drop=True)
    layer = df["layer"].astype(str)
    variant = layer.str.startswith("variant") | layer.str.startswith("closed_loop")
    key = (
        df[["batch", "height", "width", "kernel_size", "stride", "padding", "groups"]]
        .astype(str)
        .agg("_".join, axis=1)
    )
    max_in = df.groupby(key)["in_channels"].transform("max")
    max_out = df.groupby(key)["out_channels"].transform("max")
    pair = (~variant) & (df["in_channels"] < max_in) & (df["out_channels"] < max_out)
    rng = np.random.default_rng(0)
    held_pair = pair & (rng.random(len(df)) < 0.3)
    out: dict[str, Any] = {}
    for name, held in (("pairs", held_pair), ("pruned_model_configs", variant)):
        train, test = df[~held], df[held]
        if len(test) == 0 or len(train) < 10:
            continue
        p = LatencyPredictor(**FAST_PREDICTOR).fit(train).predict(test)
        y = test["latency_ms"].to_numpy(dtype=float)
        out[name] = {
            "n": int(len(test)),
            "within10": within_share(p, y, 0.10),
            "within5": within_share(p, y, 0.05),
            "mape": float(np.mean(np.abs(p / y - 1)) * 100),
        }
    out["rows"] = int(len(df))
    return out


def run_setting(spec: str, cfg: dict[str, Any], out: Path) -> dict[str, Any]:
    """One setting (``model:batch:size``): fresh-table runs, plans, baselines, timings and layer checks."""
    name, batch, size = spec.split(":")
    shape = (int(batch), 1 if name == "small_resnet" else 3, int(size), int(size))
    target = load_target(cfg["target"])
    dense = build_model(
        name, num_classes=10 if int(size) <= 32 else 1000, in_channels=shape[1], input_size=shape[2]
    )
    dense.eval()
    ev = EvaluatorConfig(**cfg["evaluator"])
    res: dict[str, Any] = {"setting": spec, "input_shape": list(shape), "target": target.name, "runs": []}
    models: dict[str, nn.Module] = {"dense": dense}
    for r in range(int(cfg["runs"])):
        t0 = time.perf_counter()
        pred = ensure_predictor(
            target,
            dense,
            shape,
            out / f"cache_run{r}",
            step=int(cfg["step"]),
            pairs=int(cfg["pairs"]),
            evaluator=ev,
        )
        run: dict[str, Any] = {
            "run": r,
            "profile_s": time.perf_counter() - t0,
            "table": pred.source_table_,
            "table_rows": int(pred.n_train_rows_),
            "elem_ms_per_m": pred.elem_ms_per_m_,
            "overhead_ms": pred.overhead_ms_,
            "floor_ms": pred.floor_ms_,
            "plans": {},
        }
        if r == 0:
            run["heldout"] = heldout_accuracy(pred.source_table_, shape)
        for ratio in cfg["ratios"]:
            m, info = hwprune_plan(dense, pred, shape, ratio, target, float(cfg["min_channel_ratio"]))
            info["params"] = n_params(m)
            models[f"hwprune_{ratio:g}_run{r}"] = m
            run["plans"][f"{ratio:g}"] = info
            log.info("%s run %d ratio %g: %s", spec, r, ratio, info["reason"])
        run["predictor"] = pred
        res["runs"].append(run)
    base_info: dict[str, Any] = {}
    later = cfg.get("baselines_later_ratios")
    for k, ratio in enumerate(cfg["ratios"]):
        params = n_params(models[f"hwprune_{ratio:g}_run0"])
        for bname, kw in cfg["baselines"].items():
            if k > 0 and later is not None and bname not in later:
                continue
            m, pr = matched_uninstructed(
                dense,
                params,
                (1, *shape[1:]),
                round_to=kw["round_to"],
                global_pruning=kw["global_pruning"],
                iters=int(cfg["match_iters"]),
            )
            models[f"{bname}_{ratio:g}"] = m
            base_info[f"{bname}_{ratio:g}"] = {"pruning_ratio": pr, "params": n_params(m)}
    for rname, kw in (cfg.get("references") or {}).items():
        m = uninstructed(
            dense,
            (1, *shape[1:]),
            kw["pruning_ratio"],
            round_to=kw["round_to"],
            global_pruning=kw["global_pruning"],
        )
        models[rname] = m
        base_info[rname] = {"pruning_ratio": kw["pruning_ratio"], "params": n_params(m), "reference": True}
    res["baselines"] = base_info
    names = list(models)
    whole = EvaluatorConfig(warmup=1, number=1, repeat=3, min_repeat_ms=float(cfg["model_sample_ms"]))
    timings = time_models(
        target, [models[n] for n in names], shape, rounds=int(cfg["rounds"]), evaluator=whole
    )
    dense_t = timings[0]
    final_pred = res["runs"][-1]["predictor"]
    res["timings"] = {
        n: {
            "median_ms": t.median_ms,
            "speedup": t.speedup_over(dense_t)[0],
            "speedup_iqr": t.speedup_over(dense_t)[1],
            "iqr_ms": t.iqr_ms,
            "rounds_ms": list(t.rounds_ms),
            "params": n_params(models[n]),
            "build_s": t.build_s,
            "predicted_ms": {
                f"run{run['run']}": float(run["predictor"].predict_model(models[n], shape))
                for run in res["runs"]
            },
        }
        for n, t in zip(names, timings, strict=True)
    }
    del final_pred
    checks = {}
    if cfg.get("layer_checks", True):
        for n in names:
            if n.startswith("hwprune_") and n.endswith("run0") or n.startswith("uniform_l1_"):
                checks[n] = layer_check(target, dense, models[n], shape, ev)
    res["layer_checks"] = checks
    if (
        cfg.get("stopwatch")
        and target.runtime in ("cuda_graph", "inductor", "eager")
        and torch.cuda.is_available()
    ):
        res["stopwatch"] = standalone(target, models, res["timings"], shape, cfg)
    for run in res["runs"]:
        run.pop("predictor")
    return res


def standalone(
    target: Any,
    models: dict[str, nn.Module],
    timings: dict[str, Any],
    shape: tuple[int, ...],
    cfg: dict[str, Any],
) -> dict[str, Any]:
    """benchmarks/stopwatch.py on dense, the first ratio's plans and the fastest baseline."""
    from benchmarks.stopwatch import stopwatch_models

    first = f"{cfg['ratios'][0]:g}"
    plans = [n for n in models if n.startswith(f"hwprune_{first}_run")]
    bases = [n for n in models if n.endswith(f"_{first}") and not n.startswith("hwprune_")]
    fastest = max(bases, key=lambda n: timings[n]["speedup"]) if bases else None
    pick = [
        "dense",
        *plans,
        *([fastest] if fastest else []),
        *(
            ["uniform_l1_" + first]
            if "uniform_l1_" + first in models and fastest != "uniform_l1_" + first
            else []
        ),
    ]
    dtype = {"float16": torch.float16, "float32": torch.float32, "tf32": torch.float32}[target.dtype]
    mode = target.options.get("compile_mode") or "reduce-overhead"
    return stopwatch_models(
        {n: models[n] for n in pick},
        shape,
        str(target.runtime),
        dtype=dtype,
        channels_last=bool(target.options.get("channels_last", False)),
        compile_mode=mode,
        cudnn_benchmark=bool(target.options.get("benchmark", True)),
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setting", action="append", required=True, help="model:batch:size, repeatable")
    ap.add_argument("--out", required=True)
    ap.add_argument("--json", default=None, help="results file (default OUT/model_true_<target>.json)")
    ap.add_argument("--config", default="model_true", help="experiment config (benchmarks/conf/<name>.yaml)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    # Shorthands for config keys (the device scripts use them); unset: the config's value.
    ap.add_argument("--target", default=None)
    ap.add_argument("--runs", type=int, default=None, help="fresh-table runs (stability)")
    ap.add_argument("--ratios", type=lambda s: [float(x) for x in s.split(",")], default=None)
    ap.add_argument("--step", type=int, default=None)
    ap.add_argument("--pairs", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=None, help="evaluator.repeat")
    ap.add_argument("--min-repeat-ms", type=float, default=None, help="evaluator.min_repeat_ms")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds of the final check")
    ap.add_argument("--model-sample-ms", type=float, default=None, help="whole-model timing sample length")
    ap.add_argument("--min-ratio", type=float, default=None, help="no group below this share of its width")
    args = ap.parse_args(argv)
    cfg = load_config(args.config, overrides=args.set)
    for key in ("target", "runs", "ratios", "step", "pairs", "rounds", "model_sample_ms"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    if args.min_ratio is not None:  # the flag is --min-ratio; the config key min_channel_ratio
        cfg["min_channel_ratio"] = args.min_ratio
    for key in ("repeat", "min_repeat_ms"):
        if getattr(args, key) is not None:
            cfg["evaluator"][key] = getattr(args, key)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("hwprune.prune.planner").setLevel(logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = Path(args.json or out / f"model_true_{cfg['target']}.json")
    results = json.loads(path.read_text()) if path.exists() else {}
    results["machine"] = {
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
    results["config"] = cfg
    for spec in args.setting:
        t0 = time.perf_counter()
        res = run_setting(spec, cfg, out)
        res["wall_s"] = time.perf_counter() - t0
        results.setdefault("settings", {})[spec] = res
        path.write_text(json.dumps(results, indent=1, default=float))
        print(summary_line(res), flush=True)
    return 0


def summary_line(res: dict[str, Any]) -> str:
    t = res["timings"]
    d = t["dense"]["median_ms"]
    parts = [f"{res['setting']} dense {d:.4g} ms"]
    for key, v in t.items():
        if key != "dense":
            parts.append(f"{key} {v['speedup']:.2f}x")
    return " | ".join(parts)


if __name__ == "__main__":
    raise SystemExit(main())

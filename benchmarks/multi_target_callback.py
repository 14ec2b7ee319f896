"""One model for two targets through the callback (issue 19): ``HardwareAwarePruning`` timed on both targets.

:mod:`benchmarks.multi_target` calls the planner directly and times one target only. This benchmark runs what
a user runs: a Lightning fit with :class:`hwprune.callbacks.HardwareAwarePruning` given two targets that can
both be timed end to end on this machine (by default ``cpu_torch``, eager torch / oneDNN on 1 thread, and
``cpu_tvm_llvm_untuned``, TVM's llvm backend with its default schedules), with ``verify=True``: every prune
step's candidate is timed on both targets against the dense model before it is applied (the closed loop,
:func:`hwprune.verify.verify_plan`), and the final model is timed on both at fit end.

1. Predictors, once for every run (:func:`benchmarks.multi_target.build_predictors`): ``cpu_torch``'s layer
   space measured here and cached, fitted, calibrated end to end here; the TVM target's shipped table of
   layer timings fitted, its whole-model terms calibrated here (TVM-compiled dense model and variants).
   Each callback run takes its own copy and may teach it further (the closed loop: calibration, and for
   ``cpu_torch`` the configs its table lacks, measured into the cached table and refitted; a later run's
   copy starts from the predictor as fitted before the runs, but a refit of it reads the grown table).
2. A shared dense checkpoint: small_resnet trained on a Fashion-MNIST subset.
3. From that checkpoint, with the same fine-tuning (epochs, learning rate, seed, images):

   * ``joint``: the callback on both targets at once (``predictor={cpu_torch: ..., tvm: ...}``);
   * ``alone:<target>``: the callback on each target alone (a mapping of one);
   * ``uniform_l1``: Torch-Pruning uniform L1 at the joint model's parameter count
     (:func:`benchmarks.common.matched_uninstructed`), fine-tuned without a callback;
   * ``dense``: the checkpoint, fine-tuned the same way.

   The callback prunes at the start of epochs ``0 .. num_steps - 1`` (one step a epoch), so every model
   trains ``finetune_epochs`` epochs after the checkpoint.
4. Every final model tested on the same test images, then timed end to end on *both* targets in interleaved
   rounds (:func:`hwprune.measure.time_models`): per round, each model's share of the dense model; the
   budget is met when the median share is within ``latency_ratio`` plus the callback's 5% tolerance.
5. Each callback run's own report (``pruning_report.json``: every step's per-target measured latency, the
   closed loop's rounds and the final check on both targets) is kept in the raw file as the callback wrote it.

Settings: ``benchmarks/conf/multi_target_callback.yaml`` (``--quick``: its smoke section). The raw file is
``docs/bench_raw_multi_target_callback.json``; :mod:`benchmarks.multi_target_report` renders it at the top of
``docs/MULTI_TARGET.md`` (the older planner-only run below it) and ``docs/multi_target_callback.png``.

Usage::

    python -m benchmarks.multi_target_callback                 # the configured run, then the report
    python -m benchmarks.multi_target_callback --quick         # smoke run, into .bench/ (not docs/)
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.common import ROOT, load_config, load_note, matched_uninstructed, n_params, stamp
from benchmarks.multi_target import IMAGE, Trainer, build_predictors, wait_for_load

log = logging.getLogger(__name__)

RAW_NAME = "bench_raw_multi_target_callback.json"
"""The raw file's name under ``docs/``."""


# ------------------------------------------------------------------------------------------- figures
def ratio_stats(num: Sequence[float], den: Sequence[float]) -> dict[str, float]:
    """Median, quartiles and IQR of the per-round ratio ``num / den`` (rounds paired in time).

    A burst of load on the shared machine slows every model of a round alike, so the ratio within a round
    is steadier than the ratio of two medians; its inter-quartile interval ``[q1, q3]`` is what the report
    calls the ratio's interval (a ratio whose interval holds 1.0 is noise).

    Args:
        num: The numerator's sample per round.
        den: The denominator's sample per round (same rounds).

    Returns:
        ``{"median", "q1", "q3", "iqr"}``.

    Raises:
        ValueError: If the two have different lengths or are empty.

    Example:
        >>> ratio_stats([1.0, 2.0, 3.0], [2.0, 2.0, 2.0])["median"]
        1.0
    """
    if len(num) != len(den) or not num:
        raise ValueError(f"`num` and `den` must be paired rounds, got {len(num)} and {len(den)}")
    r = sorted(a / b for a, b in zip(num, den, strict=True))
    q = statistics.quantiles(r, n=4, method="inclusive") if len(r) >= 2 else [r[0], r[0], r[0]]
    return {"median": float(statistics.median(r)), "q1": float(q[0]), "q3": float(q[2]), "iqr": q[2] - q[0]}


def holds_one(stats: Mapping[str, float]) -> bool:
    """Whether a ratio's inter-quartile interval holds 1.0 (the report labels it noise)."""
    return float(stats["q1"]) <= 1.0 <= float(stats["q3"])


# ---------------------------------------------------------------------------------------- callback runs
def callback_run(
    key: str,
    targets: Sequence[str],
    dense: nn.Module,
    preds: Mapping[str, Any],
    cfg: Mapping[str, Any],
    tr: Trainer,
    work: Path,
) -> tuple[nn.Module, dict[str, Any]]:
    """One fine-tuning of the dense checkpoint with ``HardwareAwarePruning`` on ``targets``.

    Args:
        key: The run's name (``joint``, ``alone:<target>``); its report goes to ``work/<key>``.
        targets: The targets the callback plans for and times on (the first is the primary one).
        dense: The dense checkpoint (copied, not changed).
        preds: Target name -> fitted predictor (the callback takes its own copy).
        cfg: The whole config (its ``callback``, ``ratio`` and ``train`` sections).
        tr: The shared trainer (same images, recipe and seed for every model).
        work: Folder of the runs' reports.

    Returns:
        ``(pruned network, info)``; ``info`` holds the callback's report as it wrote it and its targets'
        resolved sides (batch, dense measured at setup, what the budget is a share of).
    """
    from hwprune.callbacks import HardwareAwarePruning

    cb_cfg = cfg["callback"]
    out = work / key.replace(":", "_")
    cb = HardwareAwarePruning(
        {t: preds[t] for t in targets},
        (1, *IMAGE),
        latency_ratio=float(cfg["ratio"]),
        target={t: t for t in targets},  # each timed here, at its catalogue settings
        verify=True,
        start_epoch=0,
        prune_every_n_epochs=1,
        num_steps=int(cb_cfg["num_steps"]),
        importance=cb_cfg["importance"],
        snap=cb_cfg["snap"],
        min_channel_ratio=float(cb_cfg["min_channel_ratio"]),
        closed_loop_rounds=int(cb_cfg["closed_loop_rounds"]),
        export=None,
        report_dir=out,
    )
    trc = cfg["train"]
    net, seconds = tr.fit_with(
        copy.deepcopy(dense),
        int(trc["finetune_epochs"]),
        seed=1,
        lr=float(trc["finetune_lr"]),
        callbacks=[cb],
    )
    report = json.loads((out / "pruning_report.json").read_text())
    sides = {
        s.name: {
            "batch": int(s.batch),
            "timed_on": None if s.timing is None else str(s.timing.name),
            "dense_measured_ms_at_setup": s.dense_measured_ms,
            "basis": s.basis,
        }
        for s in (cb.sides or [])
    }
    info = {
        "targets": list(targets),
        "fit_s": seconds,
        "sides": sides,
        "report": report,
    }
    log.info("%s: %s (%.0f s)", key, report.get("budget", {}).get("summary", "no verdict"), seconds)
    return net.eval(), info


# ------------------------------------------------------------------------------------------------ run
def time_on_targets(
    models: Mapping[str, nn.Module], targets: Sequence[str], tm: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """Every model timed end to end on every target, in interleaved rounds per target.

    Args:
        models: Name -> network (``dense`` among them).
        targets: The targets (each must time whole models here).
        tm: The config's ``timing`` section.

    Returns:
        Target name -> model name -> ``{median_ms, iqr_ms, rounds_ms, slowdowns, seconds}``.
    """
    from tqdm.auto import tqdm

    from hwprune.measure import EvaluatorConfig, time_models

    names = list(models)
    out: dict[str, dict[str, Any]] = {}
    for t in tqdm(list(targets), desc="final timing", unit="target"):
        t0 = time.perf_counter()
        ts = time_models(
            t,
            [models[n] for n in names],
            (1, *IMAGE),
            rounds=int(tm["rounds"]),
            evaluator=EvaluatorConfig(**tm["evaluator"]),
            progress=True,
        )
        seconds = time.perf_counter() - t0
        out[t] = {
            n: {
                "median_ms": x.median_ms,
                "iqr_ms": x.iqr_ms,
                "rounds_ms": list(x.rounds_ms),
                # Each round's stretch by the timing thread's waits for a CPU (None: unknown).
                "slowdowns": list(x.slowdowns),
                "seconds": seconds,
            }
            for n, x in zip(names, ts, strict=True)
        }
        log.info("timed %d models on %s in %.0f s", len(names), t, seconds)
    return out


def model_rows(
    models: Mapping[str, nn.Module],
    timing: Mapping[str, Mapping[str, Any]],
    acc: Mapping[str, Mapping[str, Any]],
    preds: Mapping[str, Any],
    ratio: float,
) -> dict[str, Any]:
    """One row per model: params, accuracy, and per target its time, share of dense and budget verdict."""
    from hwprune.prune.model_latency import predicted_latency
    from hwprune.verify.stopwatch import MET_TOLERANCE

    rows: dict[str, Any] = {}
    for n, m in models.items():
        per: dict[str, Any] = {}
        for t, by_model in timing.items():
            x, d = by_model[n], by_model["dense"]
            share = ratio_stats(x["rounds_ms"], d["rounds_ms"])
            vs_budget = {k: v / ratio for k, v in share.items()}  # share / latency_ratio, per round
            per[t] = {
                **{k: x[k] for k in ("median_ms", "iqr_ms", "rounds_ms", "slowdowns")},
                "share_of_dense": share,
                "share_over_budget": vs_budget,
                # The dense model is the reference, not a candidate: no verdict.
                "met": None if n == "dense" else share["median"] <= ratio * (1.0 + MET_TOLERANCE),
            }
        rows[n] = {
            "params": n_params(m),
            **acc[n],
            "measured": per,
            # The benchmark's predictors as built before the runs (each run's closed loop taught its copy).
            "predicted_ms": {t: predicted_latency(p, m, (1, *IMAGE)) for t, p in preds.items()},
        }
    return rows


def run(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The whole benchmark; returns the raw results (see the module docstring)."""
    from tqdm.auto import tqdm

    from hwprune.measure import can_time_models
    from hwprune.models import build_model
    from hwprune.prune import build_groups, conv_widths
    from hwprune.verify.stopwatch import MET_TOLERANCE, STOPWATCH

    t_start = time.perf_counter()
    targets = list(cfg["targets"])
    if len(targets) != 2:
        raise ValueError(f"`targets` must name two targets, got {targets}")
    untimed = [t for t in targets if not can_time_models(t)]
    if untimed:
        raise ValueError(f"`targets` must be timed end to end here (can_time_models), not {untimed}")
    raw: dict[str, Any] = {
        "stamp": stamp(),
        "load_at_start": load_note(),
        "config": dict(cfg),
        "met_tolerance": MET_TOLERANCE,
        "callback_stopwatch": STOPWATCH.describe(),
    }
    torch.manual_seed(0)
    dense = build_model(str(cfg["model"]), num_classes=10, in_channels=1, input_size=28).eval()
    raw["dense_widths"] = {
        g.root: int(g.width) for g in build_groups(dense, (1, *IMAGE)).groups if g.prunable
    }
    tm = cfg["timing"]
    raw["waited_for_load_before_measuring_s"] = wait_for_load(
        float(tm["wait_load_below"]), float(tm["wait_max_s"])
    )
    raw["load_before_measuring"] = load_note()
    preds, pinfo = build_predictors(cfg["targets"], dense)
    raw["targets"] = pinfo
    work = Path(tempfile.mkdtemp(prefix="hwprune_multi_target_callback_"))
    tr = Trainer(cfg["train"], work)
    stages: dict[str, float] = {"predictors_s": sum(v["seconds"] for v in pinfo.values())}
    stages["pretrain_s"] = tr.fit(
        dense, int(cfg["train"]["pretrain_epochs"]), seed=0, lr=float(cfg["train"]["lr"])
    )
    dense.eval()
    raw["pretrained_dense_acc"] = tr.test(copy.deepcopy(dense))

    # The callback runs: both targets, then each alone, all from the same checkpoint.
    runs = {"joint": targets, **{f"alone:{t}": [t] for t in targets}}
    models: dict[str, nn.Module] = {}
    raw["runs"] = {}
    t0 = time.perf_counter()
    for key, ts in tqdm(list(runs.items()), desc="callback runs", unit="run"):
        log.info("callback run %s on %s", key, ", ".join(ts))
        models[key], raw["runs"][key] = callback_run(key, ts, dense, preds, cfg, tr, work)
    stages["callback_runs_s"] = time.perf_counter() - t0

    # The uninstructed baseline and the dense reference: the same fine-tuning, no callback.
    trc = cfg["train"]
    uni, pr = matched_uninstructed(
        dense, n_params(models["joint"]), (1, *IMAGE), iters=int(cfg["match_iters"])
    )
    raw["uniform_l1"] = {"pruning_ratio": pr, "matched_to": "joint"}
    fits: dict[str, float] = {k: v["fit_s"] for k, v in raw["runs"].items()}
    t0 = time.perf_counter()
    for key, net in (("uniform_l1", uni), ("dense", copy.deepcopy(dense))):
        models[key], fits[key] = tr.fit_with(
            net, int(trc["finetune_epochs"]), seed=1, lr=float(trc["finetune_lr"])
        )
        models[key].eval()
    stages["baseline_fits_s"] = time.perf_counter() - t0
    order = ["dense", "joint", *(f"alone:{t}" for t in targets), "uniform_l1"]
    models = {k: models[k] for k in order}
    acc = {
        k: {"test_acc": tr.test(m), "finetune_s": fits[k], "widths": conv_widths(m)}
        for k, m in models.items()
    }

    raw["waited_for_load_s"] = wait_for_load(float(tm["wait_load_below"]), float(tm["wait_max_s"]))
    raw["load_before_timing"] = load_note()
    t0 = time.perf_counter()
    timing = time_on_targets(models, targets, tm)
    stages["timing_s"] = time.perf_counter() - t0
    raw["load_after_timing"] = load_note()
    ratio = float(cfg["ratio"])
    raw["models"] = model_rows(models, timing, acc, preds, ratio)
    # The cost of sharing, per target: the joint model over that target's own model, paired per round.
    raw["cost_of_sharing"] = {
        t: {
            "own_model": f"alone:{t}",
            "measured_ratio": ratio_stats(
                timing[t]["joint"]["rounds_ms"], timing[t][f"alone:{t}"]["rounds_ms"]
            ),
            "acc_delta": acc["joint"]["test_acc"] - acc[f"alone:{t}"]["test_acc"],
            "params_ratio": n_params(models["joint"]) / n_params(models[f"alone:{t}"]),
        }
        for t in targets
    }
    stages["total_s"] = time.perf_counter() - t_start
    raw["stages"] = stages
    raw["load_at_end"] = load_note()
    return raw


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--config", default="multi_target_callback", help="experiment config (benchmarks/conf/<name>.yaml)"
    )
    ap.add_argument("--quick", action="store_true", help="the config's smoke section (a few minutes)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    ap.add_argument(
        "--out",
        default=None,
        help=f"raw results file (default docs/{RAW_NAME}; with --quick, .bench/multi_target_callback_quick/, "
        "so a smoke run never overwrites the docs' figures)",
    )
    ap.add_argument("--no-report", action="store_true", help="do not render docs/MULTI_TARGET.md afterwards")
    args = ap.parse_args(argv)
    cfg = load_config(args.config, quick=args.quick, overrides=args.set)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in (
        "hwprune.prune.planner",
        "pytorch_lightning",
        "pytorch_lightning.utilities.rank_zero",
        "lightning_fabric",
        "lightning_fabric.utilities.seed",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    raw = run(cfg)
    raw["quick"] = bool(args.quick)
    default = ROOT / (".bench/multi_target_callback_quick" if args.quick else "docs") / RAW_NAME
    out = Path(args.out) if args.out else default
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(raw, indent=1, default=float) + "\n")
    log.info("wrote %s (%.0f s)", out, raw["stages"]["total_s"])
    if not args.no_report:
        from benchmarks import multi_target_report

        multi_target_report.main(["--docs", str(out.parent), "--callback-raw", str(out)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

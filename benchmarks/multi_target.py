"""One plan for several targets (issue 14, part 2): the cost of sharing one model between a CPU and a GPU.

ResNet-18 on Fashion-MNIST (28x28, one channel) is planned for two targets at once and for each alone:

1. Predictors. ``cpu_torch`` (this machine, batch 1): the training path's predictor
   (:func:`hwprune.callbacks.predictor_factory.ensure_predictor`: a coarse 2-D layer space measured here and
   cached, fitted, whole-model latency calibrated on this CPU). The GPU (``cuda_cudnn_fp32_heuristics``, the
   lent H200 at batch 256, fp32, ``cudnn.benchmark`` off): its shipped table of 1-D sweeps, fitted with
   ``LatencyPredictor(**FAST_PREDICTOR)``, uncalibrated (the GPU could not be reached: its whole-model
   latency is the sum of its convs' predicted latencies).
2. A shared dense checkpoint: the dense model trained on a Fashion-MNIST subset.
3. Plans from that checkpoint, for each budget ratio (a share of each target's predicted dense latency):
   CPU alone and GPU alone (:func:`hwprune.prune.plan_pruning` with that target's predictor, at its batch),
   joint (:func:`hwprune.prune.multi_target.plan_for_targets`), all with the same planner options; and
   Torch-Pruning uniform L1 at the joint plan's parameter count
   (:func:`benchmarks.common.matched_uninstructed`).
4. Each model fine-tuned the same way, then tested on the same test images.
5. Every final model timed end to end on this CPU in interleaved rounds (:func:`hwprune.measure.time_models`),
   beside its predicted latency on each target. The GPU latency is predicted only: no device time.

The cost of sharing, per target: the joint plan's latency over that target's own plan's (measured on the
CPU as the median of per-round ratios; predicted on the GPU), the joint plan's conflicts (which target gave
way where, and how many ms), and the accuracy of each model.

Settings: ``benchmarks/conf/multi_target.yaml`` (``--quick``: its smoke section). The raw file is
``docs/bench_raw_multi_target.json``; :mod:`benchmarks.multi_target_report` renders
``docs/MULTI_TARGET.md`` and ``docs/multi_target.png`` from it (run at the end unless ``--no-report``).

Usage::

    python -m benchmarks.multi_target                      # the configured run, then the report
    python -m benchmarks.multi_target --quick --out /tmp/mt.json --no-report
    python -m benchmarks.multi_target_report               # re-render from the raw file
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.common import ROOT, load_config, load_note, matched_uninstructed, n_params, stamp

log = logging.getLogger(__name__)

IMAGE = (1, 28, 28)
"""Fashion-MNIST's image shape (channels, height, width)."""


# ------------------------------------------------------------------------------------------ predictors
def build_predictors(cfg: Mapping[str, Any], dense: nn.Module) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each target's predictor, and what was done to get it.

    Args:
        cfg: The config's ``targets`` section: name -> ``{kind: measured|table, batch, ...}``. A
            ``table`` target with ``calibrate: true`` that can be timed here has its whole-model terms
            calibrated on this machine (the dense model and one variant per ``calibration_ratios``).
        dense: The dense model (its layer space is what a ``measured`` target measures).

    Returns:
        ``(predictors, info)``: target name -> fitted predictor, and target name -> provenance.

    Raises:
        ValueError: If a target's ``kind`` is neither ``measured`` nor ``table``.
    """
    from hwprune.callbacks.predictor_factory import FAST_PREDICTOR, ensure_predictor
    from hwprune.measure import EvaluatorConfig, can_time_models, read_table
    from hwprune.predict import LatencyPredictor
    from hwprune.verify.calibration import DEFAULT_RATIOS, calibrate_on_target, calibration_variants

    preds: dict[str, Any] = {}
    info: dict[str, Any] = {}
    for name, t in cfg.items():
        batch = int(t["batch"])
        t0 = time.perf_counter()
        if t["kind"] == "measured":
            pred = ensure_predictor(
                name,
                dense,
                (batch, *IMAGE),
                ROOT / t["cache_dir"],
                step=int(t["step"]),
                pairs=int(t["pairs"]),
                evaluator=EvaluatorConfig(**t["evaluator"]),
                calibrate=bool(t["calibrate"]),
            )
            table = Path(pred.source_table_)
            where = table.relative_to(ROOT) if table.is_relative_to(ROOT) else table
            source = f"measured here, cached in {where}"
        elif t["kind"] == "table":
            table = ROOT / t["table"]
            pred = LatencyPredictor(**FAST_PREDICTOR).fit(table)
            source = f"shipped table {t['table']}"
            if t.get("calibrate") and can_time_models(name):
                # The whole-model terms are this machine's: time the dense model and pruned variants here
                # once (a run that plans with it then checks the dense model, not all the variants).
                shape = (batch, *IMAGE)
                ratios = t.get("calibration_ratios") or DEFAULT_RATIOS
                calibrate_on_target(
                    pred, name, dense, shape, variants=calibration_variants(dense, shape, ratios=ratios)
                )
                source += ", whole-model terms calibrated here"
        else:
            raise ValueError(f"`targets.{name}.kind` must be 'measured' or 'table', got {t['kind']!r}")
        df = read_table(table)
        preds[name] = pred
        info[name] = {
            "kind": t["kind"],
            "batch": batch,
            "source": source,
            "table_rows": int(len(df)),
            "table_devices": sorted({str(d) for d in df["device"].unique()}),
            "table_versions": sorted({str(v) for v in df["versions"].dropna().unique()})[:3],
            "calibrated": bool(pred.calibrated),
            "calibration_models": len(getattr(pred, "calibration_", [])),
            # End-to-end ms of the calibration networks (the dense model first), at calibration time.
            "calibration_measured_ms": [float(r["measured_ms"]) for r in getattr(pred, "calibration_", [])],
            "elem_ms_per_m": float(getattr(pred, "elem_ms_per_m_", 0.0)),
            "overhead_ms": float(getattr(pred, "overhead_ms_", 0.0)),
            "floor_ms": float(getattr(pred, "floor_ms_", 0.0)),
            "seconds": time.perf_counter() - t0,
        }
        log.info("target %s: %s, %d rows, %.0f s", name, source, len(df), info[name]["seconds"])
    return preds, info


# ---------------------------------------------------------------------------------------------- plans
def make_plans(
    dense: nn.Module,
    preds: Mapping[str, Any],
    batches: Mapping[str, int],
    ratio: float,
    planner: Mapping[str, Any],
    match_iters: int,
) -> tuple[dict[str, nn.Module], dict[str, Any]]:
    """The plans at one budget ratio: each target alone, all together, and uniform L1 at the joint count.

    Args:
        dense: The trained dense model (not changed; the L1 importance reads its weights).
        preds: Target name -> predictor.
        batches: Target name -> the batch it runs at.
        ratio: Budget as a share of each target's predicted dense latency.
        planner: :func:`~hwprune.prune.plan_pruning`'s options, the same for every plan.
        match_iters: Tries of the uniform-L1 parameter-count search.

    Returns:
        ``(models, info)``: model key -> pruned copy (``alone:<target>``, ``joint``, ``uniform_l1``), and
        the plans' budgets, predicted latencies, conflicts and widths.
    """
    from hwprune.prune import apply_removals, build_groups, plan_pruning
    from hwprune.prune.model_latency import predicted_latency
    from hwprune.prune.multi_target import plan_for_targets

    shape1 = (1, *IMAGE)
    dense_pred = {t: predicted_latency(p, dense, (batches[t], *IMAGE)) for t, p in preds.items()}
    budgets = {t: ratio * d for t, d in dense_pred.items()}
    models: dict[str, nn.Module] = {}
    info: dict[str, Any] = {
        "ratio": ratio,
        "dense_predicted_ms": dense_pred,
        "budgets_ms": budgets,
        "plans": {},
    }

    def cut(removals: Mapping[str, list[int]]) -> nn.Module:
        m = copy.deepcopy(dense).eval()
        apply_removals(build_groups(m, shape1), dict(removals))
        return m

    for t, p in preds.items():
        shape = (batches[t], *IMAGE)
        t0 = time.perf_counter()
        plan = plan_pruning(build_groups(copy.deepcopy(dense).eval(), shape), p, shape, budgets[t], **planner)
        key = f"alone:{t}"
        models[key] = cut(plan.removals)
        info["plans"][key] = {
            "planned_for": [t],
            "feasible": bool(plan.feasible),
            "predicted_ms_at_plan": {t: float(plan.latency_after_ms)},
            "widths": dict(plan.widths),
            "plan_s": time.perf_counter() - t0,
        }
        log.info(
            "ratio %g, %s alone: %.4g -> %.4g ms", ratio, t, plan.latency_before_ms, plan.latency_after_ms
        )
    t0 = time.perf_counter()
    mp = plan_for_targets(
        build_groups(copy.deepcopy(dense).eval(), shape1),
        dict(preds),
        shape1,
        budgets,
        dict(batches),
        **planner,
    )
    models["joint"] = cut(mp.removals)
    info["plans"]["joint"] = {
        "planned_for": list(preds),
        "feasible": bool(mp.feasible),
        "rounds": int(mp.rounds),
        "predicted_ms_at_plan": {t: float(r.latency_after_ms) for t, r in mp.targets.items()},
        "targets": {
            t: {
                "budget_ms": r.budget_ms,
                "floor_ms": r.floor_ms,
                "latency_before_ms": r.latency_before_ms,
                "latency_after_ms": r.latency_after_ms,
                "met": bool(r.met),
                "weight": r.weight,
                "gave_way_ms": r.gave_way_ms,
            }
            for t, r in mp.targets.items()
        },
        "conflicts": [
            {
                "target": c.target,
                "root": c.root,
                "width": c.width,
                "friendly_below": c.friendly_below,
                "extra_ms": c.extra_ms,
            }
            for c in mp.conflicts
        ],
        "widths": dict(mp.widths),
        "plan_s": time.perf_counter() - t0,
    }
    m, pr = matched_uninstructed(dense, n_params(models["joint"]), (1, *IMAGE), iters=match_iters)
    models["uniform_l1"] = m.eval()
    info["plans"]["uniform_l1"] = {"planned_for": [], "pruning_ratio": pr, "matched_to": "joint"}
    return models, info


# ------------------------------------------------------------------------------------------ training
class Trainer:
    """The short Fashion-MNIST runs: one subset, one test sample, the same recipe for every model.

    Args:
        cfg: The config's ``train`` section.
        work: Folder for Lightning's files.
    """

    def __init__(self, cfg: Mapping[str, Any], work: Path) -> None:
        from torch.utils.data import Subset

        from hwprune.data import FashionMNISTDataModule

        self.cfg = dict(cfg)
        self.work = work
        dm = FashionMNISTDataModule(
            data_dir=ROOT / cfg["data_dir"],
            batch_size=int(cfg["batch_size"]),
            augment=False,
            seed=0,
            val_size=1000,
        )
        dm.setup("fit")
        assert dm.train_set is not None and dm.test_set is not None
        n_train, n_test = int(cfg["train_images"]), int(cfg["test_images"])
        if not 0 < n_train <= len(dm.train_set):
            raise ValueError(f"`train.train_images` must be in (0, {len(dm.train_set)}], got {n_train!r}")
        if not 0 < n_test <= len(dm.test_set):
            raise ValueError(f"`train.test_images` must be in (0, {len(dm.test_set)}], got {n_test!r}")
        self.train_set = Subset(dm.train_set, range(n_train))
        perm = torch.randperm(len(dm.test_set), generator=torch.Generator().manual_seed(0)).tolist()
        self.test_set = Subset(dm.test_set, perm[:n_test])

    def _loader(self, ds: Any, shuffle: bool) -> Any:
        from torch.utils.data import DataLoader

        return DataLoader(
            ds,
            batch_size=int(self.cfg["batch_size"]),
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(0) if shuffle else None,
        )

    def _trainer(self, epochs: int, callbacks: Sequence[Any] = ()) -> Any:
        import pytorch_lightning as pl

        return pl.Trainer(
            accelerator="cpu",
            devices=1,
            max_epochs=epochs,
            callbacks=list(callbacks),
            enable_checkpointing=False,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            default_root_dir=str(self.work),
        )

    def _module(self, net: nn.Module, lr: float = 1e-3) -> Any:
        from hwprune.module import ClassificationModule

        opt = functools.partial(torch.optim.AdamW, lr=float(lr), weight_decay=float(self.cfg["weight_decay"]))
        return ClassificationModule(net, opt, None, num_classes=10)

    def fit(self, net: nn.Module, epochs: int, seed: int, lr: float) -> float:
        """Train ``net`` in place for ``epochs`` on the subset at ``lr``; return the seconds it took."""
        return self.fit_with(net, epochs, seed, lr)[1]

    def fit_with(
        self, net: nn.Module, epochs: int, seed: int, lr: float, callbacks: Sequence[Any] = ()
    ) -> tuple[nn.Module, float]:
        """Train ``net`` for ``epochs`` at ``lr`` with ``callbacks``; return the network after the fit and
        the seconds it took (a pruning callback may have replaced the module's network)."""
        import pytorch_lightning as pl

        torch.set_num_threads(int(self.cfg["threads"]))
        pl.seed_everything(seed, workers=True)
        t0 = time.perf_counter()
        net.train()
        module = self._module(net, lr)
        self._trainer(epochs, callbacks).fit(module, train_dataloaders=self._loader(self.train_set, True))
        return module.model, time.perf_counter() - t0

    def test(self, net: nn.Module) -> float:
        """Test accuracy of ``net`` on the test sample (``ClassificationModule``'s ``test/acc``)."""
        torch.set_num_threads(int(self.cfg["threads"]))
        out = self._trainer(1).test(
            self._module(net), dataloaders=self._loader(self.test_set, False), verbose=False
        )
        net.eval()
        return float(out[0]["test/acc"])


# ---------------------------------------------------------------------------------------------- run
def wait_for_load(below: float, max_s: float, poll_s: float = 10.0) -> float:
    """Wait (at most ``max_s``) until the 1-minute load average is under ``below``; return the seconds waited.

    The machine is shared: timing when other jobs have quietened keeps the whole-model figures closer to
    the calibration's. A timeout is logged and the timing goes ahead (the raw file records the load).
    """
    t0 = time.perf_counter()
    while True:
        try:
            load = float(Path("/proc/loadavg").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0.0
        waited = time.perf_counter() - t0
        if load < below:
            return waited
        if waited >= max_s:
            log.warning("load average %.2f still >= %.2f after %.0f s: timing anyway", load, below, waited)
            return waited
        time.sleep(poll_s)


def run(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The whole benchmark; returns the raw results (see the module docstring)."""
    from hwprune.measure import EvaluatorConfig, time_models
    from hwprune.models import build_model
    from hwprune.prune.model_latency import predicted_latency

    t_start = time.perf_counter()
    raw: dict[str, Any] = {"stamp": stamp(), "load_at_start": load_note(), "config": dict(cfg)}
    torch.manual_seed(0)
    dense = build_model(str(cfg["model"]), num_classes=10, in_channels=1, input_size=28).eval()
    batches = {t: int(v["batch"]) for t, v in cfg["targets"].items()}
    from hwprune.prune import build_groups

    raw["dense_widths"] = {
        g.root: int(g.width) for g in build_groups(dense, (1, *IMAGE)).groups if g.prunable
    }
    tm = cfg["timing"]
    # The layer sweep and the whole-model calibration time on this CPU too: wait for a quieter machine.
    raw["waited_for_load_before_measuring_s"] = wait_for_load(
        float(tm["wait_load_below"]), float(tm["wait_max_s"])
    )
    raw["load_before_measuring"] = load_note()
    preds, pinfo = build_predictors(cfg["targets"], dense)
    raw["targets"] = pinfo
    work = Path(tempfile.mkdtemp(prefix="hwprune_multi_target_"))
    tr = Trainer(cfg["train"], work)
    stages: dict[str, float] = {"predictors_s": sum(v["seconds"] for v in pinfo.values())}
    stages["pretrain_s"] = tr.fit(
        dense, int(cfg["train"]["pretrain_epochs"]), seed=0, lr=float(cfg["train"]["lr"])
    )
    dense.eval()
    raw["pretrained_dense_acc"] = tr.test(copy.deepcopy(dense))

    models: dict[str, nn.Module] = {"dense": dense}
    raw["ratios"] = {}
    t0 = time.perf_counter()
    for ratio in cfg["ratios"]:
        ms, info = make_plans(dense, preds, batches, float(ratio), cfg["planner"], int(cfg["match_iters"]))
        for k, m in ms.items():
            models[f"{k}@{float(ratio):g}"] = m
        raw["ratios"][f"{float(ratio):g}"] = info
    stages["plans_s"] = time.perf_counter() - t0

    acc: dict[str, Any] = {}
    for name, m in models.items():
        if name == "dense":
            if not cfg["train"]["finetune_dense"]:
                acc[name] = {"test_acc": raw["pretrained_dense_acc"], "finetune_s": 0.0, "extra_epochs": 0}
                continue
        s = tr.fit(m, int(cfg["train"]["finetune_epochs"]), seed=1, lr=float(cfg["train"]["finetune_lr"]))
        acc[name] = {
            "test_acc": tr.test(m),
            "finetune_s": s,
            "extra_epochs": int(cfg["train"]["finetune_epochs"]),
        }
        log.info("%s: test acc %.4f (%.0f s)", name, acc[name]["test_acc"], s)
    stages["finetune_and_test_s"] = sum(v["finetune_s"] for v in acc.values())

    names = list(models)
    raw["waited_for_load_s"] = wait_for_load(float(tm["wait_load_below"]), float(tm["wait_max_s"]))
    raw["load_before_timing"] = load_note()
    t0 = time.perf_counter()
    timings = time_models(
        tm["target"],
        [models[n].eval() for n in names],
        (batches[tm["target"]], *IMAGE),
        rounds=int(tm["rounds"]),
        evaluator=EvaluatorConfig(**tm["evaluator"]),
    )
    stages["timing_s"] = time.perf_counter() - t0
    raw["load_after_timing"] = load_note()
    timing = dict(zip(names, timings, strict=True))
    rows: dict[str, Any] = {}
    for n in names:
        t = timing[n]
        share, share_iqr = timing["dense"].speedup_over(t)  # per round: this model / dense
        rows[n] = {
            "measured_share_of_dense": {tm["target"]: {"median": share, "iqr": share_iqr}},
            "params": n_params(models[n]),
            "test_acc": acc[n]["test_acc"],
            "finetune_s": acc[n]["finetune_s"],
            "measured_ms": {
                tm["target"]: {"median": t.median_ms, "iqr": t.iqr_ms, "rounds": list(t.rounds_ms)}
            },
            "predicted_ms": {
                tn: predicted_latency(p, models[n], (batches[tn], *IMAGE)) for tn, p in preds.items()
            },
        }
    raw["models"] = rows
    # The cost of sharing: joint over each target's own plan, paired per round on the measured target.
    for r, info in raw["ratios"].items():
        joint = timing[f"joint@{r}"]
        cost: dict[str, Any] = {}
        for tn in preds:
            own = f"alone:{tn}@{r}"
            pred_ratio = rows[f"joint@{r}"]["predicted_ms"][tn] / rows[own]["predicted_ms"][tn]
            entry: dict[str, Any] = {"own_plan": own, "predicted_ratio": pred_ratio}
            if tn == tm["target"]:
                med, iqr = timing[own].speedup_over(joint)  # per round: joint / own
                entry["measured_ratio"] = {"median": med, "iqr": iqr}
            entry["acc_delta"] = rows[f"joint@{r}"]["test_acc"] - rows[own]["test_acc"]
            cost[tn] = entry
        info["cost_of_sharing"] = cost
    stages["total_s"] = time.perf_counter() - t_start
    raw["stages"] = stages
    raw["load_at_end"] = load_note()
    return raw


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--config", default="multi_target", help="experiment config (benchmarks/conf/<name>.yaml)"
    )
    ap.add_argument("--quick", action="store_true", help="the config's smoke section (seconds)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    ap.add_argument(
        "--out", default=str(ROOT / "docs" / "bench_raw_multi_target.json"), help="raw results file"
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
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(raw, indent=1, default=float) + "\n")
    log.info("wrote %s (%.0f s)", out, raw["stages"]["total_s"])
    if not args.no_report:
        from benchmarks import multi_target_report

        multi_target_report.main(["--raw", str(out), "--docs", str(out.parent)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""End-to-end benchmarks: hwprune against uninstructed pruning, written to docs/BENCHMARKS.md.

Settings: ``benchmarks/conf/e2e.yaml``. Stages (default: all that run on this machine, then the report):

* ``cpu224``: the 224x224 zoo of ``benchmarks.zoo`` timed on this CPU (the ``cpu_torch`` target: torch,
  1 thread), batch 1, interleaved rounds with the dense model in every round; plus the layer-level check
  of hwprune's cpu_torch decisions (each changed conv timed alone against its dense shape).
* ``fmnist``: the default model (small_resnet) on a Fashion-MNIST subset: one dense checkpoint, then the
  same fine-tuning from it with each method (none, hwprune, uninstructed L1 at hwprune's parameter count,
  the same with round_to=8, Lightning ModelPruning); accuracy, params, MACs and measured latency.
* ``report``: reads ``<raw>/bench_raw_{cpu224,fmnist,cudnn}.json`` (cudnn from ``benchmarks.gpu_time`` on
  the lent GPU) and writes ``BENCHMARKS.md``, ``benchmarks.json`` and ``bench_*.png``
  (:mod:`benchmarks.e2e_report`).

    python -m benchmarks.e2e                       # zoo must exist in .bench/ (python -m benchmarks.zoo)
    python -m benchmarks.e2e --quick --out /tmp/b  # smoke run: tiny zoo, tiny training
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks import e2e_report, gpu_time
from benchmarks.arch import arch_spec, rebuild
from benchmarks.common import (
    ROOT,
    load_config,
    load_note,
    matched_uninstructed,
    n_params,
    stamp,
    time_rounds,
)
from benchmarks.zoo import build_zoo, zoo_decisions
from hwprune.callbacks.predictor_factory import FAST_PREDICTOR
from hwprune.measure import EvaluatorConfig
from hwprune.prune.graph import count_macs

log = logging.getLogger(__name__)

TIMING = (
    "{rounds} interleaved rounds on the `{target}` target (`hwprune.measure.time_models`), each sample the "
    "median of {repeat} means of >= {min_repeat_ms:g} ms of forwards; speed = median over rounds of "
    "dense/model."
)
"""How the cpu224 models were timed (the report states it from the raw file)."""


# ---------------------------------------------------------------------------------------------- cpu224
def stage_cpu224(zoo_path: Path, raw: Path, cfg: dict[str, Any]) -> None:
    """Time the zoo's models of ``cfg["base"]`` on ``cfg["target"]``; write ``bench_raw_cpu224.json``."""
    zoo = json.loads(zoo_path.read_text())["models"]
    keep = [
        e
        for e in zoo
        if e["base"] == cfg["base"]
        and (
            e["method"] == "dense"
            or (e["method"] == "hwprune" and e["plan_target"] in cfg["plan_targets"])
            or ("uniform" in e["name"])
            or any(t in e.get("matched_to", "") for t in cfg["matched_to"])
        )
    ]
    size = int(cfg["input_size"])
    models = {e["name"]: rebuild(e["base"], e["spec"]) for e in keep}
    note_before = load_note()
    t0 = time.perf_counter()
    shape = (1, 3, size, size)
    samples = time_rounds(
        cfg["target"], models, shape, rounds=int(cfg["rounds"]), evaluator=EvaluatorConfig(**cfg["evaluator"])
    )
    wall = time.perf_counter() - t0
    lay = cfg["layers"]
    layers = zoo_decisions(keep, int(lay["batch"]), cfg["target"], EvaluatorConfig(**lay["evaluator"]))
    out = {
        **stamp(),
        "threads": 1,
        "input": list(shape),
        "rounds": int(cfg["rounds"]),
        "samples_ms": samples,
        "timing": TIMING.format(rounds=cfg["rounds"], target=cfg["target"], **cfg["evaluator"]),
        "wall_s": wall,
        "load_before": note_before,
        "load_after": load_note(),
        "layers": layers,
    }
    (raw / "bench_raw_cpu224.json").write_text(json.dumps(out, indent=1))
    log.info("cpu224: %d models timed in %.0f s, %d layer decisions", len(models), wall, len(layers))


# ---------------------------------------------------------------------------------------------- fmnist
def _nonzero(m: nn.Module) -> int:
    return sum(int((p != 0).sum()) for p in m.parameters())


def _time_gpu(finals: dict[str, nn.Module], t: dict[str, Any]) -> dict[str, Any]:
    """cuDNN timings of every final model: batch 256 (heuristics and benchmark) and batch 1 CUDA graphs."""
    out: dict[str, Any] = {
        "device_name": torch.cuda.get_device_name(),
        "cudnn": torch.backends.cudnn.version(),
    }
    for bench in (False, True):
        out[f"b256_fp32_bench{int(bench)}"] = gpu_time.time_setting(
            finals,
            "fp32",
            256,
            bench,
            int(t["rounds"]),
            EvaluatorConfig(**t["evaluator"]),
            input_shape=(1, 28, 28),
        )
    out["b1_graph_fp32"] = gpu_time.graph_b1(
        finals, int(t["rounds"]), EvaluatorConfig(**t["graph_evaluator"]), input_shape=(1, 28, 28)
    )
    return out


def stage_fmnist(
    raw: Path,
    cfg: dict[str, Any],
    model_name: str = "small_resnet",
    accelerator: str = "cpu",
    source_dir: str | None = None,
    extra_ratios: tuple[float, ...] = (),
    extra_plans: dict[str, tuple[str, tuple[int, ...]]] | None = None,
    tvm: bool = False,
) -> None:
    """Fine-tune ``model_name`` on Fashion-MNIST with every method from one dense checkpoint; time them.

    Args:
        raw: Folder for the raw JSON (the setting's ``raw`` name).
        cfg: The ``fmnist`` section of the e2e config.
        model_name: ``small_resnet`` (CPU), ``resnet18`` or ``mobilenet_v2`` (GPU).
        accelerator: ``cpu`` or ``gpu``.
        source_dir: Folder of the four Fashion-MNIST ``.gz`` files (default: Debian's).
        extra_ratios: More latency budgets for hwprune (and uninstructed L1 at each one's parameter
            count), for the Pareto plot; named ``hwprune@<ratio>``.
        extra_plans: ``{tag: (table, plan_input_shape)}``: hwprune planned from another target's table
            at the headline budget (e.g. ``_tvm`` for the untuned TVM table), with its matched uninstructed
            run.
        tvm: Also time every final model through TVM (the ``cpu_tvm_llvm_untuned`` target, CPU only).

    Raises:
        ValueError: If the config has no setting ``<model_name>/<accelerator>``.
        RuntimeError: If ``accelerator`` is ``gpu`` and there is no CUDA device.
    """
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelPruning

    from hwprune.callbacks import HardwareAwarePruning, UninstructedPruning
    from hwprune.data import FashionMNISTDataModule
    from hwprune.models import build_model
    from hwprune.module import ClassificationModule
    from hwprune.predict import LatencyPredictor

    extra_plans = extra_plans or {}
    key = f"{model_name}/{accelerator}"
    if key not in cfg["settings"]:
        raise ValueError(f"`model_name`/`accelerator` must be one of {sorted(cfg['settings'])}, got {key!r}")
    setting = cfg["settings"][key]
    gpu = accelerator == "gpu"
    if gpu and not torch.cuda.is_available():
        raise RuntimeError(
            "--accelerator gpu needs CUDA; run it on the lent GPU (scripts/device_e2e_fmnist.sh)"
        )
    table, plan_batch = setting["table"], int(setting["batch"])
    plan_shape = (plan_batch, 1, 28, 28)
    torch.set_num_threads(2)
    subset = cfg["subset"][accelerator]
    dense_epochs, ft_epochs, limit = int(cfg["dense_epochs"]), int(cfg["ft_epochs"]), cfg["limit_batches"]
    if gpu:  # the cuda_cudnn_fp32 targets time with TF32 off; train the same way
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False

    def dm() -> FashionMNISTDataModule:
        kw: dict[str, Any] = {"source_dir": source_dir} if source_dir else {}
        return FashionMNISTDataModule(
            subset=subset,
            batch_size=int(cfg["batch_size"]),
            augment=False,
            seed=0,
            val_size=int(cfg["val_size"][accelerator]),
            num_workers=int(cfg["num_workers"][accelerator]),
            **kw,
        )

    def trainer(epochs: int, callbacks: list, root: Path) -> pl.Trainer:
        return pl.Trainer(
            accelerator=accelerator,
            devices=1,
            max_epochs=epochs,
            callbacks=callbacks,
            enable_checkpointing=False,
            logger=False,
            enable_progress_bar=False,
            limit_train_batches=limit,
            limit_val_batches=limit,
            limit_test_batches=limit,
            enable_model_summary=False,
            default_root_dir=str(root),
            num_sanity_val_steps=0,
        )

    def module(net: nn.Module) -> ClassificationModule:
        opt = functools.partial(
            torch.optim.AdamW, lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"])
        )
        return ClassificationModule(net, opt, None, num_classes=10)

    def build() -> nn.Module:
        return build_model(model_name, num_classes=10, in_channels=1, input_size=28)

    work = Path(tempfile.mkdtemp(prefix="hwprune_e2e_"))
    pl.seed_everything(0, workers=True)
    dense_net = build()
    t0 = time.perf_counter()
    trainer(dense_epochs, [], work).fit(module(dense_net), datamodule=dm())
    dense_fit_s = time.perf_counter() - t0
    dense_state = {k: v.detach().cpu().clone() for k, v in dense_net.state_dict().items()}
    predictor = LatencyPredictor(**FAST_PREDICTOR).fit(ROOT / table)
    epoch = int(cfg["prune_epoch"])
    results: dict[str, Any] = {}

    class EpochTimer(pl.Callback):
        """Wall time of every training epoch (the P5 overhead figure compares planning with it)."""

        def __init__(self) -> None:
            self.times: list[float] = []
            self.t = 0.0

        def on_train_epoch_start(self, *a: Any) -> None:
            self.t = time.perf_counter()

        def on_train_epoch_end(self, *a: Any) -> None:
            self.times.append(time.perf_counter() - self.t)

    def run(name: str, callbacks: list) -> nn.Module:
        pl.seed_everything(1, workers=True)
        net = build()
        net.load_state_dict(dense_state)
        mod = module(net)
        timer = EpochTimer()
        tr = trainer(ft_epochs, [*callbacks, timer], work)
        t = time.perf_counter()
        tr.fit(mod, datamodule=dm())
        fit_s = time.perf_counter() - t
        test = tr.test(mod, datamodule=dm(), verbose=False)[0]
        final = mod.model.eval()
        results[name] = {
            "test_acc": float(test["test/acc"]),
            "params": n_params(final),
            "nonzero_params": _nonzero(final),
            "macs": count_macs(final, (1, 1, 28, 28)),
            "fit_s": fit_s,
            "epoch_s": timer.times,
            "arch": arch_spec(final),
        }
        log.info("fmnist %s: acc %.4f params %d", name, results[name]["test_acc"], results[name]["params"])
        return final

    finals: dict[str, nn.Module] = {"dense": run("dense", [])}
    dense_model = build()
    dense_model.load_state_dict(dense_state)

    def hwprune_and_matched(
        tag: str, pred: LatencyPredictor, shape: tuple[int, ...], ratio: float, r8: bool
    ) -> None:
        """hwprune at ``ratio`` of the predicted dense latency, then uninstructed L1 at its param count."""
        hw = HardwareAwarePruning(
            pred,
            shape,
            latency_ratio=ratio,
            start_epoch=epoch,
            num_steps=1,
            verify=False,
            export=None,
            report_dir=str(work / f"hw{tag}"),
            min_channel_ratio=cfg["min_channel_ratio"]
            if ratio >= 0.3
            else cfg["min_channel_ratio_low_budget"],
        )
        name = f"hwprune{tag}"
        finals[name] = run(name, [hw])
        report = json.loads((work / f"hw{tag}" / "pruning_report.json").read_text())
        results[name]["report_steps"] = report["steps"]
        results[name]["predicted_ms"] = report["predicted_ms"]
        results[name]["latency_ratio"] = ratio
        for utag, rt in (("uninstructed", None), ("uninstructed_r8", 8)) if r8 else (("uninstructed", None),):
            _, pr = matched_uninstructed(
                dense_model.eval(),
                results[name]["params"],
                (1, 1, 28, 28),
                round_to=rt,
                iters=cfg["match_iters"],
            )
            uname = f"{utag}{tag}"
            finals[uname] = run(
                uname, [UninstructedPruning((1, 1, 28, 28), pruning_ratio=pr, epoch=epoch, round_to=rt)]
            )
            results[uname]["pruning_ratio"] = pr
            results[uname]["matched_to"] = name

    # The headline pair (names without a suffix), with round_to=8 beside it.
    budget = float(cfg["budget"])
    hwprune_and_matched("", predictor, plan_shape, budget, r8=bool(cfg["round_to_8"]))
    for ratio in extra_ratios:
        hwprune_and_matched(f"@{ratio}", predictor, plan_shape, ratio, r8=False)
    for tag, (tbl, shape) in extra_plans.items():
        hwprune_and_matched(tag, LatencyPredictor(**FAST_PREDICTOR).fit(ROOT / tbl), shape, budget, r8=False)
        results[f"hwprune{tag}"]["plan_table"] = tbl
    if cfg["model_pruning"] is not None:
        amount = float(cfg["model_pruning"])
        mp = ModelPruning(
            "l1_unstructured",
            amount=lambda e: amount if e == 0 else 0.0,
            use_global_unstructured=True,
            make_pruning_permanent=True,
            verbose=0,
        )
        finals["modelpruning"] = run("modelpruning", [mp])
    extra: dict[str, Any] = {}
    if gpu:
        extra["gpu"] = _time_gpu(finals, cfg["gpu_timing"])
    else:
        ct = cfg["cpu_timing"]
        lat = time_rounds(
            "cpu_torch",
            finals,
            (1, 1, 28, 28),
            rounds=int(ct["rounds"]),
            evaluator=EvaluatorConfig(**ct["evaluator"]),
        )
        for k, v in lat.items():
            results[k]["latency_samples_ms"] = v
        if tvm:
            from benchmarks.tvm_time import time_tvm_rounds

            tt = cfg["tvm_timing"]
            extra["tvm"] = time_tvm_rounds(
                finals, (1, 1, 28, 28), rounds=int(tt["rounds"]), evaluator=EvaluatorConfig(**tt["evaluator"])
            )
    out = {
        **stamp(),
        "model": model_name,
        "accelerator": accelerator,
        "plan_table": table,
        "plan_input": list(plan_shape),
        "subset_train_images": subset if subset is not None else 55000,
        "dense_epochs": dense_epochs,
        "ft_epochs": ft_epochs,
        "limit_batches": limit,
        "dense_fit_s": dense_fit_s,
        "results": results,
        "threads_latency": 1,
        "load_after": load_note(),
        "test_images": "a quarter of the subset (FashionMNISTDataModule)"
        if subset is not None
        else "the full 10,000-image test set; validation 5,000 held out of the 60,000",
        **extra,
    }
    (raw / setting["raw"]).write_text(json.dumps(out, indent=1))


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", choices=("all", "cpu224", "fmnist", "report"), default="all")
    ap.add_argument("--zoo", default=str(ROOT / ".bench" / "zoo.json"), help="zoo.json from benchmarks.zoo")
    ap.add_argument("--out", default=str(ROOT / "docs"), help="folder for raw JSON, BENCHMARKS.md, plots")
    ap.add_argument("--quick", action="store_true", help="smoke run: builds a tiny zoo, trains on 1k images")
    ap.add_argument("--fmnist-model", default="small_resnet", help="model of the fmnist stage")
    ap.add_argument(
        "--accelerator", default="cpu", choices=("cpu", "gpu"), help="where the fmnist stage runs"
    )
    ap.add_argument("--fmnist-source", default=None, help="folder of the Fashion-MNIST .gz files")
    ap.add_argument(
        "--ratios", default="", help="more hwprune latency budgets for the Pareto plot, e.g. 0.3,0.7"
    )
    ap.add_argument(
        "--tvm",
        action="store_true",
        help="CPU fmnist: also plan hwprune from the untuned TVM table and time every model through TVM",
    )
    ap.add_argument(
        "--config", default="e2e", help="experiment config (benchmarks/conf/<name>.yaml or a path)"
    )
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("pytorch_lightning", "lightning", "hwprune", "benchmarks.zoo"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    cfg = load_config(args.config, quick=args.quick, overrides=args.set)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    zoo_path = Path(args.zoo)
    if args.quick and args.stage in ("all", "cpu224"):
        zoo_path = out / "zoo.json"
        zoo_path.write_text(json.dumps(build_zoo(load_config("zoo", quick=True))))
    if args.stage in ("all", "cpu224"):
        stage_cpu224(zoo_path, out, cfg["cpu224"])
    if args.stage in ("all", "fmnist"):
        ratios = () if args.quick else tuple(float(r) for r in args.ratios.split(",") if r.strip())
        plans = (
            {"_tvm": (cfg["fmnist"]["tvm_plan"], (1, 1, 28, 28))}
            if args.tvm and args.fmnist_model == "small_resnet" and not args.quick
            else {}
        )
        stage_fmnist(
            out,
            cfg["fmnist"],
            args.fmnist_model,
            args.accelerator,
            args.fmnist_source,
            ratios,
            plans,
            args.tvm,
        )
    if args.stage in ("all", "report"):
        e2e_report.write(out, zoo_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

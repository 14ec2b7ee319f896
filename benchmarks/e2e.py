"""End-to-end benchmarks: hwprune against uninstructed pruning, written to docs/BENCHMARKS.md.

Stages (default: all that run on this machine, then the report):

* ``cpu224``: the 224x224 zoo of ``benchmarks/zoo.py`` timed on this CPU (torch, 1 thread, as the
  cpu_torch target), batch 1, interleaved rounds with the dense model in every round; plus the layer-level
  check of hwprune's cpu_torch decisions (each changed conv timed alone against its dense shape).
* ``fmnist``: the default model (small_resnet) on a Fashion-MNIST subset: one dense checkpoint, then the
  same fine-tuning from it with each method (none, hwprune, uninstructed L1 at hwprune's parameter count,
  the same with round_to=8, Lightning ModelPruning); accuracy, params, MACs and measured CPU latency.
* ``report``: reads ``<raw>/bench_raw_{cpu224,fmnist,cudnn}.json`` (cudnn from ``gpu_time.py`` on the lent
  GPU) and writes ``BENCHMARKS.md``, ``benchmarks.json`` and ``bench_*.png``.

    .venv/bin/python benchmarks/e2e.py                       # zoo must exist in .bench/ (benchmarks/zoo.py)
    .venv/bin/python benchmarks/e2e.py --quick --out /tmp/b  # smoke run: tiny zoo, tiny training
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_time  # noqa: E402
from _arch import rebuild, time_cpu_rounds  # noqa: E402

log = logging.getLogger("e2e")
ROOT = Path(__file__).resolve().parent.parent


def commit() -> str:
    import os

    if os.environ.get("HWPRUNE_COMMIT"):  # a copy of the tree without .git (the lent GPU machine)
        return os.environ["HWPRUNE_COMMIT"]
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, timeout=10
            ).stdout.strip()
            or "unknown"
        )
    except Exception:  # noqa: BLE001
        return "unknown"


def cpu_name() -> str:
    from hwprune.measure.device_info import cpu_model

    return cpu_model()


def load_note() -> str:
    try:
        la = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        la = ["?"] * 3
    import os

    return f"load average {' '.join(la)} on {os.cpu_count()} logical cores (machine shared with other agents)"


def stamp() -> dict[str, Any]:
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": commit(),
        "machine": f"{cpu_name()}, {__import__('os').cpu_count()} logical cores",
        "torch": torch.__version__,
    }


# ---------------------------------------------------------------------------------------------- cpu224
def stage_cpu224(zoo_path: Path, raw: Path, quick: bool) -> None:
    zoo = json.loads(zoo_path.read_text())["models"]
    torch.set_num_threads(1)  # conf/device/cpu_torch.yaml options.threads: 1
    keep = [
        e
        for e in zoo
        if e["base"] == "resnet18"
        and (
            e["method"] == "dense"
            or (e["method"] == "hwprune" and e["plan_target"] in ("cpu_torch", "cuda_cudnn_fp32"))
            or ("uniform" in e["name"])
            or (e.get("matched_to", "").find("cpu_torch") >= 0)
        )
    ]
    size = 64 if quick else 224
    models = {e["name"]: rebuild(e["base"], e["spec"]) for e in keep}
    note_before = load_note()
    t0 = time.perf_counter()
    samples = time_cpu_rounds(
        models, torch.randn(1, 3, size, size), rounds=2 if quick else 7, number=2 if quick else 5
    )
    wall = time.perf_counter() - t0
    dense_zoo = {e["base"]: e for e in zoo if e["method"] == "dense"}
    layers = gpu_time.layer_level(keep, dense_zoo, number=2 if quick else 9, batch=1, prefix="cpu_torch")
    out = {
        **stamp(),
        "threads": 1,
        "input": [1, 3, size, size],
        "rounds": len(next(iter(samples.values()))),
        "samples_ms": samples,
        "wall_s": wall,
        "load_before": note_before,
        "load_after": load_note(),
        "layers": layers,
    }
    (raw / "bench_raw_cpu224.json").write_text(json.dumps(out, indent=1))
    log.info("cpu224: %d models timed in %.0f s, %d layer decisions", len(models), wall, len(layers))


# ---------------------------------------------------------------------------------------------- fmnist
def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _nonzero(m: nn.Module) -> int:
    return sum(int((p != 0).sum()) for p in m.parameters())


# Fashion-MNIST settings per (model, accelerator). On the CPU: a 12k-image subset and the cpu_torch table
# (batch 1, 1 thread). On a GPU (the lent H100/H200): the full training set and the cuDNN heuristics table
# of that model at batch 256 (the throughput setting HALP reports), measured by scripts/device_paper_cudnn.sh.
FMNIST_TABLES = {
    ("small_resnet", "cpu"): ("tables/cpu_torch/small_resnet_28.csv", 1),
    ("resnet18", "gpu"): ("tables/cuda_cudnn_fp32_heuristics/resnet18_28_b256.csv", 256),
    ("mobilenet_v2", "gpu"): ("tables/cuda_cudnn_fp32_heuristics/mobilenet_v2_28_b256.csv", 256),
}


def fmnist_raw_name(model: str, accelerator: str) -> str:
    """Raw JSON of one Fashion-MNIST run (the CPU default keeps its historical name)."""
    if (model, accelerator) == ("small_resnet", "cpu"):
        return "bench_raw_fmnist.json"
    return f"bench_raw_fmnist_{model}_{accelerator}.json"


def _macs_of(m: nn.Module) -> int:
    p = next(m.parameters())
    ops, _ = tp.utils.count_ops_and_params(m, torch.zeros(1, 1, 28, 28, device=p.device))
    return int(ops)


def _time_gpu(finals: dict[str, nn.Module], quick: bool) -> dict[str, Any]:
    """cuDNN timings of every final model: batch 256 (heuristics and benchmark) and batch 1 CUDA graphs."""
    models = {k: m.cuda().eval() for k, m in finals.items()}
    rounds, number = (2, 5) if quick else (7, 20)
    out: dict[str, Any] = {
        "device_name": torch.cuda.get_device_name(),
        "cudnn": torch.backends.cudnn.version(),
    }
    for bench in (False, True):
        out[f"b256_fp32_bench{int(bench)}"] = gpu_time.run_setting(
            models, "fp32", 256, bench, rounds, number, input_shape=(1, 28, 28)
        )
    out["b1_graph_fp32"] = gpu_time.graph_b1(models, rounds, number * 5, input_shape=(1, 28, 28))
    return out


def stage_fmnist(
    raw: Path,
    quick: bool,
    model_name: str = "small_resnet",
    accelerator: str = "cpu",
    source_dir: str | None = None,
    extra_ratios: tuple[float, ...] = (),
    extra_plans: dict[str, tuple[str, tuple[int, ...]]] | None = None,
    tvm: bool = False,
) -> None:
    """Fine-tune ``model_name`` on Fashion-MNIST with every method from one dense checkpoint; time them.

    Args:
        raw: Folder for the raw JSON (``fmnist_raw_name``).
        quick: Smoke run: 1k images, dense + hwprune + uninstructed only.
        model_name: ``small_resnet`` (CPU), ``resnet18`` or ``mobilenet_v2`` (GPU).
        accelerator: ``cpu`` or ``gpu``.
        source_dir: Folder of the four Fashion-MNIST ``.gz`` files (default: Debian's).
        extra_ratios: More latency budgets for hwprune (and uninstructed L1 at each one's parameter
            count), for the Pareto plot; named ``hwprune@<ratio>``.
        extra_plans: ``{tag: (table, plan_input_shape)}``: hwprune planned from another target's table
            at the 50% budget (e.g. ``_tvm`` for the untuned TVM table), with its matched uninstructed run.
        tvm: Also time every final model through TVM (``benchmarks/tvm_time.py``, CPU only).
    """
    extra_plans = extra_plans or {}
    import pytorch_lightning as pl
    import zoo as zoo_mod
    from _arch import arch_spec
    from pytorch_lightning.callbacks import ModelPruning

    from hwprune.callbacks import HardwareAwarePruning, UninstructedPruning
    from hwprune.data import FashionMNISTDataModule
    from hwprune.models import build_model
    from hwprune.module import ClassificationModule
    from hwprune.predict import LatencyPredictor

    if (model_name, accelerator) not in FMNIST_TABLES:
        raise ValueError(f"no Fashion-MNIST setting for {(model_name, accelerator)}; see FMNIST_TABLES")
    gpu = accelerator == "gpu"
    if gpu and not torch.cuda.is_available():
        raise RuntimeError("--accelerator gpu needs CUDA; run it on the lent GPU (benchmarks/README)")
    table, plan_batch = FMNIST_TABLES[(model_name, accelerator)]
    plan_shape = (plan_batch, 1, 28, 28)
    torch.set_num_threads(2)
    subset = 1024 if quick else (None if gpu else 12000)
    dense_epochs, ft_epochs = (1, 2) if quick else (3, 3)
    limit = 2 if quick else 1.0
    if gpu:  # the cuda_cudnn_fp32 targets time with TF32 off; train the same way
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False

    def dm() -> FashionMNISTDataModule:
        kw: dict[str, Any] = {"source_dir": source_dir} if source_dir else {}
        return FashionMNISTDataModule(
            subset=subset,
            batch_size=128,
            augment=False,
            seed=0,
            val_size=256 if quick else (5000 if gpu else 1000),
            num_workers=4 if gpu else 0,
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
        return ClassificationModule(
            net, functools.partial(torch.optim.AdamW, lr=2e-3, weight_decay=1e-4), None, num_classes=10
        )

    def build() -> nn.Module:
        return build_model(model_name, num_classes=10, in_channels=1, input_size=28)

    import tempfile

    work = Path(tempfile.mkdtemp(prefix="hwprune_e2e_"))
    pl.seed_everything(0, workers=True)
    dense_net = build()
    t0 = time.perf_counter()
    trainer(dense_epochs, [], work).fit(module(dense_net), datamodule=dm())
    dense_fit_s = time.perf_counter() - t0
    dense_state = {k: v.detach().cpu().clone() for k, v in dense_net.state_dict().items()}
    predictor = LatencyPredictor(
        estimator="extra_trees", target_transform="log_per_flop", cv_folds=0, n_estimators=100
    ).fit(ROOT / table)

    results: dict[str, Any] = {}

    def run(name: str, callbacks: list) -> nn.Module:
        pl.seed_everything(1, workers=True)
        net = build()
        net.load_state_dict(dense_state)
        mod = module(net)
        tr = trainer(ft_epochs, callbacks, work)

        class EpochTimer(pl.Callback):
            def __init__(self) -> None:
                self.times: list[float] = []

            def on_train_epoch_start(self, *a: Any) -> None:
                self.t = time.perf_counter()

            def on_train_epoch_end(self, *a: Any) -> None:
                self.times.append(time.perf_counter() - self.t)

        timer = EpochTimer()
        tr.callbacks.append(timer)
        t = time.perf_counter()
        tr.fit(mod, datamodule=dm())
        fit_s = time.perf_counter() - t
        test = tr.test(mod, datamodule=dm(), verbose=False)[0]
        final = mod.model.eval()
        results[name] = {
            "test_acc": float(test["test/acc"]),
            "params": _n_params(final),
            "nonzero_params": _nonzero(final),
            "macs": _macs_of(final),
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
            start_epoch=1,
            num_steps=1,
            verify=False,
            export=None,
            report_dir=str(work / f"hw{tag}"),
            min_channel_ratio=0.25 if ratio >= 0.3 else 0.1,
        )
        name = f"hwprune{tag}"
        finals[name] = run(name, [hw])
        report = json.loads((work / f"hw{tag}" / "pruning_report.json").read_text())
        results[name]["report_steps"] = report["steps"]
        results[name]["predicted_ms"] = report["predicted_ms"]
        results[name]["latency_ratio"] = ratio
        # Uninstructed at hwprune's parameter count: find the uniform ratio on the dense checkpoint.
        for utag, rt in (("uninstructed", None), ("uninstructed_r8", 8)) if r8 else (("uninstructed", None),):
            saved = zoo_mod.TRACE
            zoo_mod.TRACE = (1, 1, 28, 28)
            try:
                _, pr = zoo_mod.tp_matched(
                    dense_model.eval(), results[name]["params"], rt, iters=2 if quick else 6
                )
            finally:
                zoo_mod.TRACE = saved
            uname = f"{utag}{tag}"
            finals[uname] = run(
                uname, [UninstructedPruning((1, 1, 28, 28), pruning_ratio=pr, epoch=1, round_to=rt)]
            )
            results[uname]["pruning_ratio"] = pr
            results[uname]["matched_to"] = name

    # The headline pair at 50% (names without a suffix), with round_to=8 beside it (not in --quick).
    hwprune_and_matched("", predictor, plan_shape, 0.5, r8=not quick)
    for ratio in () if quick else extra_ratios:
        hwprune_and_matched(f"@{ratio}", predictor, plan_shape, ratio, r8=False)
    for tag, (tbl, shape) in ({} if quick else extra_plans).items():
        pred = LatencyPredictor(
            estimator="extra_trees", target_transform="log_per_flop", cv_folds=0, n_estimators=100
        ).fit(ROOT / tbl)
        hwprune_and_matched(tag, pred, shape, 0.5, r8=False)
        results[f"hwprune{tag}"]["plan_table"] = tbl
    mp = (
        None
        if quick
        else ModelPruning(
            "l1_unstructured",
            amount=lambda epoch: 0.5 if epoch == 0 else 0.0,
            use_global_unstructured=True,
            make_pruning_permanent=True,
            verbose=0,
        )
    )
    if mp is not None:
        finals["modelpruning"] = run("modelpruning", [mp])
    extra: dict[str, Any] = {}
    if gpu:
        extra["gpu"] = _time_gpu(finals, quick)
    else:
        # Latency of every final model on this CPU, 1 thread, interleaved rounds.
        torch.set_num_threads(1)
        lat = time_cpu_rounds(
            {k: m.cpu() for k, m in finals.items()},
            torch.randn(1, 1, 28, 28),
            rounds=3 if quick else 9,
            number=5 if quick else 30,
        )
        for k, v in lat.items():
            results[k]["latency_samples_ms"] = v
        if tvm:
            import tvm_time

            extra["tvm"] = tvm_time.time_tvm_rounds(
                finals, (1, 1, 28, 28), rounds=2 if quick else 7, number=3 if quick else 20, progress=False
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
    (raw / fmnist_raw_name(model_name, accelerator)).write_text(json.dumps(out, indent=1))


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", choices=("all", "cpu224", "fmnist", "report"), default="all")
    ap.add_argument(
        "--zoo", default=str(ROOT / ".bench" / "zoo.json"), help="zoo.json from benchmarks/zoo.py"
    )
    ap.add_argument("--out", default=str(ROOT / "docs"), help="folder for raw JSON, BENCHMARKS.md, plots")
    ap.add_argument("--quick", action="store_true", help="smoke run: builds a tiny zoo, trains on 1k images")
    ap.add_argument(
        "--fmnist-model",
        default="small_resnet",
        choices=sorted({m for m, _ in FMNIST_TABLES}),
        help="model of the fmnist stage",
    )
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
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("pytorch_lightning", "lightning", "hwprune", "zoo"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    zoo_path = Path(args.zoo)
    if args.quick and args.stage in ("all", "cpu224"):
        import zoo as zoo_mod

        zoo_path = out / "zoo.json"
        zoo_path.write_text(json.dumps(zoo_mod.build_zoo(quick=True)))
    if args.stage in ("all", "cpu224"):
        stage_cpu224(zoo_path, out, args.quick)
    if args.stage in ("all", "fmnist"):
        ratios = tuple(float(r) for r in args.ratios.split(",") if r.strip())
        plans = (
            {"_tvm": ("tables/cpu_tvm_llvm_untuned/small_resnet_28.csv", (1, 1, 28, 28))}
            if args.tvm and args.fmnist_model == "small_resnet"
            else {}
        )
        stage_fmnist(
            out, args.quick, args.fmnist_model, args.accelerator, args.fmnist_source, ratios, plans, args.tvm
        )
    if args.stage in ("all", "report"):
        import e2e_report

        e2e_report.write(out, zoo_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

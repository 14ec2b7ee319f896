"""Time the pruned 224x224 zoo on a CUDA GPU (cuDNN), with a dense baseline beside every sample.

Reads ``zoo.json`` from ``benchmarks.zoo`` and follows ``benchmarks/conf/gpu_time.yaml``; writes
``cudnn_raw.json`` (updated after every setting, so a run cut short keeps what it measured). All timing goes
through :mod:`hwprune.measure`:

* end to end: every model x dtype x batch x ``cudnn.benchmark``, each setting a cuDNN target, timed by
  :func:`hwprune.measure.time_models` in interleaved rounds (dense, m1, m2, ... each round);
* batch 1 through a CUDA graph (fp32, benchmark on), where eager launches would dominate, each replay
  timed by :func:`hwprune.measure.evaluator.time_callable`;
* layer level: every conv whose shape a pruned model changed, timed alone on the plan's target at the
  planned batch against the same conv at its dense shape (:func:`benchmarks.zoo.zoo_decisions`).

Without a GPU (the smoke run), everything runs on the ``cpu_torch`` target. On the lent GPU machine it needs
hwprune's dependencies: carry the wheels it lacks, as ``scripts/device_model_true.sh`` does.

    python -m benchmarks.gpu_time --zoo .bench/zoo.json --out $OUT [--quick] [--tf32-only]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.arch import rebuild
from benchmarks.common import load_config
from benchmarks.zoo import zoo_decisions
from hwprune.measure import EvaluatorConfig, Target, time_models
from hwprune.measure.evaluator import time_callable

DTYPES = {"fp32": "float32", "fp16": "float16", "tf32": "tf32"}
"""Setting label -> the target's dtype."""
TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "tf32": torch.float32}
TIMING = (
    "Each number is the median over {rounds} interleaved rounds (dense, then every pruned model, per round) "
    "of one sample per model and round (`hwprune.measure.time_models`: the median of {repeat} means of "
    ">= {min_repeat_ms:g} ms of back-to-back forwards, CUDA events); speedups are the median of the "
    "per-round ratios dense/model; IQR is over the rounds."
)
"""How a setting's numbers were taken (the report states it from the raw file)."""


def setting_target(dtype: str, batch: int, bench: bool) -> Target:
    """The target of one timing setting: cuDNN in ``dtype``, or this CPU (1 thread) without a GPU."""
    if not torch.cuda.is_available():
        return Target(name="cpu_torch", backend="torch_cpu", batch=batch, options={"threads": 1})
    return Target(
        name=f"cuda_cudnn_{dtype}",
        backend="cudnn",
        dtype=DTYPES[dtype],
        batch=batch,
        options={"benchmark": bench},
    )


def _summary(rounds_ms: list[float]) -> dict[str, Any]:
    """Round samples with their median and quartiles (the raw file's per-model record)."""
    s = sorted(rounds_ms)
    q = statistics.quantiles(s, n=4, method="inclusive") if len(s) >= 2 else [s[0]] * 3
    return {"round_medians": list(rounds_ms), "median_ms": statistics.median(s), "q1_ms": q[0], "q3_ms": q[2]}


def time_setting(
    models: dict[str, nn.Module],
    dtype: str,
    batch: int,
    bench: bool,
    rounds: int,
    evaluator: EvaluatorConfig,
    input_shape: tuple[int, int, int] = (3, 224, 224),
) -> dict[str, Any]:
    """Every model at one setting, in interleaved rounds: name -> round samples, median and quartiles."""
    target = setting_target(dtype, batch, bench)
    timings = time_models(
        target, list(models.values()), (batch, *input_shape), rounds=rounds, evaluator=evaluator
    )
    return {k: {**_summary(list(t.rounds_ms)), "n": rounds} for k, t in zip(models, timings, strict=True)}


def graph_b1(
    models: dict[str, nn.Module],
    rounds: int,
    evaluator: EvaluatorConfig,
    input_shape: tuple[int, int, int] = (3, 224, 224),
) -> dict[str, Any]:
    """Batch 1 through a CUDA graph per model (fp32, TF32 off, benchmark on), rounds interleaved."""
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False
    graphs = {}
    with torch.inference_mode():
        for k, m in models.items():
            m = m.cuda().eval()
            x = torch.randn(1, *input_shape, device="cuda")
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(3):
                    m(x)
            torch.cuda.current_stream().wait_stream(s)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                m(x)
            graphs[k] = g
        samples: dict[str, list[float]] = {k: [] for k in graphs}
        for _ in range(rounds):
            for k, g in graphs.items():
                samples[k].append(time_callable(g.replay, evaluator, sync=torch.cuda.synchronize).median_ms)
    return {k: {**_summary(v), "n": len(v)} for k, v in samples.items()}


def _nvidia_smi() -> str:
    try:
        return subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu",
                "--format=csv,noheader",
            ],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as err:
        return f"nvidia-smi failed: {err}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", default=".bench/zoo.json")
    ap.add_argument("--out", default=".bench")
    ap.add_argument("--quick", action="store_true", help="the config's quick section: one small setting")
    ap.add_argument("--budget-s", type=float, default=None, help="stop starting new settings after this")
    ap.add_argument("--tf32-only", action="store_true", help="the TF32 addendum (config gpu_time_tf32)")
    ap.add_argument("--config", default=None, help="experiment config (default gpu_time, or gpu_time_tf32)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    args = ap.parse_args(argv)
    cfg = load_config(
        args.config or ("gpu_time_tf32" if args.tf32_only else "gpu_time"),
        quick=args.quick,
        overrides=args.set,
    )
    budget = args.budget_s if args.budget_s is not None else float(cfg["budget_s"])
    cuda = torch.cuda.is_available()
    t0 = time.perf_counter()
    zoo = json.loads(Path(args.zoo).read_text())["models"]
    ev = EvaluatorConfig(**cfg["evaluator"])
    out: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu (smoke run, not a GPU)",
        "nvidia_smi": _nvidia_smi(),
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version(),
        "cuda": torch.version.cuda,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": [],
        "graph_b1": {},
        "layers": [],
        "notes": cfg["notes"],
        "timing": TIMING.format(rounds=cfg["rounds"], **cfg["evaluator"]),
    }
    dest = Path(args.out) / cfg["out_name"]
    dest.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        out["wall_s"] = time.perf_counter() - t0
        dest.write_text(json.dumps(out))

    bases = sorted({e["base"] for e in zoo})
    s = cfg["settings"]
    plan = [(dt, b, bench) for dt in s["dtypes"] for b in s["batches"] for bench in s["benchmark"]]
    for dt, b, bench in plan:
        for base in bases:
            if time.perf_counter() - t0 > budget:
                print(f"budget spent, skipping {dt} b{b} bench={bench} {base}", flush=True)
                continue
            ms = {e["name"]: rebuild(base, e["spec"]) for e in zoo if e["base"] == base}
            ts = time.perf_counter()
            r = time_setting(ms, dt, b, bench, int(cfg["rounds"]), ev)
            out["settings"].append({"base": base, "dtype": dt, "batch": b, "benchmark": bench, "results": r})
            d = r[f"{base}/dense"]["median_ms"]
            print(
                f"{base} {dt} b{b} bench={bench}: dense {d:.3f} ms, {len(ms)} models, "
                f"{time.perf_counter() - ts:.0f} s",
                flush=True,
            )
            del ms
            if cuda:
                torch.cuda.empty_cache()
            save()
    g = cfg.get("graph_b1")
    if g and cuda and time.perf_counter() - t0 < budget:
        for base in bases:
            ms = {e["name"]: rebuild(base, e["spec"]) for e in zoo if e["base"] == base}
            out["graph_b1"][base] = graph_b1(ms, int(g["rounds"]), EvaluatorConfig(**g["evaluator"]))
            print(
                f"{base} graph b1 fp32: dense {out['graph_b1'][base][f'{base}/dense']['median_ms']:.3f} ms",
                flush=True,
            )
            del ms
            save()
    lay = cfg.get("layers")
    if lay and time.perf_counter() - t0 < budget + 60:
        out["layers"] = zoo_decisions(
            zoo, int(lay["batch"]), "cuda_cudnn" if cuda else "cpu_torch", EvaluatorConfig(**lay["evaluator"])
        )
        print(f"layer level: {len(out['layers'])} layer decisions timed", flush=True)
    save()
    print(f"wrote {dest} in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

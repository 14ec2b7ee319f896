"""Whole-model latency through TVM (apache-tvm 0.27, Relax): the ``tvm_llvm`` column of the benchmarks.

Each model goes ``torch.export`` -> ``tvm.relax.frontend.torch.from_exported_program`` (weights bound as
constants) -> ``tvm.compile`` for the target -> Relax VM, and is timed with the VM's ``time_evaluator``
in interleaved rounds (every model once per round, dense included), so drift of a shared machine's load
hits all models alike. No MetaSchedule tuning: the builds use TVM's default schedules, like the
``cpu_tvm_llvm_untuned`` target whose table hwprune plans from.

    .venv/bin/python benchmarks/tvm_time.py --raw docs/bench_raw_fmnist.json   # time the fmnist finals

Used by ``benchmarks/e2e.py --stage fmnist --tvm``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TARGET: dict[str, Any] = {"kind": "llvm", "num-cores": 2}


def compile_model(model: nn.Module, input_shape: tuple[int, ...], target: dict[str, Any]) -> Any:
    """Return a Relax VM executable of ``model`` (eval mode) for inputs of ``input_shape``.

    Raises:
        ImportError: If apache-tvm is not installed (``pip install 'hwprune[tvm]'``).
    """
    try:
        import tvm
        from tvm.relax.frontend.torch import from_exported_program
    except ImportError as err:  # pragma: no cover - the [tvm] extra is installed by `make setup`
        raise ImportError("TVM timing needs apache-tvm: pip install 'hwprune[tvm]'") from err
    m = model.cpu().eval()
    with torch.no_grad():
        ep = torch.export.export(m, (torch.zeros(*input_shape),))
    mod = from_exported_program(ep, unwrap_unit_return_tuple=True)
    return tvm.compile(mod, target=tvm.target.Target(target))


def time_tvm_rounds(
    models: dict[str, nn.Module],
    input_shape: tuple[int, ...],
    *,
    target: dict[str, Any] | None = None,
    rounds: int = 5,
    number: int = 20,
    progress: bool = True,
) -> dict[str, Any]:
    """Compile every model with TVM and time it in interleaved rounds.

    Args:
        models: Name -> model (any device; moved to the CPU).
        input_shape: Full input shape, e.g. ``(1, 1, 28, 28)``.
        target: TVM target as a dict (default: llvm on 2 cores).
        rounds: Rounds over all models; each round gives one sample per model.
        number: Runs averaged into one sample (the VM's ``time_evaluator`` ``number``).
        progress: Show a progress bar.

    Returns:
        ``{"target": ..., "tvm": version, "models": {name: {"samples_ms", "median_ms", "q1_ms", "q3_ms",
        "compile_s"}}}``.
    """
    import numpy as np
    import tvm
    from tvm import relax

    target = dict(target or DEFAULT_TARGET)
    dev = tvm.cpu(0)
    x = tvm.runtime.tensor(np.random.default_rng(0).standard_normal(input_shape).astype("float32"), dev)
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        progress = False
    names = list(models)
    timers: dict[str, Any] = {}
    compile_s: dict[str, float] = {}
    it = tqdm(names, desc="TVM compile", disable=not progress)
    for k in it:
        t0 = time.perf_counter()
        ex = compile_model(models[k], input_shape, target)
        compile_s[k] = time.perf_counter() - t0
        vm = relax.VirtualMachine(ex, dev)
        vm["main"](x)  # warm-up
        timers[k] = vm.time_evaluator("main", dev, number=number, repeat=1)
    samples: dict[str, list[float]] = {k: [] for k in names}
    for _ in tqdm(range(rounds), desc="TVM rounds", disable=not progress):
        for k in names:
            samples[k].append(float(timers[k](x).mean) * 1e3)
    out: dict[str, Any] = {}
    for k, v in samples.items():
        q = statistics.quantiles(v, n=4) if len(v) >= 2 else [v[0]] * 3
        out[k] = {
            "samples_ms": v,
            "median_ms": statistics.median(v),
            "q1_ms": q[0],
            "q3_ms": q[2],
            "compile_s": compile_s[k],
        }
    return {"target": target, "tvm": tvm.__version__, "rounds": rounds, "number": number, "models": out}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raw", required=True, help="a bench_raw_fmnist*.json with each final's `arch`")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--number", type=int, default=20)
    ap.add_argument("--only", default="", help="comma-separated model names (default: all)")
    ap.add_argument(
        "--cpu",
        action="store_true",
        help="also time the models with torch on this CPU (1 thread, interleaved rounds), as `cpu_latency`",
    )
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    sys.path.insert(0, str(ROOT))
    from _arch import fmnist_base, rebuild, time_cpu_rounds

    raw_path = Path(args.raw)
    raw = json.loads(raw_path.read_text())
    base = fmnist_base(raw)
    keep = [s.strip() for s in args.only.split(",") if s.strip()] or list(raw["results"])
    missing = [k for k in keep if "arch" not in raw["results"].get(k, {})]
    if missing:
        ap.error(f"{raw_path} holds no `arch` for {missing}; re-run benchmarks/e2e.py --stage fmnist")
    models = {k: rebuild(base, raw["results"][k]["arch"]) for k in keep}
    if args.cpu:
        torch.set_num_threads(1)
        samples = time_cpu_rounds(models, torch.randn(1, 1, 28, 28), rounds=args.rounds, number=args.number)
        raw["cpu_latency"] = {
            "threads": 1,
            "rounds": args.rounds,
            "number": args.number,
            "samples_ms": samples,
        }
        for k, v in samples.items():
            print(f"torch CPU {k:24s} {statistics.median(v):.3f} ms")
    raw["tvm"] = time_tvm_rounds(models, (1, 1, 28, 28), rounds=args.rounds, number=args.number)
    raw_path.write_text(json.dumps(raw, indent=1))
    for k, v in raw["tvm"]["models"].items():
        print(
            f"TVM {k:24s} {v['median_ms']:.3f} ms [{v['q1_ms']:.3f}, {v['q3_ms']:.3f}], "
            f"compile {v['compile_s']:.0f} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

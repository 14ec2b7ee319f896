"""Time the pruned 224x224 zoo on a CUDA GPU (cuDNN), with a dense baseline beside every sample.

Needs only torch + torchvision (runs on the lent GPU machine). Reads ``zoo.json`` from ``benchmarks/zoo.py``
and writes ``cudnn_raw.json`` (updated after every setting, so a run cut short keeps what it measured):

* end to end: every model x {fp32 (TF32 off, as the cuda_cudnn_fp32 target), fp16} x batch {32, 256} x
  ``cudnn.benchmark`` {off (heuristics), on}; interleaved rounds (dense, m1, m2, ... each round), each
  sample the median of ``number`` forwards timed one by one with CUDA events;
* batch 1 through a CUDA graph (fp32, benchmark on), where eager launches would dominate;
* layer level: every conv whose shape a pruned model changed, timed alone at the planned batch (32) and
  dtype against the same conv at its dense shape (``cudnn.benchmark`` on, as the tables were measured).

    python3 benchmarks/gpu_time.py --zoo .bench/zoo.json --out $OUT [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _arch import conv_from_spec, rebuild  # noqa: E402

DT = {"fp32": torch.float32, "fp16": torch.float16}
# CUDA when there is one; the CPU path exists only so the smoke test can run this script without a GPU.
DEV = "cuda" if torch.cuda.is_available() else "cpu"


class _CpuEvent:
    def __init__(self, enable_timing: bool = True) -> None:
        self.t = 0.0

    def record(self) -> None:
        self.t = time.perf_counter()

    def elapsed_time(self, other: _CpuEvent) -> float:
        return (other.t - self.t) * 1e3


def _event() -> Any:
    return torch.cuda.Event(enable_timing=True) if DEV == "cuda" else _CpuEvent()


def _sync() -> None:
    if DEV == "cuda":
        torch.cuda.synchronize()


def q(xs: list[float], f: float) -> float:
    s = sorted(xs)
    i = f * (len(s) - 1)
    lo = int(i)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (i - lo)


def time_forwards(m: nn.Module, x: torch.Tensor, number: int) -> list[float]:
    evs = [(_event(), _event()) for _ in range(number)]
    for a, b in evs:
        a.record()
        m(x)
        b.record()
    _sync()
    return [a.elapsed_time(b) for a, b in evs]


def _summarise(res: dict[str, Any]) -> dict[str, Any]:
    """Per model: its round medians plus median and quartiles over every forward (``all``)."""
    out = {}
    for k, r in res.items():
        a = r.pop("all")
        out[k] = {**r, "median_ms": q(a, 0.5), "q1_ms": q(a, 0.25), "q3_ms": q(a, 0.75), "n": len(a)}
    return out


def run_setting(
    models: dict[str, nn.Module],
    dtype: str,
    batch: int,
    bench: bool,
    rounds: int,
    number: int,
    tf32: bool = False,
    input_shape: tuple[int, int, int] = (3, 224, 224),
) -> dict[str, Any]:
    torch.backends.cudnn.benchmark = bench
    # PyTorch's own default lets cuDNN convolutions use TF32; the cuda_cudnn_fp32 target turns it off.
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    x = torch.randn(batch, *input_shape, device=DEV, dtype=DT[dtype])
    res: dict[str, Any] = {k: {"round_medians": [], "all": []} for k in models}
    with torch.inference_mode():
        for m in models.values():
            for _ in range(3):
                m(x)
        _sync()
        for _ in range(rounds):
            for k, m in models.items():
                ts = time_forwards(m, x, number)
                res[k]["round_medians"].append(q(ts, 0.5))
                res[k]["all"].extend(ts)
    return _summarise(res)


def graph_b1(
    models: dict[str, nn.Module], rounds: int, number: int, input_shape: tuple[int, int, int] = (3, 224, 224)
) -> dict[str, Any]:
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False
    graphs = {}
    with torch.inference_mode():
        for k, m in models.items():
            x = torch.randn(1, *input_shape, device=DEV)
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
        res: dict[str, Any] = {k: {"round_medians": [], "all": []} for k in graphs}
        for _ in range(rounds):
            for k, g in graphs.items():
                evs = [(_event(), _event()) for _ in range(number)]
                for a, b in evs:
                    a.record()
                    g.replay()
                    b.record()
                _sync()
                ts = [a.elapsed_time(b) for a, b in evs]
                res[k]["round_medians"].append(q(ts, 0.5))
                res[k]["all"].extend(ts)
    return _summarise(res)


def conv_inputs(m: nn.Module, batch: int) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [
        mod.register_forward_hook(lambda mod, i, o, n=n: shapes.__setitem__(n, tuple(i[0].shape)))
        for n, mod in m.named_modules()
        if isinstance(mod, nn.Conv2d)
    ]
    with torch.inference_mode():
        m(torch.zeros(1, 3, 224, 224, device=next(m.parameters()).device, dtype=next(m.parameters()).dtype))
    for h in hooks:
        h.remove()
    return {n: (batch, *s[1:]) for n, s in shapes.items()}


def time_conv(spec: dict[str, Any], in_shape: tuple[int, ...], dtype: str, number: int) -> float:
    conv = conv_from_spec(spec).to(DEV).to(DT[dtype]).eval()
    x = torch.randn(*in_shape, device=DEV, dtype=DT[dtype])
    with torch.inference_mode():
        for _ in range(3):
            conv(x)
        ts: list[float] = []
        for _ in range(3):  # three medians, keep the middle: one conv launch is short and noisy
            ts.append(q(time_forwards(conv, x, number), 0.5))
    return sorted(ts)[1]


def layer_level(
    zoo: list[dict[str, Any]],
    dense_by_base: dict[str, dict[str, Any]],
    number: int,
    batch: int = 32,
    prefix: str = "cuda_cudnn",
) -> list[dict]:
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False
    rows = []
    cache: dict[tuple, float] = {}
    for e in zoo:
        if e["method"] == "hwprune":
            target = e["plan_target"]
        elif e.get("matched_to"):
            target = next(z["plan_target"] for z in zoo if z["name"] == e["matched_to"])
        elif e["method"].startswith("tp_l1"):
            # the uniform 12% / 50% reference points, timed in the backend's default dtype
            target = "cuda_cudnn_fp32" if prefix == "cuda_cudnn" else prefix
        else:
            continue
        if not target.startswith(prefix):
            continue
        dtype = "fp16" if target.endswith("fp16") else "fp32"
        dense = dense_by_base[e["base"]]
        dm = rebuild(e["base"], dense["spec"]).to(DEV).to(DT[dtype])
        pm = rebuild(e["base"], e["spec"]).to(DEV).to(DT[dtype])
        din, pin = conv_inputs(dm, batch), conv_inputs(pm, batch)
        for n, s in e["spec"].items():
            if s["type"] != "conv":
                continue
            ds = dense["spec"][n]
            if (s["in"], s["out"]) == (ds["in"], ds["out"]):
                continue
            kd = (n, e["base"], dtype, "dense")
            if kd not in cache:
                cache[kd] = time_conv(ds, din[n], dtype, number)
            kp = (n, e["base"], dtype, s["in"], s["out"])
            if kp not in cache:
                cache[kp] = time_conv(s, pin[n], dtype, number)
            rows.append(
                {
                    "model": e["name"],
                    "method": e["method"],
                    "layer": n,
                    "dtype": dtype,
                    "batch": batch,
                    "dense_in_out": [ds["in"], ds["out"]],
                    "pruned_in_out": [s["in"], s["out"]],
                    "dense_ms": cache[kd],
                    "pruned_ms": cache[kp],
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", default=".bench/zoo.json")
    ap.add_argument("--out", default=".bench")
    ap.add_argument("--quick", action="store_true", help="one setting, 2 rounds")
    ap.add_argument("--budget-s", type=float, default=480.0, help="stop starting new settings after this")
    ap.add_argument(
        "--tf32-only",
        action="store_true",
        help="only fp32 inputs with TF32 allowed (PyTorch's default for cuDNN convs), batch 32 and 256, "
        "benchmark off and on; no graphs, no layer level",
    )
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    zoo = json.loads(Path(args.zoo).read_text())["models"]
    try:
        smi = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu",
                "--format=csv,noheader",
            ],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout.strip()
    except Exception as err:  # noqa: BLE001
        smi = f"nvidia-smi failed: {err}"
    out: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if DEV == "cuda" else "cpu (smoke run, not a GPU)",
        "nvidia_smi": smi,
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version(),
        "cuda": torch.version.cuda,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": [],
        "graph_b1": {},
        "layers": [],
        "notes": "fp32 = TF32 off (as the cuda_cudnn_fp32 target); fresh random weights",
    }
    dest = Path(args.out) / "cudnn_raw.json"
    Path(args.out).mkdir(parents=True, exist_ok=True)

    def save() -> None:
        out["wall_s"] = time.perf_counter() - t0
        dest.write_text(json.dumps(out))

    bases = sorted({e["base"] for e in zoo})
    dense_by_base = {e["base"]: e for e in zoo if e["method"] == "dense"}
    # --quick is the smoke run (the test suite runs it on a CPU): batch 2, two rounds of 3.
    plan = (
        [("fp32", 2, False)]
        if args.quick
        else [("fp32", b, bench) for b in (32, 256) for bench in (False, True)]
        if args.tf32_only
        else [(dt, b, bench) for dt in ("fp32", "fp16") for b in (32, 256) for bench in (False, True)]
    )
    if args.tf32_only:
        out["notes"] = "fp32 tensors with TF32 ALLOWED (cudnn.allow_tf32 = True); fresh random weights"
        dest = Path(args.out) / "cudnn_raw_tf32.json"
    for dt, b, bench in plan:
        for base in bases:
            if time.perf_counter() - t0 > args.budget_s:
                print(f"budget spent, skipping {dt} b{b} bench={bench} {base}", flush=True)
                continue
            ms = {e["name"]: rebuild(base, e["spec"]).to(DEV).to(DT[dt]) for e in zoo if e["base"] == base}
            ts = time.perf_counter()
            r = run_setting(
                ms,
                dt,
                b,
                bench,
                rounds=2 if args.quick else 5,
                number=3 if args.quick else 10 if b >= 256 else 20,
                tf32=args.tf32_only,
            )
            label = "tf32" if args.tf32_only else dt
            setting = {"base": base, "dtype": label, "batch": b, "benchmark": bench, "results": r}
            out["settings"].append(setting)
            d = r[f"{base}/dense"]["median_ms"]
            print(
                f"{base} {dt} b{b} bench={bench}: dense {d:.3f} ms, {len(ms)} models, "
                f"{time.perf_counter() - ts:.0f} s",
                flush=True,
            )
            del ms
            if DEV == "cuda":
                torch.cuda.empty_cache()
            save()
    if args.tf32_only:
        save()
        print(f"wrote {dest} in {time.perf_counter() - t0:.0f} s", flush=True)
        return 0
    if DEV == "cuda" and not args.quick and time.perf_counter() - t0 < args.budget_s:
        for base in bases:
            ms = {e["name"]: rebuild(base, e["spec"]).to(DEV) for e in zoo if e["base"] == base}
            out["graph_b1"][base] = graph_b1(ms, rounds=5, number=50)
            print(
                f"{base} graph b1 fp32: dense {out['graph_b1'][base][f'{base}/dense']['median_ms']:.3f} ms",
                flush=True,
            )
            del ms
            save()
    if time.perf_counter() - t0 < args.budget_s + 60:
        out["layers"] = layer_level(
            zoo, dense_by_base, number=3 if args.quick else 20, batch=2 if args.quick else 32
        )
        print(f"layer level: {len(out['layers'])} layer decisions timed", flush=True)
    save()
    print(f"wrote {dest} in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A standalone stopwatch for deploy runtimes, written apart from ``hwprune.measure`` on purpose.

It times a network the way a user would after reading the PyTorch docs: a fresh copy on the GPU in the
deploy dtype and memory format, then either a CUDA graph captured by hand (``torch.cuda.graph``) or a
fresh ``torch.compile`` (after ``torch._dynamo.reset()``, so that no cached guard or recompile limit is
shared with another network), then back-to-back calls between two CUDA events. Networks are timed one
after another, not interleaved, and dense is timed again at the end, so the spread and a drift both show.
Its only job is to be a second opinion beside :func:`hwprune.measure.time_models`.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["stopwatch", "stopwatch_models"]


def _ready(
    model: nn.Module, shape: Sequence[int], dtype: torch.dtype, channels_last: bool
) -> tuple[nn.Module, torch.Tensor]:
    m = copy.deepcopy(model).cuda().to(dtype).eval()
    x = torch.randn(*shape, device="cuda", dtype=dtype)
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    return m, x


def stopwatch(
    model: nn.Module,
    shape: Sequence[int],
    runtime: str,
    *,
    dtype: torch.dtype = torch.float16,
    channels_last: bool = True,
    iters: int = 100,
    repeats: int = 7,
    compile_mode: str = "reduce-overhead",
    cudnn_benchmark: bool = False,
) -> dict[str, Any]:
    """Median ms per inference over ``repeats`` samples of ``iters`` calls, with the samples.

    ``cudnn_benchmark`` sets ``torch.backends.cudnn.benchmark`` for this network (and restores it): a
    stopwatch must use the target's setting. The first H200 runs (2026-12-04) left it at PyTorch's default
    (off) while the targets set it on, and the stopwatch read the pruned models 18-25% slower than
    :func:`hwprune.measure.time_models` (docs/RUNTIMES.md; most likely that setting, not verified).
    """
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = bool(cudnn_benchmark)
    try:
        return _stopwatch(model, shape, runtime, dtype, channels_last, iters, repeats, compile_mode)
    finally:
        torch.backends.cudnn.benchmark = before


def _stopwatch(
    model: nn.Module,
    shape: Sequence[int],
    runtime: str,
    dtype: torch.dtype,
    channels_last: bool,
    iters: int,
    repeats: int,
    compile_mode: str,
) -> dict[str, Any]:
    m, x = _ready(model, shape, dtype, channels_last)
    t0 = time.perf_counter()
    with torch.inference_mode():
        if runtime == "cuda_graph":
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(3):
                    m(x)
            torch.cuda.current_stream().wait_stream(s)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                m(x)
            call = g.replay
        elif runtime == "inductor":
            torch._dynamo.reset()
            c = torch.compile(m, mode=compile_mode, dynamic=False)
            for _ in range(3):
                c(x)

            def call() -> None:
                c(x)

        else:

            def call() -> None:
                m(x)

        torch.cuda.synchronize()
        build_s = time.perf_counter() - t0
        for _ in range(10):
            call()
        samples = []
        for _ in range(repeats):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            for _ in range(iters):
                call()
            b.record()
            b.synchronize()
            samples.append(a.elapsed_time(b) / iters)
    q = statistics.quantiles(samples, n=4) if len(samples) >= 2 else [samples[0]] * 3
    return {
        "median_ms": statistics.median(samples),
        "iqr_ms": q[2] - q[0],
        "samples_ms": samples,
        "build_s": build_s,
    }


def stopwatch_models(
    models: Mapping[str, nn.Module], shape: Sequence[int], runtime: str, **kw: Any
) -> dict[str, Any]:
    """:func:`stopwatch` of each network in order, dense first and again last; speedups against dense."""
    names = list(models)
    out: dict[str, Any] = {}
    for n in names:
        out[n] = stopwatch(models[n], shape, runtime, **kw)
    if "dense" in models:
        out["dense_again"] = stopwatch(models["dense"], shape, runtime, **kw)
        ref = statistics.median([out["dense"]["median_ms"], out["dense_again"]["median_ms"]])
        for n in names:
            out[n]["speedup"] = ref / out[n]["median_ms"]
    return out

"""torch backends: CPU (oneDNN, wall clock) and CUDA (cuDNN, CUDA events).

torch is imported where a backend is set up or a layer built, not with this module: a target asks its
backend's class what it can do (:mod:`hwprune.measure.backends.registry`) when it is built, and building a
target must not load torch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hwprune.measure.backends.base import Backend, ModelRunner, RunResult
from hwprune.measure.evaluator import time_callable
from hwprune.measure.runtimes import Prepared, runtime_for

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)

__all__ = ["CudnnBackend", "TorchCPUBackend", "build_conv"]


def _torch_dtype(dtype: str) -> torch.dtype:
    """The torch dtype a target's ``dtype`` computes in (``tf32`` is float32 tensors with TF32 math)."""
    import torch

    return {"float32": torch.float32, "tf32": torch.float32, "float16": torch.float16}[dtype]


def build_conv(
    config: Mapping[str, int], dtype: str, device: torch.device, channels_last: bool
) -> tuple[nn.Conv2d, torch.Tensor]:
    """A bias-free ``nn.Conv2d`` (eval mode) for ``config`` and a random input of the right shape.

    Args:
        config: Keys of :data:`~hwprune.contract.CONFIG_COLUMNS`.
        dtype: ``float32``, ``tf32`` or ``float16``.
        device: Where to put them.
        channels_last: Use NHWC memory format.

    Returns:
        ``(conv, x)``.

    Raises:
        ValueError: If channels are not divisible by ``groups``.
    """
    import torch
    from torch import nn

    c = {k: int(v) for k, v in config.items() if k != "layer"}
    if c["in_channels"] % c["groups"] or c["out_channels"] % c["groups"]:
        raise ValueError(
            f"`groups` must divide in_channels and out_channels, got {c['groups']} for "
            f"{c['in_channels']}->{c['out_channels']}"
        )
    conv = nn.Conv2d(
        c["in_channels"],
        c["out_channels"],
        c["kernel_size"],
        c["stride"],
        c["padding"],
        groups=c["groups"],
        bias=False,
    ).eval()
    x = torch.randn(c["batch"], c["in_channels"], c["height"], c["width"])
    tdt = _torch_dtype(dtype)
    conv = conv.to(device=device, dtype=tdt)
    x = x.to(device=device, dtype=tdt)
    if channels_last:
        conv = conv.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    return conv, x


def _on_device(
    model: nn.Module, input_shape: tuple[int, ...], dtype: str, device: torch.device, channels_last: bool
) -> tuple[nn.Module, torch.Tensor]:
    """A private eval-mode copy of ``model`` on ``device`` in ``dtype``, and a random input for it."""
    import copy

    import torch

    tdt = _torch_dtype(dtype)
    m = copy.deepcopy(model).to(device=device, dtype=tdt).eval()
    x = torch.randn(*[int(s) for s in input_shape]).to(device=device, dtype=tdt)
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    return m, x


def _runner(prepared: Prepared, **kw: Any) -> ModelRunner:
    """A :class:`ModelRunner` of a runtime-prepared network, each call under ``inference_mode``."""
    import torch

    fn = prepared.fn

    def call() -> object:
        with torch.inference_mode():
            return fn()

    return ModelRunner(call, build_s=prepared.build_s, **kw)


def _per_run(timer: Any, runs_per_call: int) -> Any:
    """``timer`` per inference when each call of the timed function runs ``runs_per_call`` of them."""
    if runs_per_call == 1:
        return timer
    return lambda f, n: timer(f, n) / runs_per_call


def _wall(f: Any, n: int) -> float:
    import time

    t0 = time.perf_counter_ns()
    for _ in range(n):
        f()
    return (time.perf_counter_ns() - t0) / 1e6


class TorchCPUBackend(Backend):
    """torch on the CPU (oneDNN/mkldnn conv), timed with the wall clock.

    Options (``target.options``): ``threads`` (int, default: torch's default), ``channels_last`` (bool).
    Runtimes: ``eager`` and ``inductor`` (``torch.compile``; its convolutions are oneDNN calls, so single
    layers are timed eagerly and whole networks compiled).
    """

    kind = "torch_cpu"
    runs_torch = True
    dtypes = ("float32",)  # oneDNN's fp16 convolutions are no deployment path on a CPU

    @classmethod
    def times_models(cls, target: Any) -> bool:
        return True

    def setup(self) -> None:
        import torch

        threads = self.target.options.get("threads")
        self._threads_before = torch.get_num_threads()
        if threads:
            torch.set_num_threads(int(threads))
        self.threads = torch.get_num_threads()

    def close(self) -> None:
        import torch

        # The thread count is process-wide: give training (or the caller) back what it had.
        torch.set_num_threads(getattr(self, "_threads_before", torch.get_num_threads()))

    def versions(self) -> dict[str, str]:
        import torch

        return {
            "torch": torch.__version__,
            "mkldnn": str(torch.backends.mkldnn.is_available()),
            "threads": str(torch.get_num_threads()),
        }

    def run(self, config: Mapping[str, int]) -> RunResult:
        import torch

        cl = bool(self.target.options.get("channels_last", False))
        conv, x = build_conv(config, "float32", torch.device("cpu"), cl)
        rt = runtime_for(self.target).layer_runtime("cpu")
        with torch.inference_mode():
            p = rt.prepare(conv, x)
            t = time_callable(p.fn, self.evaluator, timer=_per_run(_wall, p.runs_per_call))
        settings: dict[str, Any] = {
            "threads": torch.get_num_threads(),
            "channels_last": cl,
            "number": t.number,
            "runtime": self.target.runtime,
            "layer_runtime": rt.kind,
        }
        return RunResult(t.median_ms, t.iqr_ms, t.repeats, None, settings)

    def model_runner(self, model: nn.Module, input_shape: tuple[int, ...]) -> ModelRunner:
        """The whole network on the CPU in the target's runtime, threads and memory format."""
        import torch

        cl = bool(self.target.options.get("channels_last", False))
        m, x = _on_device(model, input_shape, "float32", torch.device("cpu"), cl)
        return _runner(runtime_for(self.target).prepare(m, x))


class CudnnBackend(Backend):
    """torch on CUDA (cuDNN), timed with CUDA events.

    Options: ``benchmark`` (``torch.backends.cudnn.benchmark``, default True), ``channels_last`` (bool),
    ``device_index`` (int, default 0). ``dtype`` ``tf32`` enables TF32 convolutions; ``float32`` disables
    them (torch enables cuDNN TF32 by default, which would not be fp32). Runtimes: ``eager``,
    ``cuda_graph`` and ``inductor`` (:mod:`hwprune.measure.runtimes`); in the last two a layer is replayed
    from a CUDA graph, so the table times kernels rather than Python's dispatch.
    """

    kind = "cudnn"
    runs_torch = True
    is_gpu = True

    @classmethod
    def times_models(cls, target: Any) -> bool:
        import torch

        return bool(torch.cuda.is_available())

    def setup(self) -> None:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError(
                "backend 'cudnn' needs a CUDA GPU, but torch.cuda.is_available() is False (no GPU, no "
                f"driver, or a CPU-only torch {torch.__version__}): measure on the GPU machine, or choose a "
                "CPU target such as `device=cpu_torch`"
            )
        self.dev = torch.device("cuda", int(self.target.options.get("device_index", 0)))
        torch.cuda.set_device(self.dev)
        # Process-wide switches: remember them, so that timing inside a training run (the closed loop,
        # verify) hands training back the settings it had.
        self._flags_before = (
            torch.backends.cudnn.enabled,
            torch.backends.cudnn.benchmark,
            torch.backends.cudnn.allow_tf32,
            torch.backends.cuda.matmul.allow_tf32,
        )
        torch.backends.cudnn.enabled = True
        torch.backends.cudnn.benchmark = bool(self.target.options.get("benchmark", True))
        torch.backends.cudnn.allow_tf32 = self.target.dtype == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = self.target.dtype == "tf32"

    def close(self) -> None:
        import torch

        flags = getattr(self, "_flags_before", None)
        if flags is not None:
            (
                torch.backends.cudnn.enabled,
                torch.backends.cudnn.benchmark,
                torch.backends.cudnn.allow_tf32,
                torch.backends.cuda.matmul.allow_tf32,
            ) = flags

    def device_name(self) -> str:
        return self.target.device or self.hardware_name()

    def hardware_name(self) -> str:
        """The GPU's name as CUDA reports it (the CPU model before :meth:`setup` picked the GPU)."""
        import torch

        dev = getattr(self, "dev", None)
        return super().hardware_name() if dev is None else str(torch.cuda.get_device_name(dev))

    def versions(self) -> dict[str, str]:
        import torch

        return {
            "torch": torch.__version__,
            "cuda": str(torch.version.cuda),
            "cudnn": str(torch.backends.cudnn.version()),
        }

    def _events(self, fn: Any, n: int) -> float:
        import torch

        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(n):
            fn()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end))

    def run(self, config: Mapping[str, int]) -> RunResult:
        import torch

        cl = bool(self.target.options.get("channels_last", False))
        conv, x = build_conv(config, self.target.dtype, self.dev, cl)
        rt = runtime_for(self.target).layer_runtime("cuda")
        with torch.inference_mode():
            p = rt.prepare(conv, x)
            t = time_callable(
                p.fn,
                self.evaluator,
                sync=torch.cuda.synchronize,
                timer=_per_run(self._events, p.runs_per_call),
            )
        settings = {
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "tf32": torch.backends.cudnn.allow_tf32,
            "channels_last": cl,
            "number": t.number,
            "runtime": self.target.runtime,
            "layer_runtime": rt.kind,
            "graph_copies": p.runs_per_call,
        }
        return RunResult(t.median_ms, t.iqr_ms, t.repeats, None, settings)

    def model_runner(self, model: nn.Module, input_shape: tuple[int, ...]) -> ModelRunner:
        """The whole network on the GPU in the target's runtime, dtype, TF32 and benchmark settings."""
        import torch

        cl = bool(self.target.options.get("channels_last", False))
        m, x = _on_device(model, input_shape, self.target.dtype, self.dev, cl)
        return _runner(
            runtime_for(self.target).prepare(m, x), sync=torch.cuda.synchronize, timer=self._events
        )

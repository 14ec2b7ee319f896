"""Runtimes: how a torch network, or a single conv, is executed and timed on a target.

A backend says *where* a network runs (oneDNN on the CPU, cuDNN on a GPU); a runtime says *how* it is
driven there, and on a fast GPU that decides what a latency table measures. In eager PyTorch every op is a
Python call and a kernel launch: an H200 at batch 1 runs ResNet-50 in 5.9 ms eager and in 0.89 ms as a
CUDA-graph replay (DESIGN.md), so an eager table times the dispatcher, not the kernels. Users who care about
latency deploy in a launch-free runtime, and there the staircase is at its steepest. The runtimes:

``eager``
    The module called from Python (PyTorch's default). Valid on ``torch_cpu`` and ``cudnn``.
``cuda_graph``
    The forward pass captured once in a ``torch.cuda.CUDAGraph`` and replayed: no Python, no per-kernel
    launch. CUDA only (``cudnn``).
``inductor``
    ``torch.compile`` (TorchInductor). On CUDA the default mode ``reduce-overhead`` also replays the
    compiled kernels from CUDA graphs; on the CPU inductor emits C++ around oneDNN convolutions. Each
    network is compiled with static shapes; recompile-limit hits, which would silently fall back to eager
    (seen on the H200 after 8 pruned variants of one architecture), are raised as errors instead.
``native``
    The backend's own executor (TVM's VM or ``time_evaluator``, ArmNN's runtime, an imported table).

A runtime also says how the *single layers* of a table are timed, so that the sum of the layers stays true
for the whole network: ``cuda_graph`` replays each conv from a graph; ``inductor`` lowers convolutions to
the same cuDNN/oneDNN kernels (an extern call), so its layers are timed as a graph replay on CUDA and eagerly
on the CPU, and the work inductor fuses around them is learned by the whole-model calibration, which times
the compiled network.

A runtime says which backends it can drive by asking their classes (:meth:`Runtime.drives`: does the
backend run torch here, is it on a CUDA GPU), never by their names; so adding a runtime is one class here
with its ``kind``, :meth:`Runtime.drives` and :meth:`Runtime.prepare`, and one line in :data:`_REGISTRY`,
and a new backend is driven by every runtime its capabilities fit.

Example:
    >>> Runtime.create("eager").launch_free
    False
    >>> default_runtime("cudnn"), default_runtime("tvm")
    ('eager', 'native')
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_args

from hwprune.measure.backends.registry import REGISTRY, BackendTraits, backend_class

if TYPE_CHECKING:  # torch only where a network is prepared
    import torch
    from torch import nn

log = logging.getLogger(__name__)

__all__ = [
    "COMPILE_MODES",
    "RUNTIMES",
    "Prepared",
    "Runtime",
    "RuntimeKind",
    "default_runtime",
    "launch_free_runtimes",
    "runtime_for",
]

RuntimeKind = Literal["eager", "cuda_graph", "inductor", "native"]
RUNTIMES: tuple[str, ...] = get_args(RuntimeKind)
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
COMPILE_MODES: tuple[str, ...] = get_args(CompileMode)
#: Modes that replay CUDA graphs: CUDA only.
_GRAPH_MODES = ("reduce-overhead", "max-autotune")


@dataclass(frozen=True)
class Prepared:
    """A network or layer made ready in a runtime.

    Attributes:
        fn: One call runs ``runs_per_call`` inferences on a fixed input (the result is ignored). Call it
            under ``torch.inference_mode()``, as it was prepared (a compiled network guards on it).
        build_s: Seconds spent capturing or compiling (warm-up calls included; 0 for eager).
        runs_per_call: Inferences per call of ``fn`` (a graph may hold several copies of a short layer,
            so that one replay outlasts its launch); divide a call's time by it.
    """

    fn: Callable[[], object]
    build_s: float = 0.0
    runs_per_call: int = 1


class Runtime(ABC):
    """How a torch module is executed: the base of :data:`_REGISTRY`'s runtimes.

    Args:
        options: The target's ``options`` (each runtime reads its own keys, e.g. ``compile_mode``).

    Raises:
        ValueError: If an option this runtime reads is invalid.
    """

    kind: ClassVar[str] = ""
    #: Whether the runtime removes per-op Python dispatch and kernel launches.
    launch_free: ClassVar[bool] = False
    #: Whether preparing a network takes seconds (a compile): time_models then shows a progress bar.
    compiles: ClassVar[bool] = False
    #: The export format a network planned for this runtime is deployed from
    #: (:func:`hwprune.prune.bundle.export_model`).
    export_format: ClassVar[str] = "torch_export"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options = dict(options or {})

    @staticmethod
    def create(kind: str, options: Mapping[str, Any] | None = None) -> Runtime:
        """The runtime registered under ``kind``.

        Raises:
            ValueError: ``Unknown runtime: {kind}``, with the known ones.
        """
        if kind not in _REGISTRY:
            raise ValueError(f"Unknown runtime: {kind!r} (`runtime` must be one of {RUNTIMES})")
        return _REGISTRY[kind](options)

    @classmethod
    @abstractmethod
    def drives(cls, backend: type[BackendTraits]) -> bool:
        """Whether this runtime can drive backends of the class ``backend`` (asked of its capabilities)."""

    def check_backend(self, backend: str) -> None:
        """Refuse a backend this runtime cannot drive.

        Raises:
            ValueError: Naming ``runtime``, the backend and the runtimes that backend supports; or
                ``Unknown backend`` for a kind that is not registered.
        """
        traits = backend_class(backend)
        if not self.drives(traits):
            ok = [k for k, cls in _REGISTRY.items() if cls.drives(traits)]
            raise ValueError(
                f"`runtime` {self.kind!r} cannot drive backend {backend!r}; backend {backend!r} supports "
                f"runtime {ok}"
            )

    def layer_runtime(self, device_type: str) -> Runtime:
        """The runtime a single conv of a layer table is timed in (default: this one)."""
        del device_type
        return self

    @abstractmethod
    def prepare(self, module: nn.Module, x: torch.Tensor) -> Prepared:
        """Make ``module`` (eval mode, on ``x``'s device, in its dtype) ready to run on ``x``.

        Raises:
            RuntimeError: If capture or compilation fails (the message names the runtime).
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options})"


def _sync(x: torch.Tensor) -> None:
    import torch

    if x.is_cuda:
        torch.cuda.synchronize(x.device)


class EagerRuntime(Runtime):
    """The module called from Python, one dispatch and launch per op (PyTorch's default)."""

    kind = "eager"

    @classmethod
    def drives(cls, backend: type[BackendTraits]) -> bool:
        return backend.runs_torch

    def prepare(self, module: nn.Module, x: torch.Tensor) -> Prepared:
        return Prepared(lambda: module(x))


class CudaGraphRuntime(Runtime):
    """The forward pass captured once in a CUDA graph and replayed.

    Options: ``graph_warmup`` (eager runs on a side stream before capture, where ``cudnn.benchmark`` picks
    its algorithms; default 3), ``graph_min_us`` (a captured graph holds enough copies of a short layer to
    last this long, so that a layer replay costs what it costs inside a network's graph; default 50).
    """

    kind = "cuda_graph"
    launch_free = True

    @classmethod
    def drives(cls, backend: type[BackendTraits]) -> bool:
        return backend.runs_torch and backend.is_gpu

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self.warmup = int(self.options.get("graph_warmup", 3))
        self.min_us = float(self.options.get("graph_min_us", 50.0))
        if self.warmup < 1:
            raise ValueError(f"`graph_warmup` must be an int >= 1, got {self.warmup}")
        if self.min_us < 0:
            raise ValueError(f"`graph_min_us` must be >= 0, got {self.min_us}")

    def prepare(self, module: nn.Module, x: torch.Tensor, copies: int | None = None) -> Prepared:
        import torch

        if not x.is_cuda:
            raise RuntimeError(f"runtime 'cuda_graph' needs a CUDA input, got one on {x.device}")
        t0 = time.perf_counter()
        try:
            with torch.inference_mode():
                side = torch.cuda.Stream(x.device)
                side.wait_stream(torch.cuda.current_stream(x.device))
                with torch.cuda.stream(side):
                    for _ in range(self.warmup):
                        module(x)
                torch.cuda.current_stream(x.device).wait_stream(side)
                n = copies if copies is not None else self._copies(module, x)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    for _ in range(n):
                        module(x)
            torch.cuda.synchronize(x.device)
        except Exception as err:
            raise RuntimeError(f"runtime 'cuda_graph': capture failed: {type(err).__name__}: {err}") from err
        keep = (module, x, graph)  # a replay reads the capture's addresses: they must outlive the graph

        def replay() -> None:
            keep[2].replay()

        return Prepared(replay, time.perf_counter() - t0, n)

    def _copies(self, module: nn.Module, x: torch.Tensor) -> int:
        """How many copies a graph needs to outlast ``graph_min_us`` (1 for anything that long already)."""
        import torch

        if self.min_us <= 0:
            return 1
        probe = self.prepare(module, x, copies=1)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        probe.fn()
        start.record()
        for _ in range(5):
            probe.fn()
        end.record()
        end.synchronize()
        one_us = 1000.0 * start.elapsed_time(end) / 5
        return int(min(64, max(1, -(-self.min_us // max(one_us, 1e-3)))))


class InductorRuntime(Runtime):
    """``torch.compile`` (TorchInductor) with static shapes, one compile per network.

    Options: ``compile_mode`` (``torch.compile``'s mode; default ``reduce-overhead`` on CUDA, which replays
    CUDA graphs, and ``default`` on the CPU), ``recompile_limit`` (dynamo's per-function limit while a
    network compiles, default 64: every pruned variant of one architecture is a recompile of the same
    ``forward``, and past the limit dynamo would run it eagerly without a word; here a hit raises).
    """

    kind = "inductor"
    launch_free = True
    export_format = "aoti"  # AOTInductor: the compiled network without Python
    compiles = True

    @classmethod
    def drives(cls, backend: type[BackendTraits]) -> bool:
        return backend.runs_torch

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        mode = self.options.get("compile_mode")
        if mode is not None and mode not in COMPILE_MODES:
            raise ValueError(f"`compile_mode` must be one of {COMPILE_MODES} or null, got {mode!r}")
        self.mode: str | None = mode
        self.limit = int(self.options.get("recompile_limit", 64))
        if self.limit < 1:
            raise ValueError(f"`recompile_limit` must be an int >= 1, got {self.limit}")

    def check_backend(self, backend: str) -> None:
        super().check_backend(backend)
        if self.mode in _GRAPH_MODES and not backend_class(backend).is_gpu:
            gpus = [k for k in REGISTRY if backend_class(k).is_gpu and self.drives(backend_class(k))]
            raise ValueError(
                f"`compile_mode` {self.mode!r} replays CUDA graphs and needs backend "
                f"{' or '.join(repr(k) for k in gpus)}; on backend {backend!r} use 'default' or "
                "'max-autotune-no-cudagraphs'"
            )

    def mode_for(self, device_type: str) -> str:
        """The compile mode used on ``device_type`` (``cuda`` or ``cpu``)."""
        if self.mode is not None:
            return self.mode
        return "reduce-overhead" if device_type == "cuda" else "default"

    def layer_runtime(self, device_type: str) -> Runtime:
        # Inductor calls cuDNN / oneDNN for a convolution (an extern kernel): time that kernel launch-free.
        return CudaGraphRuntime(self.options) if device_type == "cuda" else EagerRuntime(self.options)

    def prepare(self, module: nn.Module, x: torch.Tensor) -> Prepared:
        import torch
        import torch._dynamo

        mode = self.mode_for(x.device.type)
        patch = _dynamo_limits(self.limit)
        t0 = time.perf_counter()
        try:
            compiled = torch.compile(module, mode=mode, dynamic=False, fullgraph=True)
            with torch._dynamo.config.patch(**patch), torch.inference_mode():
                for _ in range(3):  # compile, then (reduce-overhead) warm up and record the graph
                    compiled(x)
            _sync(x)
        except Exception as err:
            raise RuntimeError(
                f"runtime 'inductor' (mode {mode!r}): compile failed: {type(err).__name__}: {err}"
            ) from err
        build_s = time.perf_counter() - t0
        log.info("inductor (%s): compiled %s in %.1f s", mode, type(module).__name__, build_s)
        return Prepared(lambda: compiled(x), build_s)


class NativeRuntime(Runtime):
    """The backend's own executor (TVM, ArmNN, an imported table): nothing for hwprune to prepare."""

    kind = "native"
    export_format = "onnx"  # the interchange format TVM's and ArmNN's importers read

    @classmethod
    def drives(cls, backend: type[BackendTraits]) -> bool:
        return not backend.runs_torch

    def prepare(self, module: nn.Module, x: torch.Tensor) -> Prepared:
        raise RuntimeError("runtime 'native' is driven by its backend, not by torch")


def _dynamo_limits(limit: int) -> dict[str, Any]:
    """``torch._dynamo.config.patch`` keys that raise the recompile limits and make a hit raise.

    The names moved between torch releases (``cache_size_limit`` became ``recompile_limit``); only the ones
    this torch has are set.
    """
    import torch._dynamo

    cfg = torch._dynamo.config
    out: dict[str, Any] = {}
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(cfg, name):
            out[name] = limit
            break
    for name in ("accumulated_recompile_limit", "accumulated_cache_size_limit"):
        if hasattr(cfg, name):
            out[name] = max(int(getattr(cfg, name)), 4 * limit)
            break
    if hasattr(cfg, "fail_on_recompile_limit_hit"):
        out["fail_on_recompile_limit_hit"] = True
    return out


_REGISTRY: dict[str, type[Runtime]] = {
    "eager": EagerRuntime,
    "cuda_graph": CudaGraphRuntime,
    "inductor": InductorRuntime,
    "native": NativeRuntime,
}


def default_runtime(backend: str) -> str:
    """The first registered runtime that can drive ``backend`` (``eager`` for torch, ``native`` otherwise).

    Raises:
        ValueError: If no runtime drives ``backend``, or it is not a registered backend.
    """
    traits = backend_class(backend)
    for kind, cls in _REGISTRY.items():
        if cls.drives(traits):
            return kind
    raise ValueError(f"`backend` {backend!r} has no runtime; known runtimes: {RUNTIMES}")


def runtime_for(target: Any) -> Runtime:
    """The :class:`Runtime` of a :class:`~hwprune.measure.targets.Target` (its ``runtime`` and options)."""
    return Runtime.create(target.runtime, target.options)


def launch_free_runtimes(backend: str) -> list[str]:
    """The registered runtimes that can drive ``backend`` without per-op dispatch (``[]`` if none).

    Example:
        >>> launch_free_runtimes("cudnn")
        ['cuda_graph', 'inductor']
    """
    traits = backend_class(backend)
    return [k for k, cls in _REGISTRY.items() if cls.launch_free and cls.drives(traits)]

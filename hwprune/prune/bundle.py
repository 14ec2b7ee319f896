"""The pruned model on disk: the ``pruned.pt`` bundle (history + weights), its export, and loading both.

A bundle holds what rebuilds the pruned model from the dense one: Torch-Pruning's history (replayed by
:func:`hwprune.prune.replay_history`), the input shape it was traced at, the ignored layers, the trained
weights and, optionally, a Hydra config of the dense model. It is written with ``torch.save`` of plain
containers and tensors and read with ``weights_only=True``. The callback and ``hwprune prune --out`` both
write it through :func:`write_bundle`; :func:`load_pruned` reads it (or a ``torch.export`` program).

Example:
    >>> write_bundle("pruned.pt", model, (1, 1, 28, 28), history)  # doctest: +SKIP
    >>> m = load_pruned("pruned.pt", build_model("small_resnet"))  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from torch import nn

from hwprune.prune.graph import PruneRecord, replay_history

log = logging.getLogger(__name__)

__all__ = [
    "BUNDLE_FORMAT",
    "EXPORT_FORMATS",
    "ExportCheck",
    "ExportFormat",
    "check_export",
    "export_for_target",
    "export_model",
    "load_artifact",
    "load_pruned",
    "write_bundle",
]

BUNDLE_FORMAT = "hwprune-pruned/1"
ExportFormat = Literal["torch_export", "aoti", "onnx"]
EXPORT_FORMATS: tuple[str, ...] = get_args(ExportFormat)
_SUFFIX = {"torch_export": ".pt2", "aoti": "_aoti.pt2", "onnx": ".onnx"}


def _plain(value: Any) -> Any:
    """Plain dicts and lists all the way down (a Hydra ``DictConfig`` would not load with weights_only)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_plain(v) for v in value]
    return value


def write_bundle(
    path: str | os.PathLike[str],
    model: nn.Module,
    input_shape: Sequence[int],
    history: Sequence[Sequence[PruneRecord]],
    *,
    ignored_layers: Sequence[str] = (),
    model_spec: Mapping[str, Any] | None = None,
) -> Path:
    """Write the ``pruned.pt`` bundle that :func:`load_pruned` reads.

    Args:
        path: The file to write.
        model: The pruned model (its weights are saved, on the CPU).
        input_shape: The input shape the history was traced at, including batch.
        history: One list of Torch-Pruning records per prune step.
        ignored_layers: The ignored layers the history was built with.
        model_spec: A Hydra config of the *dense* model (``_target_`` and arguments), so that
            :func:`load_pruned` rebuilds without code; ``None`` to require the dense model at load.

    Returns:
        ``path``, as a :class:`~pathlib.Path`.

    Example:
        >>> write_bundle("pruned.pt", model, (1, 1, 28, 28), callback.history)  # doctest: +SKIP
    """
    path = Path(path)
    bundle = {
        "format": BUNDLE_FORMAT,
        "input_shape": [int(s) for s in input_shape],
        "history": [[[str(n), bool(o), [int(i) for i in ix]] for n, o, ix in step] for step in history],
        "ignored_layers": [str(n) for n in ignored_layers],
        "model_spec": None if model_spec is None else _plain(model_spec),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    torch.save(bundle, path)
    return path


def export_model(
    model: nn.Module,
    input_shape: Sequence[int],
    out_dir: str | os.PathLike[str],
    fmt: ExportFormat,
    *,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
    max_batch: int = 4096,
) -> Path | None:
    """Export ``model`` for the runtime it will run in, with a dynamic batch dimension.

    ``torch_export`` writes ``pruned.pt2`` (a ``torch.export`` program, loaded by :func:`load_pruned`
    without the model's code); ``aoti`` compiles that program ahead of time with AOTInductor into
    ``pruned_aoti.pt2`` (what an ``inductor`` target deploys: ``torch._inductor.aoti_load_package``);
    ``onnx`` writes ``pruned.onnx`` (opset 17, for TensorRT on a Jetson or onnxruntime; needs the
    ``onnx`` package). Every format accepts any batch from 1 to ``max_batch``. The export is a convenience
    beside the bundle, which always rebuilds the model: a model that does not export logs a warning and
    returns None rather than failing the run.

    Args:
        model: The model (copied in eval mode; the caller's module is not changed).
        input_shape: The input shape, including batch (the trace uses batch ``max(2, batch)``, so that the
            batch dimension is not specialised).
        out_dir: The folder to write into.
        fmt: One of :data:`EXPORT_FORMATS`.
        device: Where to trace and compile (``cuda`` for a GPU target's AOTInductor package).
        dtype: The deployment dtype.
        channels_last: Trace in NHWC (the layout of a GPU fp16 target).
        max_batch: Largest batch the program accepts.

    Returns:
        The written file, or None if the export failed.

    Raises:
        ValueError: If ``fmt`` is not one of :data:`EXPORT_FORMATS` or ``max_batch`` < 2.

    Example:
        >>> export_model(model, (1, 1, 28, 28), "out", "torch_export")  # doctest: +SKIP
        PosixPath('out/pruned.pt2')
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"`fmt` must be any of {EXPORT_FORMATS}, got {fmt!r}")
    if int(max_batch) < 2:
        raise ValueError(f"`max_batch` must be an int >= 2, got {max_batch!r}")
    out = Path(out_dir) / f"pruned{_SUFFIX[fmt]}"
    m, x = _example(model, input_shape, device, dtype, channels_last)
    batch = torch.export.Dim("batch", min=1, max=int(max_batch))
    try:
        if fmt == "onnx":
            torch.onnx.export(
                m,
                (x,),
                str(out),
                dynamo=False,
                opset_version=17,
                input_names=["x"],
                output_names=["y"],
                dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
            )
        else:
            with torch.no_grad():
                ep = torch.export.export(m, (x,), dynamic_shapes=({0: batch},))
            if fmt == "torch_export":
                torch.export.save(ep, str(out))
            else:
                torch._inductor.aoti_compile_and_package(ep, package_path=str(out))
    except Exception as err:  # the bundle rebuilds the model; the export is optional
        log.warning("export as %s failed: %s: %s", fmt, type(err).__name__, err)
        return None
    return out


def export_for_target(
    model: nn.Module, input_shape: Sequence[int], out_dir: str | os.PathLike[str], target: Any
) -> Path | None:
    """:func:`export_model` in the format, device, dtype and layout of ``target``'s runtime.

    An ``inductor`` target gets an AOTInductor package, an eager or ``cuda_graph`` one a ``torch.export``
    program, TVM/ACL/imported targets ONNX (:attr:`hwprune.measure.runtimes.Runtime.export_format`).

    Example:
        >>> export_for_target(model, (1, 1, 28, 28), "out", "cpu_torch_inductor")  # doctest: +SKIP
        PosixPath('out/pruned_aoti.pt2')
    """
    from hwprune.measure.runtimes import runtime_for
    from hwprune.measure.targets import load_target

    target = load_target(target)
    gpu = target.backend_class().is_gpu and torch.cuda.is_available()
    dtype = torch.float16 if target.dtype == "float16" else torch.float32
    return export_model(
        model,
        input_shape,
        out_dir,
        runtime_for(target).export_format,  # type: ignore[arg-type]
        device="cuda" if gpu else "cpu",
        dtype=dtype if gpu else torch.float32,
        channels_last=bool(target.options.get("channels_last", False)),
    )


def _example(
    model: nn.Module, input_shape: Sequence[int], device: str, dtype: torch.dtype, channels_last: bool
) -> tuple[nn.Module, torch.Tensor]:
    m = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
    shape = [max(2, int(input_shape[0])), *[int(s) for s in input_shape[1:]]]
    x = torch.randn(*shape, device=device, dtype=dtype)
    if channels_last and x.dim() == 4:
        m = m.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    return m, x


@dataclass(frozen=True)
class ExportCheck:
    """What :func:`check_export` found: the artifact's outputs against the module's, and both timed.

    Attributes:
        path: The artifact.
        batches: The batch sizes compared (the traced one and another, for the dynamic batch).
        max_rel_err: Largest ``||artifact - module|| / ||module||`` over those batches.
        artifact_ms: Median ms per call of the loaded artifact (``None`` if it could not run here).
        module_ms: Median ms per call of the eager module, in the same rounds.
        error: Why the artifact could not be loaded or run, or ``None``.
    """

    path: str
    batches: tuple[int, ...]
    max_rel_err: float | None
    artifact_ms: float | None
    module_ms: float | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Loaded, ran and matched (relative error under 1e-2, fp16's reach; fp32 lands near 1e-6)."""
        return self.error is None and self.max_rel_err is not None and self.max_rel_err < 1e-2


def load_artifact(path: str | os.PathLike[str], device: str = "cpu") -> Any:
    """Load an exported artifact as a callable ``f(x) -> y``.

    Raises:
        ValueError: If the suffix is none of the export formats'.
        ImportError: If an ONNX file is loaded without ``onnxruntime`` installed.
    """
    path = Path(path)
    if path.name.endswith(_SUFFIX["aoti"]):
        return torch._inductor.aoti_load_package(str(path))
    if path.suffix == ".pt2":
        return torch.export.load(str(path)).module()
    if path.suffix == ".onnx":
        import onnxruntime as ort  # optional: pip install onnxruntime

        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else None
        sess = ort.InferenceSession(str(path), providers=providers)

        def run(x: torch.Tensor) -> torch.Tensor:
            (y,) = sess.run(None, {"x": x.detach().cpu().numpy()})
            return torch.from_numpy(y).to(x.device)

        return run
    raise ValueError(f"`path` must end in .pt2, {_SUFFIX['aoti']} or .onnx, got {path.name!r}")


def check_export(
    path: str | os.PathLike[str],
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
    rounds: int = 5,
) -> ExportCheck:
    """Load an exported artifact back, compare its outputs with the module's, and time both.

    Outputs are compared at the input's batch and at batch + 3 (the export has a dynamic batch). Timing
    alternates artifact and module calls in ``rounds`` rounds of
    :func:`hwprune.measure.evaluator.time_callable` samples; a failure to load or run becomes the result's
    ``error``, never an exception.

    Example:
        >>> check_export("out/pruned.pt2", model, (1, 1, 28, 28)).ok  # doctest: +SKIP
        True
    """
    import statistics

    from hwprune.measure.evaluator import EvaluatorConfig, time_callable

    m, _ = _example(model, input_shape, device, dtype, channels_last)
    b0 = int(input_shape[0])
    batches = (b0, b0 + 3)
    try:
        art = load_artifact(path, device)
        errs = []
        with torch.inference_mode():
            for b in batches:
                x = torch.randn(b, *[int(s) for s in input_shape[1:]], device=device, dtype=dtype)
                if channels_last and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                ref, got = m(x).float(), art(x).float()
                errs.append(float(torch.linalg.vector_norm(got - ref) / torch.linalg.vector_norm(ref)))
            x = torch.randn(*[int(s) for s in input_shape], device=device, dtype=dtype)
            sync = torch.cuda.synchronize if device.startswith("cuda") else None
            ev = EvaluatorConfig(warmup=2, number=1, repeat=3, min_repeat_ms=20.0)
            a_ms, m_ms = [], []
            for _ in range(max(1, int(rounds))):
                a_ms.append(time_callable(lambda: art(x), ev, sync=sync).median_ms)
                m_ms.append(time_callable(lambda: m(x), ev, sync=sync).median_ms)
    except Exception as err:  # noqa: BLE001 - a check reports; it never ends the run
        return ExportCheck(str(path), batches, None, None, None, f"{type(err).__name__}: {err}"[:500])
    return ExportCheck(str(path), batches, max(errs), statistics.median(a_ms), statistics.median(m_ms))


def load_pruned(path: str | os.PathLike[str], model: nn.Module | None = None) -> nn.Module:
    """Rebuild a pruned model written by :class:`hwprune.callbacks.HardwareAwarePruning` or ``hwprune prune``.

    Args:
        path: Either the ``pruned.pt2`` program (``torch.export``; loads without the model code) or the
            ``pruned.pt`` bundle (history + weights), which needs the dense model: pass ``model`` (a
            fresh instance of the dense architecture), or the bundle must hold a ``model_spec`` that
            Hydra can instantiate.
        model: A fresh dense model for a bundle (pruned in place), or None to build it from the bundle's
            ``model_spec``.

    Returns:
        The pruned module with its trained weights.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is not a hwprune bundle, or the dense model is needed and missing.

    Example:
        >>> m = load_pruned("outputs/run/pruned.pt", build_model("small_resnet"))  # doctest: +SKIP
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"`path` {path} does not exist")
    if path.name.endswith(_SUFFIX["aoti"]):
        return _Program(load_artifact(path))
    if path.suffix == ".pt2":
        return _Program(torch.export.load(str(path)).module())
    bundle = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"`path` {path} is not a hwprune pruned-model bundle ({BUNDLE_FORMAT})")
    if model is None:
        spec = bundle.get("model_spec")
        if not spec:
            raise ValueError("`model` is required: the bundle holds no `model_spec` to build the dense model")
        from hydra.utils import instantiate

        model = instantiate(spec)
    history = [[(str(n), bool(o), list(ix)) for n, o, ix in step] for step in bundle["history"]]
    replay_history(model, bundle["input_shape"], history, bundle.get("ignored_layers", ()))
    model.load_state_dict(bundle["state_dict"])
    return model


class _Program(nn.Module):
    """An exported program (or AOTInductor package) as a module a user can call, move to eval and count.

    The program was exported in eval mode (BatchNorm's running statistics, no dropout), so ``eval()`` and
    ``train()`` only set this wrapper's flag: the graph cannot switch modes (``torch.export``'s own module
    raises ``NotImplementedError`` for ``eval()``). Fine-tune the ``pruned.pt`` bundle instead.
    """

    def __init__(self, program: Any) -> None:
        super().__init__()
        self.program = program

    def train(self, mode: bool = True) -> _Program:
        self.training = bool(mode)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.program(x)

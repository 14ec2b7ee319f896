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
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from hwprune.prune.graph import PruneRecord, replay_history

log = logging.getLogger(__name__)

__all__ = ["BUNDLE_FORMAT", "EXPORT_FORMATS", "ExportFormat", "export_model", "load_pruned", "write_bundle"]

BUNDLE_FORMAT = "hwprune-pruned/1"
ExportFormat = Literal["torch_export", "onnx"]
EXPORT_FORMATS: tuple[str, ...] = ("torch_export", "onnx")
_SUFFIX = {"torch_export": ".pt2", "onnx": ".onnx"}


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
    model: nn.Module, input_shape: Sequence[int], out_dir: str | os.PathLike[str], fmt: ExportFormat
) -> Path | None:
    """Export ``model`` as ``pruned.pt2`` (``torch.export``) or ``pruned.onnx``, traced at ``input_shape``.

    The export is a convenience beside the bundle, which always rebuilds the model: a model that does not
    export logs a warning and returns None rather than failing the run.

    Args:
        model: The model (copied to the CPU in eval mode; the caller's module is not changed).
        input_shape: The input shape to trace at, including batch.
        out_dir: The folder to write into.
        fmt: ``"torch_export"`` or ``"onnx"``.

    Returns:
        The written file, or None if the export failed.

    Raises:
        ValueError: If ``fmt`` is not one of :data:`EXPORT_FORMATS`.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"`fmt` must be any of {EXPORT_FORMATS}, got {fmt!r}")
    out = Path(out_dir) / f"pruned{_SUFFIX[fmt]}"
    m = copy.deepcopy(model).cpu().eval()
    x = torch.zeros(*input_shape)
    try:
        if fmt == "torch_export":
            torch.export.save(torch.export.export(m, (x,)), str(out))
        else:
            torch.onnx.export(m, (x,), str(out))
    except Exception as err:  # the bundle rebuilds the model; the export is optional
        log.warning("export as %s failed: %s", fmt, err)
        return None
    return out


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
    if path.suffix == ".pt2":
        return torch.export.load(str(path)).module()
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

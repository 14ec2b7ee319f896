"""HardwareAwarePruning: prune a model to a latency budget on a target, during fine-tuning.

Each scheduled epoch start, rank 0 scores the channels, plans per-group friendly widths that meet the
step's budget (:mod:`hwprune.prune.planner`) and broadcasts the removals; every rank applies them through
Torch-Pruning's dependency graph, so all ranks hold the same architecture. The optimizers and schedulers
are rebuilt through the strategy and keep the momentum/Adam state of the kept channels. The pruning
history (Torch-Pruning's records, per step) is the callback's state. Lightning 2.6 restores the model's
weights before any callback sees a checkpoint, so :meth:`setup` wraps the LightningModule's
``on_load_checkpoint``: it replays the history on the still-dense network first, then Lightning loads the
weights and optimizer states into the pruned shapes. A plain ``Trainer.fit(ckpt_path=...)`` resumes.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn
from typing_extensions import override

from hwprune.callbacks._lightning import CALLBACK_BASES, rank_zero_only, use_package_of
from hwprune.callbacks._network import find_network
from hwprune.measure.space import check_input_shape
from hwprune.prune import (
    IMPORTANCE_KINDS,
    ImportanceKind,
    PruneRecord,
    apply_removals,
    build_groups,
    conv_widths,
    plan_pruning,
    predicted_latency,
    replay_history,
)
from hwprune.staircase import SLOWDOWN_TOLERANCE, Predictor, SnapMode

if TYPE_CHECKING:  # either package works at run time (see hwprune.callbacks._lightning)
    import pytorch_lightning as pl

log = logging.getLogger(__name__)

__all__ = ["HardwareAwarePruning", "PruneStepLog", "load_pruned", "remap_optimizer_state"]

PredictorLike = Predictor | str | os.PathLike[str] | Callable[[nn.Module, tuple[int, ...]], Predictor]
RollbackMode = Literal["stop", "shrink"]
ExportFormat = Literal["torch_export", "onnx"]
CheckAction = Literal["raise", "warn"]
_CHECK_ACTIONS: tuple[str, ...] = ("raise", "warn")
_SNAPS: tuple[str | None, ...] = ("up", "down", "nearest", None)
_ROLLBACKS: tuple[str | None, ...] = ("stop", "shrink", None)
_EXPORTS: tuple[str | None, ...] = ("torch_export", "onnx", None)
BUNDLE_FORMAT = "hwprune-pruned/1"


@dataclass(frozen=True)
class PruneStepLog:
    """One scheduled prune step, as reported.

    Attributes:
        step: Step number (0-based, counting attempts).
        epoch: Epoch at whose start it ran.
        budget_ms: The step's predicted-latency budget.
        latency_before_ms: Predicted latency before.
        latency_after_ms: Predicted latency after.
        feasible: Whether the budget was met.
        plan_seconds: Planning + pruning wall time.
        score_before: Monitored metric at the time of the step.
        outcome: ``"pruned"``, ``"no-op"`` or ``"rolled back"``.
        measured_before_ms: Measured latency on the target before the step (the closed loop), else None.
        measured_after_ms: Measured latency of the applied step's model; the closed loop never applies
            one above ``measured_before_ms``.
        closed_loop: The closed loop's rounds (predicted, measured, current ms, configs added).
        closed_loop_note: Why the step was accepted or refused.
    """

    step: int
    epoch: int
    budget_ms: float
    latency_before_ms: float
    latency_after_ms: float
    feasible: bool
    plan_seconds: float
    score_before: float | None
    outcome: str
    measured_before_ms: float | None = None
    measured_after_ms: float | None = None
    closed_loop: tuple[dict[str, Any], ...] = ()
    closed_loop_note: str = ""


_CODE_BASE = 4096  # channel codes stay exact in float32 while dim0 * 4096 + dim1 < 2**24


def _taggable(p: torch.Tensor) -> bool:
    return (
        p.dim() >= 1
        and p.shape[0] < _CODE_BASE
        and (p.dim() < 2 or p.shape[1] < _CODE_BASE)
        and (p.dtype in (torch.float32, torch.float64))
    )


def _tag_parameters(module: nn.Module) -> dict[str, torch.Tensor]:
    """Overwrite parameters with an index code (dim0 * 4096 + dim1); return their real values.

    After Torch-Pruning cuts the tagged tensors, the surviving codes say which channels were kept along
    dims 0 and 1, for every parameter at once, whatever group pruned it. Parameters too large to code
    exactly are left alone (their optimizer state is then not carried over).
    """
    saved: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, p in module.named_parameters():
            if not _taggable(p):
                continue
            saved[name] = p.detach().clone()
            code = torch.arange(p.shape[0], dtype=torch.float64).mul_(_CODE_BASE)
            code = code.view(-1, *([1] * (p.dim() - 1)))
            if p.dim() > 1:
                code = code + torch.arange(p.shape[1], dtype=torch.float64).view(
                    1, -1, *([1] * (p.dim() - 2))
                )
            p.copy_(code.expand_as(p).to(p.dtype))
    return saved


def _kept_indices(p: torch.Tensor) -> tuple[list[int], list[int] | None]:
    if p.dim() > 1:
        flat = p.detach().double().reshape(p.shape[0], p.shape[1], -1)[..., 0]
    else:
        flat = p.detach().double().view(-1, 1)
    rows = (flat[:, 0] // _CODE_BASE).round().long().tolist()
    cols = (flat[0, :] % _CODE_BASE).round().long().tolist() if p.dim() > 1 else None
    return rows, cols


def _select(t: torch.Tensor, rows: list[int], cols: list[int] | None) -> torch.Tensor:
    out = t.index_select(0, torch.tensor(rows, device=t.device))
    if cols is not None and t.dim() > 1:
        out = out.index_select(1, torch.tensor(cols, device=t.device))
    return out


def remap_optimizer_state(
    old_state: Mapping[str, Mapping[str, Any]],
    kept: Mapping[str, tuple[list[int], list[int] | None]],
    shapes_before: Mapping[str, torch.Size],
) -> dict[str, dict[str, Any]]:
    """Cut per-parameter optimizer state (momentum, Adam moments) down to the kept channels.

    Args:
        old_state: Parameter name -> its optimizer state before pruning.
        kept: Parameter name -> kept indices along dim 0 and dim 1 (``None`` for 1-D parameters).
        shapes_before: Parameter name -> shape before pruning.

    Returns:
        Parameter name -> remapped state; tensors shaped like the old parameter are index-selected,
        scalars (step counters) are copied.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, st in old_state.items():
        if name not in kept:
            continue
        rows, cols = kept[name]
        new: dict[str, Any] = {}
        for k, v in st.items():
            if isinstance(v, torch.Tensor) and v.shape == shapes_before[name]:
                new[k] = _select(v, rows, cols).clone()
            else:
                new[k] = v
        out[name] = new
    return out


def load_pruned(path: str | os.PathLike[str], model: nn.Module | None = None) -> nn.Module:
    """Rebuild a pruned model written by :class:`HardwareAwarePruning`.

    Args:
        path: Either the ``pruned.pt2`` program (``torch.export``; loads without the model code) or the
            ``pruned.pt`` bundle (history + weights), which needs the dense model: pass ``model`` (a
            fresh instance of the dense architecture), or the bundle must hold a ``model_spec`` that
            Hydra can instantiate.

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


def _plan_step(gm: Any, budget_ms: float, **kwargs: Any) -> Any:
    """One step's planner call, in the ``planner(grouped_model, budget)`` form the closed loop takes."""
    return plan_pruning(gm, budget_ms=budget_ms, **kwargs)


def _first_image_batch(batch: Any) -> torch.Tensor | None:
    """The first 4-D tensor in a batch (a tensor, or a tuple/list/dict of them, as Lightning passes)."""
    if isinstance(batch, torch.Tensor):
        return batch if batch.dim() == 4 else None
    items = batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, list | tuple) else ()
    for item in items:
        found = _first_image_batch(item)
        if found is not None:
            return found
    return None


class HardwareAwarePruning(*CALLBACK_BASES):  # type: ignore[misc]
    """Prune channels during fine-tuning until the model meets a latency budget on a target.

    Args:
        predictor: A fitted latency predictor (anything with ``predict(DataFrame) -> ms``, such as
            :class:`hwprune.predict.LatencyPredictor`), the path of a saved one, or a callable
            ``(model, input_shape) -> predictor`` called once in :meth:`setup` (e.g.
            :func:`hwprune.callbacks.ensure_predictor`, which measures and fits when no table is cached).
        input_shape: The model's input shape including batch, e.g. ``(1, 1, 28, 28)``.
        latency_ratio: Budget as a fraction in (0, 1) of the dense model's predicted latency.
        latency_ms: Budget as an absolute predicted latency in ms (> 0). Give exactly one of the two.
        start_epoch: Epoch (>= 0) at whose start the first step runs.
        prune_every_n_epochs: Epochs (>= 1) of fine-tuning between steps.
        num_steps: Steps (>= 1) from dense to the budget; the budget shrinks linearly.
        importance: ``"l1"``, ``"l2"``, ``"bn_scale"`` or ``"taylor"`` (uses the last batch's gradients).
        snap: How widths land on friendly counts: ``"up"``, ``"down"``, ``"nearest"`` or ``None``.
        monitor: Metric tracked for the accuracy check (``trainer.callback_metrics`` key, as the module
            logs it, e.g. ``"val_acc"`` for ``self.log("val_acc", ...)``).
        mode: ``"max"`` if a larger ``monitor`` is better, else ``"min"``.
        max_accuracy_drop: Largest allowed drop of ``monitor`` below the dense baseline (>= 0), or
            ``None`` to only log it.
        rollback: On a drop past ``max_accuracy_drop``: restore the last good architecture and weights,
            then ``"stop"`` pruning or ``"shrink"`` (halve the step and retry); ``None`` never rolls back.
        ignored_layers: Module names (relative to the pruned model) whose output channels stay.
        verify: Time the target end to end where this process can (this CPU, a local GPU): every prune
            step's candidate model is timed against the current one before it is applied (the closed
            loop, :func:`hwprune.prune.closed_loop.plan_and_verify`: a step that measures slower is
            refused, a missed budget re-plans), and at fit end the dense and pruned models are timed
            and reported beside their predictions. Timing uses the target's own settings (threads,
            dtype, TF32, ``cudnn.benchmark``).
        min_channel_ratio: No group goes below this fraction in (0, 1] of its dense width.
        model_attr: Attribute of the LightningModule that holds the network (``"net"``, ``"model"``,
            ``"backbone"`` ...), ``""`` for the module itself, or ``None`` (default) to find it in
            :meth:`setup`: the one child that holds the convs and all trainable parameters, else the
            module itself when it defines ``forward``.
        report_dir: Folder of the report and export (default: the trainer's log dir or root dir).
        export: ``"torch_export"`` (``pruned.pt2``), ``"onnx"`` (``pruned.onnx``) or ``None``; the
            ``pruned.pt`` bundle for :func:`load_pruned` is always written.
        model_spec: Optional Hydra config of the dense model, stored in the bundle so that
            :func:`load_pruned` can rebuild without code.
        target: The :class:`~hwprune.measure.Target` (or catalogue name) to time on; default: the
            predictor's ``target_``, at the run's batch.
        closed_loop_rounds: Re-plans (>= 0) of a step whose candidate misses its budget by more than 5%
            when timed; each first measures the configs the table lacks and refits the predictor.
        strict: As in ``EarlyStopping``: raise when ``monitor`` is not among the logged metrics at
            the end of validation; ``False`` warns once and prunes without the accuracy guard.
        schedule_check: ``"raise"`` (default) or ``"warn"`` when the schedule's last step would start
            at or after ``trainer.max_epochs`` (a step that never runs leaves the budget unmet).
        shape_check: ``"raise"`` (default) or ``"warn"`` when the first training batch's C, H, W differ
            from ``input_shape``'s (the plan would be for another input size).

    Raises:
        ValueError: If ``predictor`` is not a predictor, path or callable; ``input_shape`` is not 4
            positive ints; both or neither of ``latency_ratio``/``latency_ms`` is given;
            ``latency_ratio`` is not in (0, 1); ``latency_ms`` is not > 0; ``start_epoch`` < 0;
            ``prune_every_n_epochs`` < 1; ``num_steps`` < 1; ``importance``, ``snap``, ``mode``,
            ``rollback`` or ``export`` is not a valid choice; ``max_accuracy_drop`` < 0;
            ``rollback`` is set without ``max_accuracy_drop``; ``ignored_layers`` is not a sequence of
            names; ``min_channel_ratio`` is not in (0, 1]; ``monitor`` is empty; ``strict`` is not a
            bool; ``schedule_check`` or ``shape_check`` is not ``"raise"``/``"warn"``; ``model_attr`` is
            not a string or None; ``closed_loop_rounds`` < 0. In
            :meth:`setup`: if ``model_attr`` names no network (or, when None, the
            network is ambiguous: the message lists the candidates); if ``latency_ms`` is below the
            predicted latency of the smallest model the schedule may build; if the schedule's last step
            falls at or after ``trainer.max_epochs`` (``schedule_check="raise"``). On the first training
            batch: if its C, H, W differ from ``input_shape`` (``shape_check="raise"``).
        RuntimeError: At the end of validation, if ``monitor`` was not logged and ``strict`` is True (the
            message lists the logged keys).
        FileNotFoundError: If ``predictor`` is a path that does not exist.

    Example:
        >>> cb = HardwareAwarePruning("pred.skops", (1, 1, 28, 28), latency_ratio=0.5)  # doctest: +SKIP
        >>> pl.Trainer(max_epochs=6, callbacks=[cb]).fit(module, datamodule)  # doctest: +SKIP
    """

    def __init__(
        self,
        predictor: PredictorLike,
        input_shape: Sequence[int],
        latency_ratio: float | None = None,
        latency_ms: float | None = None,
        start_epoch: int = 1,
        prune_every_n_epochs: int = 1,
        num_steps: int = 3,
        importance: ImportanceKind = "l1",
        snap: SnapMode | None = "up",
        monitor: str = "val/acc",
        mode: Literal["max", "min"] = "max",
        max_accuracy_drop: float | None = None,
        rollback: RollbackMode | None = None,
        ignored_layers: Sequence[str] = (),
        verify: bool = True,
        min_channel_ratio: float = 0.25,
        model_attr: str | None = None,
        report_dir: str | os.PathLike[str] | None = None,
        export: ExportFormat | None = "torch_export",
        model_spec: Mapping[str, Any] | None = None,
        target: Any = None,
        closed_loop_rounds: int = 2,
        strict: bool = True,
        schedule_check: CheckAction = "raise",
        shape_check: CheckAction = "raise",
    ) -> None:
        super().__init__()
        if isinstance(predictor, str | os.PathLike):
            if not Path(predictor).exists():
                raise FileNotFoundError(f"`predictor` path {predictor} does not exist")
        elif not (hasattr(predictor, "predict") or callable(predictor)):
            raise ValueError(
                "`predictor` must be a fitted predictor (with .predict), the path of a saved one, or a "
                f"callable (model, input_shape) -> predictor, got {type(predictor).__name__}"
            )
        shape = check_input_shape(input_shape)
        if (latency_ratio is None) == (latency_ms is None):
            raise ValueError(
                "exactly one of `latency_ratio` and `latency_ms` must be given, "
                f"got latency_ratio={latency_ratio!r}, latency_ms={latency_ms!r}"
            )
        if latency_ratio is not None and not (
            isinstance(latency_ratio, int | float) and 0.0 < float(latency_ratio) < 1.0
        ):
            raise ValueError(f"`latency_ratio` must be a fraction in (0, 1), got {latency_ratio!r}")
        if latency_ms is not None and not (
            isinstance(latency_ms, int | float) and math.isfinite(latency_ms) and latency_ms > 0
        ):
            raise ValueError(f"`latency_ms` must be a latency in ms (> 0), got {latency_ms!r}")
        for name, value, low in (
            ("start_epoch", start_epoch, 0),
            ("prune_every_n_epochs", prune_every_n_epochs, 1),
            ("num_steps", num_steps, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"`{name}` must be an int >= {low}, got {value!r}")
        if importance not in IMPORTANCE_KINDS:
            raise ValueError(f"`importance` must be any of {IMPORTANCE_KINDS}, got {importance!r}")
        if snap not in _SNAPS:
            raise ValueError(f"`snap` must be any of {_SNAPS}, got {snap!r}")
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"`monitor` must be a non-empty metric name, got {monitor!r}")
        if mode not in ("max", "min"):
            raise ValueError(f"`mode` must be any of ('max', 'min'), got {mode!r}")
        if max_accuracy_drop is not None and not (
            isinstance(max_accuracy_drop, int | float) and max_accuracy_drop >= 0
        ):
            raise ValueError(f"`max_accuracy_drop` must be a number >= 0 or None, got {max_accuracy_drop!r}")
        if rollback not in _ROLLBACKS:
            raise ValueError(f"`rollback` must be any of {_ROLLBACKS}, got {rollback!r}")
        if rollback is not None and max_accuracy_drop is None:
            raise ValueError(f"`rollback={rollback!r}` needs `max_accuracy_drop` (the tolerance), got None")
        if isinstance(ignored_layers, str) or not all(isinstance(n, str) for n in ignored_layers):
            raise ValueError(f"`ignored_layers` must be a sequence of module names, got {ignored_layers!r}")
        if not isinstance(min_channel_ratio, int | float) or not 0.0 < min_channel_ratio <= 1.0:
            raise ValueError(f"`min_channel_ratio` must be a fraction in (0, 1], got {min_channel_ratio!r}")
        if export not in _EXPORTS:
            raise ValueError(f"`export` must be any of {_EXPORTS}, got {export!r}")
        if model_attr is not None and not isinstance(model_attr, str):
            raise ValueError(f"`model_attr` must be an attribute name, '' or None, got {model_attr!r}")
        if not isinstance(strict, bool):
            raise ValueError(f"`strict` must be a bool, got {strict!r}")
        for name, action in (("schedule_check", schedule_check), ("shape_check", shape_check)):
            if action not in _CHECK_ACTIONS:
                raise ValueError(f"`{name}` must be any of {_CHECK_ACTIONS}, got {action!r}")
        self.predictor_arg = predictor
        self.input_shape = shape
        self.latency_ratio = None if latency_ratio is None else float(latency_ratio)
        self.latency_ms = None if latency_ms is None else float(latency_ms)
        self.start_epoch = start_epoch
        self.prune_every_n_epochs = prune_every_n_epochs
        self.num_steps = num_steps
        self.importance = importance
        self.snap = snap
        self.monitor = monitor
        self.mode = mode
        self.max_accuracy_drop = None if max_accuracy_drop is None else float(max_accuracy_drop)
        self.rollback = rollback
        self.ignored_layers = tuple(ignored_layers)
        self.verify = bool(verify)
        self.min_channel_ratio = float(min_channel_ratio)
        self.model_attr = model_attr
        self.report_dir = report_dir
        self.export = export
        self.model_spec = None if model_spec is None else dict(model_spec)
        if (
            isinstance(closed_loop_rounds, bool)
            or not isinstance(closed_loop_rounds, int)
            or closed_loop_rounds < 0
        ):
            raise ValueError(f"`closed_loop_rounds` must be an int >= 0, got {closed_loop_rounds!r}")
        self.target_arg = target
        self.closed_loop_rounds = closed_loop_rounds
        self._target: Any = None  # resolved in setup (rank 0): the Target timed end to end, or None
        self.strict = strict
        self.schedule_check = schedule_check
        self.shape_check = shape_check
        self.predictor: Predictor | None = None
        # State (see state_dict): the schedule position and the architecture.
        self.history: list[list[PruneRecord]] = []
        self.fraction_done = 0.0
        self.step_fraction = 1.0 / num_steps
        self.steps_attempted = 0
        self.stopped = False
        self.pending_check = False
        self.baseline: float | None = None
        self.last_score: float | None = None
        self.dense_widths: dict[str, int] = {}
        self.dense_latency_ms: float | None = None
        self.good_history_len = 0
        self.good_state: dict[str, torch.Tensor] | None = None
        self.steps: list[PruneStepLog] = []
        self._template: nn.Module | None = None
        self._applied = 0  # history steps present in the live model
        self._budget_checked = False  # latency_ms checked against the smallest reachable model
        self._attr: str | None = None  # the network's attribute, resolved from model_attr in setup
        self._shape_checked = False
        self._monitor_warned = False

    # ------------------------------------------------------------------ state
    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(
            latency_ratio=self.latency_ratio, latency_ms=self.latency_ms, monitor=self.monitor
        )

    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "history": [[list(r) for r in step] for step in self.history],
            "fraction_done": self.fraction_done,
            "step_fraction": self.step_fraction,
            "steps_attempted": self.steps_attempted,
            "stopped": self.stopped,
            "pending_check": self.pending_check,
            "baseline": self.baseline,
            "last_score": self.last_score,
            "dense_widths": dict(self.dense_widths),
            "dense_latency_ms": self.dense_latency_ms,
            "good_history_len": self.good_history_len,
            "good_state": self.good_state,
            "steps": [asdict(s) for s in self.steps],
            "input_shape": list(self.input_shape),
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [
            [(str(n), bool(o), [int(i) for i in ix]) for n, o, ix in step] for step in state_dict["history"]
        ]
        self.fraction_done = float(state_dict["fraction_done"])
        self.step_fraction = float(state_dict["step_fraction"])
        self.steps_attempted = int(state_dict["steps_attempted"])
        self.stopped = bool(state_dict["stopped"])
        self.pending_check = bool(state_dict["pending_check"])
        self.baseline = state_dict["baseline"]
        self.last_score = state_dict["last_score"]
        self.dense_widths = {str(k): int(v) for k, v in state_dict["dense_widths"].items()}
        self.dense_latency_ms = state_dict["dense_latency_ms"]
        self.good_history_len = int(state_dict["good_history_len"])
        self.good_state = state_dict["good_state"]
        self.steps = [PruneStepLog(**s) for s in state_dict["steps"]]

    @override
    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # A copy outside the callback states, so tools (load_pruned-like) can rebuild from a plain ckpt.
        checkpoint["hwprune_architecture"] = {
            "input_shape": list(self.input_shape),
            "history": [[list(r) for r in s] for s in self.history],
            "ignored_layers": list(self.ignored_layers),
        }

    @override
    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        arch = checkpoint.get("hwprune_architecture")
        if arch is not None and len(arch["history"]) != self._applied:
            raise RuntimeError(
                f"checkpoint holds {len(arch['history'])} prune steps but the model has {self._applied}: "
                "the architecture must be restored in setup() (pass ckpt_path to Trainer.fit)"
            )

    # ------------------------------------------------------------------ hooks
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._run_setup(trainer, pl_module, stage)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._run_schedule(trainer, pl_module)

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if not self._shape_checked:
            self._run_shape_check(batch)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is not None:
            self.last_score = float(value)
        else:
            self._run_missing_monitor(trainer)

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._run_fit_end(trainer, pl_module)

    # ------------------------------------------------------------------ internals
    def _net(self, pl_module: pl.LightningModule) -> nn.Module:
        if self._attr is None:
            self._attr, _ = find_network(pl_module, self.model_attr)
        return getattr(pl_module, self._attr) if self._attr else pl_module

    def _set_net(self, pl_module: pl.LightningModule, net: nn.Module) -> None:
        if self._attr is None:
            self._attr, _ = find_network(pl_module, self.model_attr)
        if self._attr:
            setattr(pl_module, self._attr, net)
            return
        # The network is the module itself (a copy of it, rebuilt by a rollback): its shapes may differ
        # from the live module's, so swap the parts that hold weights instead of loading a state dict.
        for name, child in net.named_children():
            if any(True for _ in child.parameters()) or any(True for _ in child.buffers()):
                setattr(pl_module, name, child)
        for name, p in net.named_parameters(recurse=False):
            setattr(pl_module, name, p)

    def _copy_network(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> nn.Module:
        """A CPU copy of the dense network; a copy of the module itself leaves the Trainer behind."""
        net = self._net(pl_module)
        memo: dict[int, Any] = {id(trainer): None} if net is pl_module else {}
        return copy.deepcopy(net, memo).cpu()

    def _run_schedule_check(self, trainer: pl.Trainer) -> None:
        """The schedule's last step must start before ``max_epochs`` ends the run."""
        max_epochs = trainer.max_epochs
        if max_epochs is None or max_epochs < 0:
            return
        epochs = [self.start_epoch + i * self.prune_every_n_epochs for i in range(self.num_steps)]
        missed = [e for e in epochs if e >= max_epochs]
        if not missed:
            return
        msg = (
            f"`max_epochs` must be >= {epochs[-1] + 1} for the pruning schedule (num_steps={self.num_steps} "
            f"from start_epoch={self.start_epoch}, every {self.prune_every_n_epochs} epoch(s): steps at "
            f"epochs {epochs}), got {max_epochs}: {len(missed)} of {self.num_steps} step(s) would never "
            "run and the budget would not be met; raise `max_epochs`, lower `num_steps`, `start_epoch` or "
            "`prune_every_n_epochs`, or pass `schedule_check='warn'`"
        )
        if self.schedule_check == "raise" and not trainer.fast_dev_run:
            raise ValueError(msg)
        rank_zero_only(log.warning)("%s", msg)

    def _run_shape_check(self, batch: Any) -> None:
        """Compare the first training batch's C, H, W with ``input_shape`` (the plan's input)."""
        x = _first_image_batch(batch)
        if x is None:
            return
        self._shape_checked = True
        got = tuple(int(s) for s in x.shape[1:])
        want = tuple(self.input_shape[1:])
        if got == want:
            return
        msg = (
            f"`input_shape` must match the data's C, H, W: the plan is for {want} (input_shape="
            f"{tuple(self.input_shape)}) but the first training batch is {got} (batch shape "
            f"{tuple(x.shape)}); pass `input_shape=({self.input_shape[0]}, {', '.join(map(str, got))})`, or "
            "`shape_check='warn'` if the deployed input differs from the training input on purpose"
        )
        if self.shape_check == "raise":
            raise ValueError(msg)
        rank_zero_only(log.warning)("%s", msg)

    def _run_missing_monitor(self, trainer: pl.Trainer) -> None:
        """Follow ``EarlyStopping``: a ``monitor`` that is never logged must not pass silently."""
        logged = sorted(str(k) for k in trainer.callback_metrics)
        msg = f"`monitor` must be a metric the module logs, got {self.monitor!r}; logged metrics: {logged}"
        if self.strict:
            raise RuntimeError(
                f"{msg}. Pass monitor=<one of them>, or strict=False to prune without the accuracy check"
            )
        if not self._monitor_warned:
            self._monitor_warned = True
            rank_zero_only(log.warning)(
                "%s; strict=False: the accuracy check and rollback are off until it is logged", msg
            )

    def _resolve_predictor(self, net: nn.Module) -> Predictor:
        arg = self.predictor_arg
        if isinstance(arg, str | os.PathLike):
            from hwprune.predict import LatencyPredictor

            return LatencyPredictor.load(arg)
        if hasattr(arg, "predict"):
            # The closed loop teaches the predictor (calibration, refits): work on a copy, never on the
            # user's object.
            return copy.deepcopy(arg)  # type: ignore[return-value]
        return arg(net, self.input_shape)  # type: ignore[operator]

    def _run_setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        use_package_of(trainer)
        self._attr, net = find_network(pl_module, self.model_attr)
        if self._template is None:
            self._template = self._copy_network(trainer, pl_module)
        if not self.dense_widths:
            self.dense_widths = conv_widths(net)
        self._hook_checkpoint_restore(pl_module)
        if stage != "fit":
            return
        self._run_schedule_check(trainer)
        if self.predictor is None and trainer.is_global_zero:
            self.predictor = self._resolve_predictor(net)
        if self.predictor is not None and trainer.is_global_zero and self._target is None:
            self._target = self._resolve_target()
            self._warn_on_mismatch()
        if self.dense_latency_ms is None and self.predictor is not None:
            self.dense_latency_ms = predicted_latency(self.predictor, self._template, self.input_shape)
        if self.latency_ms is not None and not self._budget_checked:
            # Rank 0 holds the predictor; every rank must raise together, or DDP peers would hang.
            floor = self._smallest_latency_ms() if trainer.is_global_zero else None
            floor = trainer.strategy.broadcast(floor, src=0)
            self._budget_checked = True
            if floor is not None and self.latency_ms < floor * (1.0 - 1e-6):
                target = getattr(self.predictor, "target_", None) or "the predictor's target"
                raise ValueError(
                    "`latency_ms` must be reachable: the smallest model the schedule may build (every "
                    f"prunable group at `min_channel_ratio`={self.min_channel_ratio:g} of its width, on "
                    f"friendly counts) predicts {floor:.4g} ms on target {target!r}, "
                    f"got {self.latency_ms:g}; raise `latency_ms` to >= {floor:.4g}, lower "
                    "`min_channel_ratio`, or give a "
                    "`latency_ratio` instead"
                )

    def _smallest_latency_ms(self) -> float | None:
        """Predicted latency of the smallest model the planner may reach from the dense one (rank 0)."""
        if self.predictor is None or self._template is None:
            return None
        net = copy.deepcopy(self._template)
        gm = build_groups(net, self.input_shape, self.ignored_layers)
        plan = plan_pruning(
            gm,
            self.predictor,
            self.input_shape,
            1e-9,  # below any model: the planner goes as low as min_ratio and friendly counts allow
            importance="l1",  # which channels stay does not change latency; l1 needs no gradients
            snap=self.snap,
            dense_widths=self.dense_widths,
            min_channel_ratio=self.min_channel_ratio,
        )
        return float(plan.latency_after_ms)

    def _hook_checkpoint_restore(self, pl_module: pl.LightningModule) -> None:
        """Rebuild the pruned architecture before Lightning loads the checkpoint's weights.

        Lightning 2.x restores the model (``LightningModule.on_load_checkpoint``, then ``load_state_dict``)
        before any callback sees the checkpoint, and the checkpoint path is not known in ``setup``. So the
        module's ``on_load_checkpoint`` is wrapped: it first replays this callback's pruning history (from
        the checkpoint's callback state) on the still-dense network, then runs the original hook.
        """
        if getattr(pl_module, "_hwprune_restore_hooked", False):
            return
        original = pl_module.on_load_checkpoint

        def on_load_checkpoint(checkpoint: dict[str, Any]) -> None:
            self._restore_architecture(pl_module, checkpoint)
            original(checkpoint)

        pl_module.on_load_checkpoint = on_load_checkpoint  # type: ignore[method-assign]
        pl_module._hwprune_restore_hooked = True  # type: ignore[attr-defined]

    def _restore_architecture(self, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("callbacks", {}).get(self.state_key)
        if state is None or self._applied:
            return
        self.load_state_dict(state)
        replay_history(self._net(pl_module), self.input_shape, self.history, self.ignored_layers)
        self._applied = len(self.history)
        rank_zero_only(log.info)("resumed the pruned architecture: %d prune steps replayed", self._applied)

    def _resolve_target(self) -> Any:
        """The target to time end to end here, at the run's batch; None where it cannot be timed."""
        import dataclasses

        from hwprune.measure import can_time_models, load_target

        arg = self.target_arg or getattr(self.predictor, "target_", None)
        if arg is None or not self.verify:
            return None
        try:
            target = load_target(arg)
        except ValueError as err:
            rank_zero_only(log.info)(
                "target %r is not in the catalogue, so it is not timed here: %s", arg, err
            )
            return None
        if not can_time_models(target):
            rank_zero_only(log.info)(
                "target %s (backend %s) cannot be timed in this process: steps are planned open loop",
                target.name,
                target.backend,
            )
            return None
        return dataclasses.replace(target, batch=self.input_shape[0])

    def _warn_on_mismatch(self) -> None:
        """Warn when the predictor was fitted for another batch or another device than this run's."""
        import warnings

        batches = tuple(getattr(self.predictor, "batches_", ()) or ())
        if batches and self.input_shape[0] not in batches:
            warnings.warn(
                f"the predictor was fitted on batch {list(batches)}, but this run plans for batch "
                f"{self.input_shape[0]} (`input_shape`): latency does not scale linearly with the batch, "
                "so measure the layer space at the deployment batch",
                UserWarning,
                stacklevel=3,
            )
        fitted_on = str(getattr(self.predictor, "device_", "") or "")
        if self._target is not None and fitted_on and fitted_on != "unknown":
            from hwprune.measure import Backend

            backend = Backend.create(self._target.backend, self._target)
            try:
                backend.setup()
                here = backend.hardware_name()  # tables record the hardware's name, not the config's
            finally:
                backend.close()
            if here and here != fitted_on:
                warnings.warn(
                    f"the predictor was fitted on device {fitted_on!r}, but this run times target "
                    f"{self._target.name!r} on {here!r}: its stairs may fall elsewhere here; the closed loop "
                    "corrects the whole-model calibration, not the per-layer stairs",
                    UserWarning,
                    stacklevel=3,
                )

    def _time_pair(self, first: nn.Module, second: nn.Module) -> tuple[float, float] | None:
        """Both networks timed end to end on the target in interleaved rounds (ms), or None."""
        if self._target is None:
            return None
        from hwprune.measure import time_models

        # The backend sets the target's thread count for timing and hands training's back on close.
        a, b = time_models(self._target, [first, second], self.input_shape, rounds=5)
        return a.median_ms, b.median_ms

    def _target_ms(self) -> float:
        if self.latency_ms is not None:
            return self.latency_ms
        assert self.dense_latency_ms is not None  # set in setup on rank 0
        return self.latency_ratio * self.dense_latency_ms  # type: ignore[operator]

    def _is_prune_epoch(self, epoch: int) -> bool:
        return epoch >= self.start_epoch and (epoch - self.start_epoch) % self.prune_every_n_epochs == 0

    def _worse(self, score: float) -> float:
        """How far ``score`` is below the baseline (positive = worse)."""
        assert self.baseline is not None
        return self.baseline - score if self.mode == "max" else score - self.baseline

    def _run_schedule(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if not self._is_prune_epoch(epoch):
            return
        self._check_accuracy(trainer, pl_module)
        if self.stopped or self.fraction_done >= 1.0 - 1e-9:
            return
        if self.baseline is None and self.steps_attempted == 0:
            self.baseline = self.last_score
        if self.good_state is None or self.good_history_len != len(self.history):
            self._commit_good(pl_module)
        fraction = min(1.0, self.fraction_done + self.step_fraction)
        decision: dict[str, Any] | None = None
        if trainer.is_global_zero:
            decision = self._decide(trainer, pl_module, fraction)
        decision = trainer.strategy.broadcast(decision, src=0)
        self._apply(trainer, pl_module, decision, fraction, epoch)

    def _decide(self, trainer: pl.Trainer, pl_module: pl.LightningModule, fraction: float) -> dict[str, Any]:
        from functools import partial

        from hwprune.prune.closed_loop import plan_and_verify

        assert self.predictor is not None
        net = self._net(pl_module)
        t0 = time.perf_counter()
        # The closed loop recalibrates the predictor between steps: price the dense model with the
        # predictor as it is now, so a ratio budget stays a ratio of like with like.
        dense = predicted_latency(self.predictor, self._template, self.input_shape)
        self.dense_latency_ms = dense
        budget = dense - fraction * (dense - self._target_ms())
        planner = partial(
            _plan_step,
            predictor=self.predictor,
            input_shape=self.input_shape,
            importance=self.importance,
            snap=self.snap,
            dense_widths=self.dense_widths,
            min_channel_ratio=self.min_channel_ratio,
        )
        vp = plan_and_verify(
            net,
            self.predictor,
            self.input_shape,
            budget,
            planner,
            target=self._target,
            max_rounds=self.closed_loop_rounds,
            ignored_layers=self.ignored_layers,
        )
        if not vp.accepted:
            rank_zero_only(log.warning)("prune step refused by the closed loop: %s", vp.reason)
        elif vp.rounds:
            rank_zero_only(log.info)("prune step checked on %s: %s", self._target.name, vp.reason)
        plan = vp.plan
        return {
            "removals": plan.removals,
            "budget": budget,
            "before": plan.latency_before_ms,
            "after": plan.latency_after_ms,
            "feasible": plan.feasible,
            "plan_s": time.perf_counter() - t0,
            "measured_before": vp.current_ms,
            "measured_after": vp.measured_ms if plan.removals else vp.current_ms,
            "closed_loop": [asdict(r) for r in vp.rounds],
            "closed_loop_note": vp.reason,
        }

    def _apply(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        decision: dict[str, Any],
        fraction: float,
        epoch: int,
    ) -> None:
        t0 = time.perf_counter()
        net = self._net(pl_module)
        removals = decision["removals"]
        outcome = "no-op"
        if removals:
            shapes = {n: p.shape for n, p in pl_module.named_parameters()}
            old_params = dict(pl_module.named_parameters())
            opt_states = [
                {n: dict(opt.state[p]) for n, p in old_params.items() if p in opt.state}
                for opt in trainer.optimizers
            ]
            saved = _tag_parameters(pl_module)
            gm = build_groups(net, self.input_shape, self.ignored_layers)
            step_history = apply_removals(gm, removals)
            kept: dict[str, tuple[list[int], list[int] | None]] = {}
            with torch.no_grad():
                for n, p in pl_module.named_parameters():
                    if n not in saved:
                        continue
                    rows, cols = _kept_indices(p)
                    kept[n] = (rows, cols)
                    p.copy_(_select(saved[n], rows, cols))
                    p.grad = None
            self.history.append(step_history)
            self._applied = len(self.history)
            self._rebuild_optimizers(trainer, pl_module, opt_states, kept, shapes)
            outcome = "pruned"
        self.fraction_done = fraction
        self.steps_attempted += 1
        self.pending_check = bool(removals)
        after = decision["after"]
        entry = PruneStepLog(
            step=self.steps_attempted - 1,
            epoch=epoch,
            budget_ms=float(decision["budget"]),
            latency_before_ms=float(decision["before"]),
            latency_after_ms=float(after),
            feasible=bool(decision["feasible"]),
            plan_seconds=float(decision["plan_s"]) + time.perf_counter() - t0,
            score_before=self.last_score,
            outcome=outcome,
            measured_before_ms=decision.get("measured_before"),
            measured_after_ms=decision.get("measured_after"),
            closed_loop=tuple(decision.get("closed_loop", ())),
            closed_loop_note=str(decision.get("closed_loop_note", "")),
        )
        if entry.measured_after_ms is not None and entry.measured_before_ms is not None:
            if entry.measured_after_ms > entry.measured_before_ms:
                rank_zero_only(log.warning)(
                    "prune step %d measured slower on the target: %.4f -> %.4f ms",
                    entry.step,
                    entry.measured_before_ms,
                    entry.measured_after_ms,
                )
        self.steps.append(entry)
        self._log_step(trainer, pl_module, entry)

    def _rebuild_optimizers(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        opt_states: list[dict[str, dict[str, Any]]],
        kept: Mapping[str, tuple[list[int], list[int] | None]],
        shapes: Mapping[str, torch.Size],
    ) -> None:
        if trainer.state.fn != "fit" or not trainer.optimizers:
            return
        strategy = trainer.strategy
        if isinstance(strategy.model, nn.parallel.DistributedDataParallel):
            strategy.model = strategy.lightning_module
            strategy.configure_ddp()  # type: ignore[attr-defined]
        old_opts = list(trainer.optimizers)
        old_scheds = [cfg.scheduler.state_dict() for cfg in trainer.lr_scheduler_configs]
        strategy.setup_optimizers(trainer)
        params = dict(pl_module.named_parameters())
        for old, new, states in zip(old_opts, trainer.optimizers, opt_states, strict=False):
            if len(old.param_groups) == len(new.param_groups):
                for og, ng in zip(old.param_groups, new.param_groups, strict=True):
                    ng.update({k: v for k, v in og.items() if k != "params"})
            for name, st in remap_optimizer_state(states, kept, shapes).items():
                if name in params:
                    new.state[params[name]] = st
        for cfg, st in zip(trainer.lr_scheduler_configs, old_scheds, strict=False):
            cfg.scheduler.load_state_dict(st)

    def _log_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, entry: PruneStepLog) -> None:
        net = self._net(pl_module)
        params = sum(p.numel() for p in net.parameters())
        macs = self._macs(net)
        metrics = {
            "pruning/predicted_latency_ms": entry.latency_after_ms,
            "pruning/params": float(params),
            "pruning/macs": float(macs),
            "pruning/step": float(entry.step),
            "pruning/budget_ms": entry.budget_ms,
        }
        if entry.score_before is not None:
            metrics["pruning/accuracy"] = entry.score_before
        for name, m in net.named_modules():
            if isinstance(m, nn.Conv2d):
                metrics[f"pruning/channels/{name}"] = float(m.out_channels)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        rank_zero_only(log.info)(
            "prune step %d (epoch %d): predicted %.4f -> %.4f ms (budget %.4f), %d params, %.2f MMACs, %s",
            entry.step,
            entry.epoch,
            entry.latency_before_ms,
            entry.latency_after_ms,
            entry.budget_ms,
            params,
            macs / 1e6,
            entry.outcome,
        )

    def _macs(self, net: nn.Module) -> int:
        total = 0
        hooks = []

        def hook(m: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            nonlocal total
            if isinstance(m, nn.Conv2d):
                k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
                total += int(out.numel() * k)
            elif isinstance(m, nn.Linear):
                total += int(out.numel() * m.in_features)

        for m in net.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                hooks.append(m.register_forward_hook(hook))
        was = net.training
        try:
            net.eval()
            p = next(net.parameters())
            with torch.no_grad():
                net(torch.zeros(*self.input_shape, device=p.device, dtype=p.dtype))
        finally:
            for h in hooks:
                h.remove()
            net.train(was)
        return total

    def _commit_good(self, pl_module: pl.LightningModule) -> None:
        self.good_history_len = len(self.history)
        self.good_state = {k: v.detach().cpu().clone() for k, v in self._net(pl_module).state_dict().items()}
        self.pending_check = False

    def _check_accuracy(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """After a step's fine-tuning: keep it, or roll back past ``max_accuracy_drop``."""
        if not self.pending_check:
            return
        if self.baseline is None:
            self.baseline = self.last_score
        bad = False
        if (
            trainer.is_global_zero
            and self.max_accuracy_drop is not None
            and self.last_score is not None
            and self.baseline is not None
        ):
            drop = self._worse(self.last_score)
            bad = drop > self.max_accuracy_drop
            rank_zero_only(log.info)(
                "accuracy check: %s=%.4f, baseline %.4f, drop %.4f (max %.4f)",
                self.monitor,
                self.last_score,
                self.baseline,
                drop,
                self.max_accuracy_drop,
            )
        bad = bool(trainer.strategy.broadcast(bad, src=0))
        if not bad or self.rollback is None:
            self._commit_good(pl_module)
            return
        self._rollback(trainer, pl_module)

    def _rollback(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self._template is not None and self.good_state is not None
        device = next(pl_module.parameters()).device
        net = copy.deepcopy(self._template)
        good = self.history[: self.good_history_len]
        replay_history(net, self.input_shape, good, self.ignored_layers)
        net.load_state_dict(self.good_state)
        net.to(device)
        undone = len(self.history) - self.good_history_len
        self.history = good
        self._applied = len(good)
        self._set_net(pl_module, net)
        if self.steps:
            last = self.steps[-1]
            self.steps[-1] = PruneStepLog(**{**asdict(last), "outcome": "rolled back"})
        self.fraction_done = max(0.0, self.fraction_done - self.step_fraction)
        if self.rollback == "stop":
            self.stopped = True
        else:
            self.step_fraction /= 2
            if self.step_fraction < 1.0 / (8 * self.num_steps):
                self.stopped = True
        self.pending_check = False
        if trainer.optimizers:
            strategy = trainer.strategy
            if isinstance(strategy.model, nn.parallel.DistributedDataParallel):
                strategy.model = strategy.lightning_module
                strategy.configure_ddp()  # type: ignore[attr-defined]
            scheds = [cfg.scheduler.state_dict() for cfg in trainer.lr_scheduler_configs]
            strategy.setup_optimizers(trainer)
            for cfg, st in zip(trainer.lr_scheduler_configs, scheds, strict=False):
                cfg.scheduler.load_state_dict(st)
        rank_zero_only(log.warning)(
            "%s fell more than %.4f below the baseline: rolled back %d step(s); %s",
            self.monitor,
            self.max_accuracy_drop,
            undone,
            "pruning stops" if self.stopped else f"next step is {self.step_fraction:.3f} of the way",
        )

    def _run_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check_accuracy(trainer, pl_module)
        if not trainer.is_global_zero:
            return
        out_dir = Path(self.report_dir or trainer.log_dir or trainer.default_root_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        report = self._report(pl_module)
        report["budget"] = self._budget_status(report)
        (out_dir / "pruning_report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        md = self._markdown(report)
        (out_dir / "pruning_report.md").write_text(md, encoding="utf-8")
        print(md)
        self._export(pl_module, out_dir)
        b = report["budget"]
        (log.info if b["met"] else log.warning)("hwprune: %s", b["summary"])

    def _budget_status(self, report: Mapping[str, Any]) -> dict[str, Any]:
        """Whether the pruned model's predicted latency meets the budget, in words and as data."""
        budget, after = report.get("budget_ms"), report["predicted_ms"]["after"]
        ran = sum(s.outcome == "pruned" for s in self.steps)
        if budget is None or after is None:
            return {"met": False, "summary": "budget NOT met: no predicted latency (no predictor)"}
        steps = f"({ran} of {self.num_steps} scheduled prune step(s) pruned, {len(self.steps)} attempted)"
        measured = (report.get("measured_ms") or {}).get("after_ms")
        if measured is not None:
            # Timed on the target: judged as the closed loop judges a step, measured within 5% of budget.
            met = bool(measured <= budget * (1.0 + SLOWDOWN_TOLERANCE))
            summary = (
                f"budget {'met' if met else 'NOT met'}: measured {measured:.4f} ms "
                f"{'<=' if met else '>'} budget {budget:.4f} ms + {SLOWDOWN_TOLERANCE:.0%} on the target "
                f"(predicted {after:.4f} ms) {steps}"
            )
            return {"met": met, "summary": summary}
        met = bool(after <= budget * (1.0 + 1e-6))
        summary = (
            f"budget {'met' if met else 'NOT met'}: predicted {after:.4f} ms "
            f"{'<=' if met else '>'} budget {budget:.4f} ms {steps}"
        )
        return {"met": met, "summary": summary}

    def _report(self, pl_module: pl.LightningModule) -> dict[str, Any]:
        net = self._net(pl_module)
        assert self._template is not None
        pred_before = pred_after = None
        if self.predictor is not None:
            pred_before = predicted_latency(self.predictor, self._template, self.input_shape)
            pred_after = predicted_latency(self.predictor, net, self.input_shape)
        measured: dict[str, Any] = {"before_ms": None, "after_ms": None, "note": "verify=False"}
        if self.verify:
            pair = self._time_pair(self._template, net)
            if pair is not None:
                assert self._target is not None
                opts = ", ".join(f"{k}={v}" for k, v in sorted(self._target.options.items()))
                measured = {
                    "before_ms": pair[0],
                    "after_ms": pair[1],
                    "note": f"measured on target {self._target.name} ({self._target.backend}, "
                    f"{self._target.dtype}, batch {self.input_shape[0]}, {opts}), torch {torch.__version__}, "
                    "median of 5 interleaved rounds",
                }
            else:
                name = getattr(self.predictor, "target_", "the target")
                measured["note"] = f"target {name!r} cannot be timed in this process"
        dense = {
            n: (int(m.in_channels), int(m.out_channels))
            for n, m in self._template.named_modules()
            if isinstance(m, nn.Conv2d)
        }
        now = {
            n: (int(m.in_channels), int(m.out_channels))
            for n, m in net.named_modules()
            if isinstance(m, nn.Conv2d)
        }
        return {
            "target": getattr(self.predictor, "target_", None),
            "input_shape": list(self.input_shape),
            "budget_ms": self._target_ms() if self.dense_latency_ms is not None or self.latency_ms else None,
            "predicted_ms": {"before": pred_before, "after": pred_after},
            "measured_ms": measured,
            "accuracy": {"metric": self.monitor, "before": self.baseline, "after": self.last_score},
            "params": {
                "before": sum(p.numel() for p in self._template.parameters()),
                "after": sum(p.numel() for p in net.parameters()),
            },
            "layers": [
                {
                    "name": n,
                    "in_before": dense[n][0],
                    "out_before": dense[n][1],
                    "in_after": now.get(n, dense[n])[0],
                    "out_after": now.get(n, dense[n])[1],
                }
                for n in dense
            ],
            "steps": [asdict(s) for s in self.steps],
        }

    @staticmethod
    def _markdown(r: dict[str, Any]) -> str:
        def f(v: Any) -> str:
            return "n/a" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))

        lines = [
            "# hwprune pruning report",
            "",
            f"target: {r['target']}, input {r['input_shape']}, budget {f(r['budget_ms'])} ms",
            "",
            *([f"**{r['budget']['summary']}**", ""] if "budget" in r else []),
            "| | before | after |",
            "|---|---|---|",
            f"| predicted latency (ms) | {f(r['predicted_ms']['before'])} | "
            f"{f(r['predicted_ms']['after'])} |",
            f"| measured latency (ms) | {f(r['measured_ms']['before_ms'])} | "
            f"{f(r['measured_ms']['after_ms'])} |",
            f"| {r['accuracy']['metric']} | {f(r['accuracy']['before'])} | {f(r['accuracy']['after'])} |",
            f"| parameters | {r['params']['before']} | {r['params']['after']} |",
            "",
            f"measured: {r['measured_ms']['note']}",
            "",
            "| layer | in before | in after | out before | out after |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {x['name']} | {x['in_before']} | {x['in_after']} | {x['out_before']} | {x['out_after']} |"
            for x in r["layers"]
        ]
        lines += [
            "",
            "| step | epoch | budget ms | predicted before | after | measured before | after | plan s "
            "| outcome |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {s['step']} | {s['epoch']} | {s['budget_ms']:.4f} | {s['latency_before_ms']:.4f} | "
            f"{s['latency_after_ms']:.4f} | {f(s.get('measured_before_ms'))} | "
            f"{f(s.get('measured_after_ms'))} | "
            f"{s['plan_seconds']:.2f} | {s['outcome']} |"
            for s in r["steps"]
        ]
        return "\n".join(lines) + "\n"

    def _export(self, pl_module: pl.LightningModule, out_dir: Path) -> None:
        net = self._net(pl_module)
        bundle = {
            "format": BUNDLE_FORMAT,
            "input_shape": list(self.input_shape),
            "history": [[list(r) for r in s] for s in self.history],
            "ignored_layers": list(self.ignored_layers),
            "model_spec": self.model_spec,
            "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        }
        torch.save(bundle, out_dir / "pruned.pt")
        if self.export is None:
            return
        m = copy.deepcopy(net).cpu().eval()
        x = torch.zeros(*self.input_shape)
        try:
            if self.export == "torch_export":
                torch.export.save(torch.export.export(m, (x,)), str(out_dir / "pruned.pt2"))
            else:
                torch.onnx.export(m, (x,), str(out_dir / "pruned.onnx"))
        except Exception as err:  # export is a convenience; the .pt bundle above always rebuilds the model
            log.warning("export as %s failed: %s", self.export, err)

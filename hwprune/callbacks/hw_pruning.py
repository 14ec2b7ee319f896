"""HardwareAwarePruning: prune a model to a latency budget on a target, during fine-tuning.

Each scheduled epoch start, rank 0 plans the step that moves the model its share of the way to the budget
and checks it on every target where it can (:func:`hwprune.verify.decide`, the one decision path for any
number of targets); the decision is
broadcast and every rank applies it through Torch-Pruning's dependency graph
(:func:`~hwprune.callbacks._step.apply_step`), so all ranks hold the same architecture, and the rebuilt
optimizers keep the kept channels' momentum. After a step's fine-tuning, a monitored metric that fell too
far rolls the architecture and weights back to the last good step.

The pruning history (Torch-Pruning's records, per step) is the callback's state. On
``Trainer.fit(ckpt_path=...)`` the history is replayed on the dense network just before Lightning loads the
checkpoint's weights (:func:`hwprune.callbacks._trainer.restore_before_weights`). The report is written by
:mod:`hwprune.callbacks.report`, the bundle and export by :mod:`hwprune.prune.bundle`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle
from typing_extensions import override

from hwprune.callbacks import _checks, _resolve
from hwprune.callbacks._lightning import CALLBACK_BASES, console_info, rank_zero_only, use_package_of
from hwprune.callbacks._network import copy_network, find_network, rebuild_network, set_network
from hwprune.callbacks._step import apply_step
from hwprune.callbacks._trainer import rebuild_optimizers, restore_before_weights
from hwprune.callbacks.report import fit_report, log_step, write_report
from hwprune.contract import check_input_shape
from hwprune.options import SnapMode
from hwprune.prune import DEFAULT_MIN_CHANNEL_RATIO, PruneRecord, conv_widths, replay_history
from hwprune.prune.bundle import ExportFormat, export_model, write_bundle
from hwprune.prune.importance import ImportanceLike
from hwprune.staircase import Predictor
from hwprune.verify.budget import Budget
from hwprune.verify.report import PruneStepLog
from hwprune.verify.sides import TargetSide, dense_latencies
from hwprune.verify.step import PruneDecision, decide

if TYPE_CHECKING:  # either package works at run time (see hwprune.callbacks._lightning)
    import pytorch_lightning as pl

log = logging.getLogger(__name__)

__all__ = ["HardwareAwarePruning"]

PredictorLike = Predictor | str | os.PathLike[str] | Callable[[nn.Module, tuple[int, ...]], Predictor]
RollbackMode = Literal["stop", "shrink"]
CheckAction = Literal["raise", "warn"]


class HardwareAwarePruning(*CALLBACK_BASES):  # type: ignore[misc]
    """Prune channels during fine-tuning until the model meets a latency budget on a target.

    Args:
        predictor: A fitted latency predictor (anything with ``predict(DataFrame) -> ms``, such as
            :class:`hwprune.predict.LatencyPredictor`), the path of a saved one, or a callable
            ``(model, input_shape) -> predictor`` called once in :meth:`setup` (e.g.
            :func:`hwprune.callbacks.ensure_predictor`, which measures and fits when no table is cached).
            Several targets: a mapping target name -> one of those. One architecture is then planned that
            meets every target's budget, each target priced at its own batch (a factory's target batch, or
            a predictor's only fitted batch, else ``input_shape``'s) by
            :func:`hwprune.prune.multi_target.plan_for_targets`; the report gives every target's predicted
            and (where it can be timed here) measured latency, and where a target gave way. The first
            target is the primary one, whose figures fill the single-target fields of logs and report.
        input_shape: The model's input shape including batch, e.g. ``(1, 1, 28, 28)``.
        latency_ratio: Budget as a fraction in (0, 1) of the dense model's *whole-model* latency on the
            target, whatever the predictor's source. Where the target can be timed here, the dense model
            is timed in ``setup``, a predictor without whole-model terms is calibrated on it first
            (:func:`hwprune.verify.sides.calibrate_for_run`), and each step and the final check
            are judged on their measured share of dense, timed in the same rounds
            (:mod:`hwprune.verify.stopwatch`). Elsewhere it is a share of the predicted latency, and
            ``setup`` logs which (the whole model when the predictor is calibrated, else the conv sum).
        latency_ms: Budget as an absolute predicted latency in ms (> 0). Give exactly one of the two.
            With several targets, either may be one value for all or a mapping target name -> value.
        start_epoch: Epoch (>= 0) at whose start the first step runs.
        prune_every_n_epochs: Epochs (>= 1) of fine-tuning between steps.
        num_steps: Steps (>= 1) from dense to the budget; the budget shrinks linearly.
        importance: ``"l1"``, ``"l2"``, ``"bn_scale"`` or ``"taylor"`` (uses the last batch's gradients),
            a Torch-Pruning ``Importance`` (e.g. ``tp.importance.GroupMagnitudeImportance(p=2)``) or any
            callable group -> per-channel scores.
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
            loop, :func:`hwprune.verify.loop.verify_plan`: a step that measures slower is
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
            ``pruned.pt`` bundle for :func:`~hwprune.prune.bundle.load_pruned` is always written.
        model_spec: Optional Hydra config of the dense model, stored in the bundle so that
            :func:`~hwprune.prune.bundle.load_pruned` can rebuild without code.
        target: The :class:`~hwprune.measure.Target` (or catalogue name) to time on; default: the
            predictor's ``target_``, at the run's batch. With several targets: None, or a mapping target
            name -> Target, catalogue name, None (the predictor's ``target_``) or False (never timed here).
        closed_loop_rounds: Re-plans (>= 0) of a step whose candidate misses its budget by more than 5%
            when timed; each first measures the configs the table lacks and refits the predictor.
        strict: As in ``EarlyStopping``: raise when ``monitor`` is not among the logged metrics at
            the end of validation; ``False`` warns once and prunes without the accuracy guard.
        schedule_check: ``"raise"`` (default) or ``"warn"`` when the schedule's last step would start
            at or after ``trainer.max_epochs`` (a step that never runs leaves the budget unmet).
        shape_check: ``"raise"`` (default) or ``"warn"`` when the first training batch's C, H, W differ
            from ``input_shape``'s (the plan would be for another input size).
        coverage_check: ``"raise"`` (default) or ``"warn"`` when more than
            :data:`~hwprune.prune.coverage.UNMEASURED_SHARE_LIMIT` of the dense model's predicted latency
            lies on conv shapes (kernel, stride, resolution, groups) the predictor's table never measured
            (its ``layer_shapes_``); any such conv is named in a warning with its share either way.

    Raises:
        ValueError: If ``predictor`` is not a predictor, path or callable; ``input_shape`` is not 4
            positive ints; both or neither of ``latency_ratio``/``latency_ms`` is given;
            ``latency_ratio`` is not in (0, 1); ``latency_ms`` is not > 0; ``start_epoch`` < 0;
            ``prune_every_n_epochs`` < 1; ``num_steps`` < 1; ``importance``, ``snap``, ``mode``,
            ``rollback`` or ``export`` is not a valid choice; ``max_accuracy_drop`` < 0;
            ``rollback`` is set without ``max_accuracy_drop``; ``ignored_layers`` is not a sequence of
            names; ``min_channel_ratio`` is not in (0, 1]; ``monitor`` is empty; ``strict`` is not a
            bool; ``schedule_check``, ``shape_check`` or ``coverage_check`` is not ``"raise"``/``"warn"``;
            ``model_attr`` is not a string or None; ``closed_loop_rounds`` < 0. In
            :meth:`setup`: if the predictor never measured the shapes of more than
            :data:`~hwprune.prune.coverage.UNMEASURED_SHARE_LIMIT` of the model's predicted latency
            (``coverage_check="raise"``); if ``model_attr`` names no network (or, when None, the
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
        importance: ImportanceLike = "l1",
        snap: SnapMode | None = "up",
        monitor: str = "val/acc",
        mode: Literal["max", "min"] = "max",
        max_accuracy_drop: float | None = None,
        rollback: RollbackMode | None = None,
        ignored_layers: Sequence[str] = (),
        verify: bool = True,
        min_channel_ratio: float = DEFAULT_MIN_CHANNEL_RATIO,
        model_attr: str | None = None,
        report_dir: str | os.PathLike[str] | None = None,
        export: ExportFormat | None = "torch_export",
        model_spec: Mapping[str, Any] | None = None,
        target: Any = None,
        closed_loop_rounds: int = 2,
        strict: bool = True,
        schedule_check: CheckAction = "raise",
        shape_check: CheckAction = "raise",
        coverage_check: CheckAction = "raise",
    ) -> None:
        # long: one documented keyword per user setting, each validated and stored once
        super().__init__()
        _checks.check_arguments(**{k: v for k, v in locals().items() if k in _checks.ARGUMENTS})
        self.predictor_arg = predictor
        self.input_shape = check_input_shape(input_shape)
        self.budget = Budget.parse(latency_ratio, latency_ms)  # one value, or per target (checked above)
        self.latency_ratio, self.latency_ms = self.budget.one()  # single floats; None when per target
        self.latency_ms_given = latency_ms is not None
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
        self.target_arg = target
        self.closed_loop_rounds = closed_loop_rounds
        self.strict = strict
        self.schedule_check = schedule_check
        self.shape_check = shape_check
        self.coverage_check = coverage_check
        self.predictor: Predictor | None = None  # the primary (first) target's
        self.sides: list[TargetSide] | None = None  # every target, the primary first (rank 0, in setup)
        self.dense_by_target: dict[str, float] = {}  # each target's predicted dense latency
        self._refusal: str | None = None  # setup's coverage refusal (rank 0)
        self._target: Any = None  # resolved in setup (rank 0): the Target timed end to end, or None
        self.dense_measured_ms: float | None = None  # the dense model timed on the target in setup
        self.budget_basis = ""  # what the budget is a share of, in words (setup, rank 0)
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
        # Run-time links, not state.
        self._template: nn.Module | None = None  # a CPU copy of the dense network
        self._applied = 0  # history steps present in the live model
        self._budget_checked = False  # latency_ms checked against the smallest reachable model
        self._attr: str | None = None  # the network's attribute, resolved from model_attr in setup
        self._shape_checked = False
        self._monitor_warned = False
        self._restore_hook: RemovableHandle | None = None

    # ------------------------------------------------------------------ state
    @property
    @override
    def state_key(self) -> str:
        # model_attr joins the key only when given, so that two callbacks can prune two networks of one
        # module (teacher/student) and checkpoints written without it keep their key.
        extra = {} if self.model_attr is None else {"model_attr": self.model_attr}
        return self._generate_state_key(
            latency_ratio=self.latency_ratio, latency_ms=self.latency_ms, monitor=self.monitor, **extra
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
            "dense_by_target": dict(self.dense_by_target),
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
        self.dense_by_target = {str(k): float(v) for k, v in state_dict.get("dense_by_target", {}).items()}
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
        state = checkpoint.get("callbacks", {}).get(self.state_key)
        if state is not None and len(state["history"]) != self._applied:
            raise RuntimeError(
                f"checkpoint holds {len(state['history'])} prune steps but the model has {self._applied}: "
                "the architecture must be restored before the weights load (pass ckpt_path to Trainer.fit)"
            )

    def restore_architecture(self, pl_module: nn.Module, checkpoint: Mapping[str, Any]) -> None:
        """Replay this callback's pruning history from ``checkpoint`` on the still-dense network.

        Lightning calls it (through :func:`~hwprune.callbacks._trainer.restore_before_weights`) just before
        it loads the checkpoint's weights; it does nothing when the checkpoint holds no state of this
        callback or the history is already applied.

        Args:
            pl_module: The LightningModule being restored.
            checkpoint: The Lightning checkpoint being restored.
        """
        state = checkpoint.get("callbacks", {}).get(self.state_key)
        if state is None or self._applied:
            return
        self.load_state_dict(state)
        replay_history(self._net(pl_module), self.input_shape, self.history, self.ignored_layers)
        self._applied = len(self.history)
        rank_zero_only(log.info)("resumed the pruned architecture: %d prune steps replayed", self._applied)

    # ------------------------------------------------------------------ hooks
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._run_setup(trainer, pl_module, stage)

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._run_teardown()

    def _run_teardown(self) -> None:
        if self._restore_hook is not None:
            self._restore_hook.remove()
            self._restore_hook = None

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._run_schedule(trainer, pl_module)

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if not self._shape_checked:
            self._shape_checked = _checks.check_batch_shape(batch, self.input_shape, self.shape_check)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is not None:
            self.last_score = float(value)
        else:
            logged = list(trainer.callback_metrics)
            self._monitor_warned = _checks.missing_monitor(
                self.monitor, logged, self.strict, self._monitor_warned
            )

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._run_fit_end(trainer, pl_module)

    # ------------------------------------------------------------------ setup
    def _net(self, pl_module: pl.LightningModule) -> nn.Module:
        if self._attr is None:
            self._attr, _ = find_network(pl_module, self.model_attr)
        return getattr(pl_module, self._attr) if self._attr else pl_module

    def _run_setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        use_package_of(trainer)
        self._attr, net = find_network(pl_module, self.model_attr)
        if self._template is None:  # copied before the restore hook exists: a copy would carry it
            self._template = copy_network(pl_module, self._attr, leave_behind=[trainer])
        if not self.dense_widths:
            self.dense_widths = conv_widths(net)
        self._run_teardown()  # a fit that raised skips teardown: a hook of its Trainer may be left
        self._restore_hook = restore_before_weights(trainer, pl_module, self.restore_architecture)
        if stage != "fit":
            return
        _checks.check_schedule(
            trainer.max_epochs,
            self.start_epoch,
            self.prune_every_n_epochs,
            self.num_steps,
            self.schedule_check,
            trainer.fast_dev_run,
        )
        if trainer.is_global_zero and self.sides is None:
            self._resolve_sides(trainer, net)
        # Rank 0 decides; every rank must raise together, or DDP peers would hang.
        refusal = trainer.strategy.broadcast(self._refusal if trainer.is_global_zero else None, src=0)
        if refusal is not None:
            raise ValueError(refusal)
        if self.latency_ms_given and not self._budget_checked:
            unreachable = None
            if trainer.is_global_zero:
                assert self.sides is not None and self._template is not None
                unreachable = _resolve.unreachable_budget(
                    self.sides,
                    self._template,
                    self.input_shape,
                    self.budget,
                    planner_options=self._planner_options(),
                    ignored_layers=self.ignored_layers,
                    min_channel_ratio=self.min_channel_ratio,
                )
            # Rank 0 holds the predictors; every rank must raise together, or DDP peers would hang.
            unreachable = trainer.strategy.broadcast(unreachable, src=0)
            self._budget_checked = True
            if unreachable is not None:
                raise ValueError(unreachable)

    def _resolve_sides(self, trainer: pl.Trainer, net: nn.Module) -> None:
        """Rank 0: every target's predictor, batch and timing target; coverage; calibration; dense latency."""
        assert self._template is not None
        self.sides = _resolve.resolve_sides(
            self.predictor_arg,
            self.target_arg,
            self.verify,
            net,
            self.input_shape,
            progress=trainer.progress_bar_callback is not None,
        )
        several = len(self.sides) > 1 or isinstance(self.predictor_arg, Mapping)
        self._refusal = _resolve.coverage_refusal(
            self.sides, self._template, self.input_shape, self.coverage_check, several=several
        )
        if self._refusal is None:
            _resolve.calibrate_sides(self.sides, self._template, self.input_shape, self.budget.ratio)
        primary = self.sides[0]
        self.predictor, self._target = primary.predictor, primary.timing
        self.dense_measured_ms, self.budget_basis = primary.dense_measured_ms, primary.basis
        self.dense_by_target = dense_latencies(self.sides, self._template, self.input_shape)
        self.dense_latency_ms = self.dense_by_target[primary.name]

    def _planner_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`hwprune.prune.planner.plan_pruning` that the settings fix."""
        return {
            "importance": self.importance,
            "snap": self.snap,
            "dense_widths": self.dense_widths,
            "min_channel_ratio": self.min_channel_ratio,
        }

    # ------------------------------------------------------------------ the schedule
    def _is_prune_epoch(self, epoch: int) -> bool:
        return epoch >= self.start_epoch and (epoch - self.start_epoch) % self.prune_every_n_epochs == 0

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
        decision: PruneDecision | None = None
        if trainer.is_global_zero:
            decision = self._decide(pl_module, fraction)
        decision = trainer.strategy.broadcast(decision, src=0)
        assert decision is not None
        self._apply(trainer, pl_module, decision, fraction, epoch)

    def _decide(self, pl_module: pl.LightningModule, fraction: float) -> PruneDecision:
        """Rank 0: the step fraction of the way from each target's dense latency to its budget."""
        assert self.sides is not None and self._template is not None
        # The closed loop recalibrates the predictors between steps: price the dense model with each
        # predictor as it is now, so a ratio budget stays a ratio of like with like.
        self.dense_by_target = dense_latencies(self.sides, self._template, self.input_shape)
        self.dense_latency_ms = self.dense_by_target[self.sides[0].name]
        names = [s.name for s in self.sides]
        # A ratio budget is a share of dense: the step's share, judged on the step's measured share of
        # the dense model timed in the same rounds (the planner's budget only steers the plan).
        return decide(
            self._net(pl_module),
            self.sides,
            self.input_shape,
            {n: self.budget.step_ms(n, self.dense_by_target[n], fraction) for n in names},
            planner_options=self._planner_options(),
            shares={n: self.budget.step_share(n, fraction) for n in names},
            closed_loop_rounds=self.closed_loop_rounds,
            ignored_layers=self.ignored_layers,
            dense=self._template,
        )

    def _apply(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        decision: PruneDecision,
        fraction: float,
        epoch: int,
    ) -> None:
        """Every rank: apply the decided removals and record the step."""
        t0 = time.perf_counter()
        if decision.removals:
            net = self._net(pl_module)
            self.history.append(
                apply_step(trainer, pl_module, net, self.input_shape, decision.removals, self.ignored_layers)
            )
            self._applied = len(self.history)
        self.fraction_done = fraction
        self.steps_attempted += 1
        self.pending_check = bool(decision.removals)
        entry = decision.to_log(self.steps_attempted - 1, epoch, self.last_score, time.perf_counter() - t0)
        self.steps.append(entry)
        log_step(trainer, self._net(pl_module), self.input_shape, entry)

    # ------------------------------------------------------------------ accuracy check and rollback
    def _worse(self, score: float) -> float:
        """How far ``score`` is below the baseline (positive = worse)."""
        assert self.baseline is not None
        return self.baseline - score if self.mode == "max" else score - self.baseline

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
        """Rebuild the last good architecture from the dense copy, load its weights, and stop or shrink."""
        assert self._template is not None and self.good_state is not None
        device = next(pl_module.parameters()).device
        good = self.history[: self.good_history_len]
        net = rebuild_network(self._template, self.input_shape, good, self.good_state, self.ignored_layers)
        undone = len(self.history) - self.good_history_len
        self.history = good
        self._applied = len(good)
        set_network(pl_module, self._attr or "", net.to(device))
        if self.steps:
            self.steps[-1] = replace(self.steps[-1], outcome="rolled back")
        self.fraction_done = max(0.0, self.fraction_done - self.step_fraction)
        if self.rollback == "stop":
            self.stopped = True
        else:
            self.step_fraction /= 2
            self.stopped = self.step_fraction < 1.0 / (8 * self.num_steps)
        self.pending_check = False
        rebuild_optimizers(trainer)
        rank_zero_only(log.warning)(
            "%s fell more than %.4f below the baseline: rolled back %d step(s); %s",
            self.monitor,
            self.max_accuracy_drop,
            undone,
            "pruning stops" if self.stopped else f"next step is {self.step_fraction:.3f} of the way",
        )

    # ------------------------------------------------------------------ fit end
    def _run_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Rank 0: write the report, the ``pruned.pt`` bundle and the export; log if the budget is met."""
        self._check_accuracy(trainer, pl_module)
        if not trainer.is_global_zero:
            return
        assert self._template is not None
        net = self._net(pl_module)
        out_dir = Path(self.report_dir or trainer.log_dir or trainer.default_root_dir)
        result = fit_report(
            self.sides or [],
            self._template,
            net,
            self.input_shape,
            self.budget,
            self.dense_by_target,
            self.steps,
            verify=self.verify,
            budget_basis=self.budget_basis,
            monitor=self.monitor,
            score_before=self.baseline,
            score_after=self.last_score,
            scheduled_steps=self.num_steps,
        )
        write_report(result, out_dir)
        write_bundle(
            out_dir / "pruned.pt",
            net,
            self.input_shape,
            self.history,
            ignored_layers=self.ignored_layers,
            model_spec=self.model_spec,
        )
        if self.export is not None:
            export_model(net, self.input_shape, out_dir, self.export)
        if result["budget"]["met"]:
            console_info(f"hwprune: {result['budget']['summary']}")
        else:
            log.warning("hwprune: %s", result["budget"]["summary"])

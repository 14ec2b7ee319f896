"""The uninstructed baseline: Torch-Pruning's uniform L1 channel pruning, blind to latency.

Its state is Torch-Pruning's pruning history, so that ``Trainer.fit(ckpt_path=...)`` after the prune
rebuilds the pruned architecture before the checkpoint's weights load, as
:class:`~hwprune.callbacks.HardwareAwarePruning` does
(:func:`hwprune.callbacks._trainer.restore_before_weights`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch_pruning as tp
from torch import nn
from torch.utils.hooks import RemovableHandle
from typing_extensions import override

from hwprune.callbacks._lightning import CALLBACK_BASES, rank_zero_only, use_package_of
from hwprune.callbacks._network import find_network
from hwprune.callbacks._trainer import rebuild_optimizers, restore_before_weights
from hwprune.contract import check_input_shape
from hwprune.prune.graph import PruneRecord, replay_history, resolve_ignored

if TYPE_CHECKING:  # either package works at run time (see hwprune.callbacks._lightning)
    import pytorch_lightning as pl

log = logging.getLogger(__name__)

__all__ = ["UninstructedPruning"]


class UninstructedPruning(*CALLBACK_BASES):  # type: ignore[misc]
    """Prune every layer by the same ratio with L1 importance, once, at the start of ``epoch``.

    Args:
        input_shape: The model's input shape including batch.
        pruning_ratio: Share of channels removed from each group, in (0, 1).
        epoch: Epoch (>= 0) at whose start the prune runs.
        round_to: Keep channel counts multiples of this (``None``: any count).
        ignored_layers: Module names whose output channels stay (Linear layers always do).
        model_attr: Attribute of the LightningModule that holds the network, ``""`` for the module
            itself, or ``None`` to find it (as :class:`hwprune.callbacks.HardwareAwarePruning` does).

    Raises:
        ValueError: If ``input_shape`` is not 4 positive ints, ``pruning_ratio`` is not in (0, 1),
            ``epoch`` < 0 or ``round_to`` < 1; at the prune, if ``model_attr`` names no network or
            (when None) the network is ambiguous.

    Example:
        >>> cb = UninstructedPruning((1, 1, 28, 28), pruning_ratio=0.5, round_to=8)
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        pruning_ratio: float = 0.5,
        epoch: int = 1,
        round_to: int | None = None,
        ignored_layers: Sequence[str] = (),
        model_attr: str | None = None,
    ) -> None:
        super().__init__()
        shape = check_input_shape(input_shape)
        if not isinstance(pruning_ratio, int | float) or not 0.0 < pruning_ratio < 1.0:
            raise ValueError(f"`pruning_ratio` must be a fraction in (0, 1), got {pruning_ratio!r}")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"`epoch` must be an int >= 0, got {epoch!r}")
        if round_to is not None and (not isinstance(round_to, int) or round_to < 1):
            raise ValueError(f"`round_to` must be an int >= 1 or None, got {round_to!r}")
        self.input_shape = shape
        self.pruning_ratio = float(pruning_ratio)
        self.epoch = epoch
        self.round_to = round_to
        self.ignored_layers = tuple(ignored_layers)
        self.model_attr = model_attr
        self.done = False
        self.history: list[PruneRecord] = []  # Torch-Pruning's records of the prune
        self._applied = False  # whether the live network holds the history
        self._restore_hook: RemovableHandle | None = None

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"done": self.done, "history": [list(r) for r in self.history]}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.done = bool(state_dict["done"])
        # Checkpoints written before the history was kept hold none.
        self.history = [(str(n), bool(o), [int(i) for i in ix]) for n, o, ix in state_dict.get("history", [])]

    def restore_architecture(self, pl_module: nn.Module, checkpoint: Mapping[str, Any]) -> None:
        """Replay the prune recorded in ``checkpoint`` on the still-dense network (before its weights load).

        Args:
            pl_module: The LightningModule being restored.
            checkpoint: The Lightning checkpoint being restored.
        """
        state = checkpoint.get("callbacks", {}).get(self.state_key)
        if state is None or self._applied:
            return
        self.load_state_dict(state)
        if self.history:
            net = find_network(pl_module, self.model_attr)[1]
            replay_history(net, self.input_shape, [self.history], self.ignored_layers)
            self._applied = True
            rank_zero_only(log.info)(
                "resumed the uninstructed prune (%d records replayed)", len(self.history)
            )

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        use_package_of(trainer)
        self._run_teardown()  # a fit that raised skips teardown: a hook of its Trainer may be left
        self._restore_hook = restore_before_weights(trainer, pl_module, self.restore_architecture)

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._run_teardown()

    def _run_teardown(self) -> None:
        if self._restore_hook is not None:
            self._restore_hook.remove()
            self._restore_hook = None

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._run_prune(trainer, pl_module)

    def _run_prune(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.done or trainer.current_epoch != self.epoch:
            return
        use_package_of(trainer)
        net: nn.Module = find_network(pl_module, self.model_attr)[1]
        p = next(net.parameters())
        pruner = tp.pruner.MetaPruner(
            net,
            torch.zeros(*self.input_shape, device=p.device),
            importance=tp.importance.GroupMagnitudeImportance(p=1),
            pruning_ratio=self.pruning_ratio,
            round_to=self.round_to,
            ignored_layers=resolve_ignored(net, self.ignored_layers),
        )
        before = sum(q.numel() for q in net.parameters())
        pruner.step()
        after = sum(q.numel() for q in net.parameters())
        self.history = [(str(n), bool(o), [int(i) for i in ix]) for n, o, ix in pruner.pruning_history()]
        self._applied = True
        self.done = True
        rebuild_optimizers(trainer, keep_schedulers=False)
        for logger in trainer.loggers:
            logger.log_metrics({"pruning/params": float(after)}, step=trainer.global_step)
        rank_zero_only(log.info)(
            "uninstructed L1 pruning (ratio %.2f, round_to %s): %d -> %d parameters",
            self.pruning_ratio,
            self.round_to,
            before,
            after,
        )

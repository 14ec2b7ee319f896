"""One prune step of :class:`~hwprune.callbacks.HardwareAwarePruning`, applied on every rank.

Rank 0 decides the step (:func:`hwprune.verify.decide`) and broadcasts its plain-data decision;
:func:`apply_step` removes the decided channels on every rank and rebuilds the optimizers, carrying the
kept channels' momentum/Adam state over (:mod:`hwprune.prune.optim`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from torch import nn

from hwprune.callbacks._trainer import rebuild_optimizers
from hwprune.prune.graph import PruneRecord, apply_removals, build_groups
from hwprune.prune.optim import carry_optimizer_state, optimizer_states_by_name, prune_tracking_kept

if TYPE_CHECKING:  # either package works at run time (see hwprune.callbacks._lightning)
    import pytorch_lightning as pl

log = logging.getLogger(__name__)

__all__ = ["apply_step"]


def apply_step(
    trainer: pl.Trainer,
    pl_module: pl.LightningModule,
    net: nn.Module,
    input_shape: tuple[int, ...],
    removals: dict[str, list[int]],
    ignored_layers: Sequence[str],
) -> list[PruneRecord]:
    """Remove ``removals`` from ``net`` in place and rebuild the optimizers with the kept channels' state.

    Args:
        trainer: The Trainer (its optimizers are rebuilt when fitting).
        pl_module: The LightningModule (its parameter names are the optimizers' view).
        net: The network inside ``pl_module`` to prune.
        input_shape: The input shape to trace the dependency graph at.
        removals: :attr:`PruneDecision.removals`.
        ignored_layers: Layers whose output channels stay.

    Returns:
        The step's Torch-Pruning records, for :func:`hwprune.prune.replay_history`.
    """
    shapes = {n: p.shape for n, p in pl_module.named_parameters()}
    states = optimizer_states_by_name(pl_module, trainer.optimizers)
    gm = build_groups(net, input_shape, ignored_layers)
    history, kept = prune_tracking_kept(pl_module, lambda: apply_removals(gm, removals))
    rebuild_optimizers(
        trainer,
        lambda old: carry_optimizer_state(pl_module, old, trainer.optimizers, states, kept, shapes),
    )
    return history

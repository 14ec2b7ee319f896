"""The Trainer side of a prune: new optimizers after the shapes change, and the architecture on resume.

Both pruning callbacks change the network's shapes during a fit. Two things in the Trainer must follow:

- the optimizers (and, under DDP, the wrapper that holds the old parameters): :func:`rebuild_optimizers`;
- a resumed checkpoint holds pruned weights, which only load into the pruned architecture:
  :func:`restore_before_weights`.

Example:
    >>> handle = restore_before_weights(trainer, pl_module, callback.restore_architecture)  # doctest: +SKIP
    >>> handle.remove()  # doctest: +SKIP
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from torch import nn
from torch.utils.hooks import RemovableHandle

if TYPE_CHECKING:  # either package works at run time (see hwprune.callbacks._lightning)
    import pytorch_lightning as pl

__all__ = ["rebuild_optimizers", "restore_before_weights"]


def rebuild_optimizers(
    trainer: pl.Trainer, carry: Callable[[list[Any]], None] | None = None, *, keep_schedulers: bool = True
) -> None:
    """Re-wrap the module for DDP and rebuild the optimizers and schedulers on the current parameters.

    Under DDP, the wrapper registered the old parameters for gradient reduction, so it is rebuilt through
    the strategy (``configure_ddp``) before the optimizers; then ``strategy.setup_optimizers`` calls the
    module's ``configure_optimizers`` again, and the schedulers' states (step counts, current lr) are put
    back.

    Args:
        trainer: The Trainer (fitting).
        carry: Called with the old optimizers once the new ones are set (e.g. to move the kept channels'
            momentum into them, :func:`hwprune.prune.optim.carry_optimizer_state`); None to start the
            optimizers afresh.
        keep_schedulers: Load the old schedulers' states into the new schedulers.
    """
    if trainer.state.fn != "fit" or not trainer.optimizers:
        return
    strategy = trainer.strategy
    if isinstance(strategy.model, nn.parallel.DistributedDataParallel):
        strategy.model = strategy.lightning_module
        strategy.configure_ddp()  # type: ignore[attr-defined]
    old = list(trainer.optimizers)
    scheds = [cfg.scheduler.state_dict() for cfg in trainer.lr_scheduler_configs] if keep_schedulers else []
    strategy.setup_optimizers(trainer)
    if carry is not None:
        carry(old)
    for cfg, st in zip(trainer.lr_scheduler_configs, scheds, strict=False):
        cfg.scheduler.load_state_dict(st)


def _checkpoint_being_restored(trainer: pl.Trainer) -> Mapping[str, Any]:
    """The checkpoint the Trainer is restoring now (empty when none)."""
    connector = getattr(trainer, "_checkpoint_connector", None)
    if connector is None or not hasattr(connector, "_loaded_checkpoint"):
        raise RuntimeError(
            f"hwprune cannot read the checkpoint being restored from this Lightning version "
            f"({type(trainer).__module__}): its Trainer has no `_checkpoint_connector._loaded_checkpoint`, "
            "so the pruned architecture cannot be rebuilt before the weights load"
        )
    return connector._loaded_checkpoint or {}


def restore_before_weights(
    trainer: pl.Trainer, pl_module: nn.Module, restore: Callable[[nn.Module, Mapping[str, Any]], None]
) -> RemovableHandle:
    """Call ``restore(pl_module, checkpoint)`` right before Lightning loads the checkpoint's weights.

    This is hwprune's one workaround for a missing Lightning hook. Lightning 2.x (both
    ``lightning.pytorch`` and ``pytorch_lightning``) restores a checkpoint in this order: ``setup``
    (``trainer.ckpt_path`` is not yet set), read the file, ``LightningModule.on_load_checkpoint``,
    ``LightningModule.load_state_dict``, then the callbacks' ``on_load_checkpoint`` and
    ``load_state_dict``. No callback hook runs between reading the checkpoint and loading the weights, but
    pruned weights only load into the pruned architecture. So this registers a load-state-dict pre-hook
    (torch's public ``Module.register_load_state_dict_pre_hook``) on ``pl_module``. It replaces none of the
    user's methods; every callback instance registers its own (two callbacks each restore their own
    history); the caller removes it with the returned handle (in ``teardown``). The hook acts only while
    the Trainer restores a checkpoint, and reads the checkpoint Lightning has already loaded (the checkpoint
    connector's ``_loaded_checkpoint``, the only private part of the Trainer that hwprune reads).

    The module's own ``on_load_checkpoint`` runs first, on the network as it is before the restore (dense).

    Args:
        trainer: The Trainer (held weakly).
        pl_module: The LightningModule whose ``load_state_dict`` Lightning calls.
        restore: Called with ``pl_module`` and the whole checkpoint dict; it must rebuild the architecture
            in place, and do nothing when there is nothing to rebuild.

    Returns:
        The hook's handle.

    Raises:
        RuntimeError: When the hook fires and the Trainer does not expose the checkpoint being restored
            (a Lightning version that renamed it).
    """
    trainer_ref, module_ref = weakref.ref(trainer), weakref.ref(pl_module)

    def hook(module: nn.Module, state_dict: Mapping[str, Any], prefix: str, *args: Any) -> None:
        trainer = trainer_ref()
        # A deep copy of the module carries this hook too; only the module itself, loaded whole, restores.
        if trainer is None or module is not module_ref() or prefix:
            return
        checkpoint = _checkpoint_being_restored(trainer)
        if checkpoint:
            restore(module, checkpoint)

    return pl_module.register_load_state_dict_pre_hook(hook)

"""The classification LightningModule that hwprune fine-tunes and prunes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

__all__ = ["ClassificationModule"]

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


class ClassificationModule(pl.LightningModule):
    """Cross-entropy training of any classifier, with accuracy tracked by torchmetrics.

    The optimizer and scheduler are *factories* (Hydra ``_partial_: true``), so they can be rebuilt for a
    model whose parameters changed shape after a prune.

    Logs ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc``, ``test/loss`` and ``test/acc``.

    Args:
        model: The network, reachable as ``self.model`` (the pruning callback edits it in place).
        optimizer: ``params -> Optimizer``, e.g. ``functools.partial(torch.optim.SGD, lr=0.1)``.
        scheduler: ``optimizer -> LRScheduler`` or None.
        num_classes: Number of classes for the accuracy metrics.
        scheduler_interval: ``"epoch"`` or ``"step"``.

    Raises:
        ValueError: If ``optimizer`` is not callable or ``num_classes`` < 2.

    Example:
        >>> from functools import partial
        >>> from hwprune.models import build_model
        >>> m = ClassificationModule(build_model("small_resnet"), partial(torch.optim.SGD, lr=0.1))
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        num_classes: int = 10,
        scheduler_interval: str = "epoch",
    ) -> None:
        super().__init__()
        if not callable(optimizer):
            raise ValueError(
                "`optimizer` must be a callable params -> Optimizer (Hydra `_partial_: true`), "
                f"got {optimizer!r}"
            )
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"`num_classes` must be an int >= 2, got {num_classes!r}")
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(
                f"`scheduler_interval` must be any of ('epoch', 'step'), got {scheduler_interval!r}"
            )
        self.model = model
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.save_hyperparameters(ignore=["model", "optimizer", "scheduler"])
        self.train_acc = MulticlassAccuracy(num_classes=num_classes)
        self.val_acc = MulticlassAccuracy(num_classes=num_classes)
        self.test_acc = MulticlassAccuracy(num_classes=num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _step(
        self, batch: tuple[torch.Tensor, torch.Tensor], stage: str, metric: MulticlassAccuracy
    ) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        metric(logits, y)
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=stage != "test")
        self.log(f"{stage}/acc", metric, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train", self.train_acc)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val", self.val_acc)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test", self.test_acc)

    def configure_optimizers(self) -> Any:
        opt = self.optimizer_factory(self.model.parameters())
        if self.scheduler_factory is None:
            return opt
        sched = self.scheduler_factory(opt)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": self.scheduler_interval}}

"""A real, tiny training run with HardwareAwarePruning; the resume and DDP tests start it as a process.

python train_script.py PREDICTOR OUT_DIR [--ddp] [--hang-at-epoch N] [--resume CKPT] [--max-epochs N]
    [--num-steps N] [--package pytorch_lightning|lightning.pytorch] [--second PREDICTOR]

With ``--package lightning.pytorch`` the module is written the way Lightning's docs write one
(:func:`lit_classifier`: ``import lightning as L``, the network under ``self.net``, ``val_acc`` logged) and
the callback finds the network itself.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hwprune.callbacks import HardwareAwarePruning
from hwprune.models.factory import build_model
from hwprune.module import ClassificationModule

SHAPE = (1, 1, 28, 28)


def network(pl_module: nn.Module) -> nn.Module:
    """The pruned network of either module kind (``self.model`` or ``self.net``)."""
    return pl_module.model if hasattr(pl_module, "model") else pl_module.net


def lit_classifier(L: ModuleType) -> nn.Module:
    """A classifier written the way Lightning's docs write one, for package ``L`` (``lightning.pytorch``)."""

    class LitClassifier(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = build_model("small_resnet")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = F.cross_entropy(self(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            self.log("val_acc", (self(x).argmax(1) == y).float().mean(), sync_dist=True)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

    return LitClassifier()


def callbacks(pl: ModuleType) -> dict[str, type]:
    """The recording callbacks, derived from package ``pl``'s ``Callback``."""
    Callback = pl.Callback

    class StartWidths(Callback):
        """Record the conv widths when training starts (after a checkpoint restore)."""

        def __init__(self) -> None:
            self.widths: dict[str, int] = {}

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            self.widths = {
                n: m.out_channels for n, m in network(pl_module).named_modules() if isinstance(m, nn.Conv2d)
            }

    class EpochWidths(Callback):
        """Record the conv widths at the end of every training epoch, i.e. after that epoch's prune step."""

        def __init__(self) -> None:
            self.per_epoch: list[dict[str, int]] = []

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            self.per_epoch.append(
                {n: m.out_channels for n, m in network(pl_module).named_modules() if isinstance(m, nn.Conv2d)}
            )

    class Hang(Callback):
        """Write a marker at the start of ``epoch`` and wait to be killed."""

        def __init__(self, epoch: int, marker: Path) -> None:
            self.epoch, self.marker = epoch, marker

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            if trainer.current_epoch == self.epoch:
                self.marker.write_text(str(trainer.current_epoch))
                while True:
                    time.sleep(1)

    return {"StartWidths": StartWidths, "EpochWidths": EpochWidths, "Hang": Hang}


def data(seed: int) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, *SHAPE[1:], generator=g)
    y = torch.randint(0, 10, (64,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=16)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    ap = argparse.ArgumentParser()
    ap.add_argument("predictor")
    ap.add_argument("out")
    ap.add_argument("--ddp", action="store_true")
    ap.add_argument("--hang-at-epoch", type=int, default=-1)
    ap.add_argument("--resume", default=None)
    ap.add_argument("--max-epochs", type=int, default=4)
    ap.add_argument("--num-steps", type=int, default=3)
    ap.add_argument("--second", default=None, help="a second target's predictor: plan for both")
    ap.add_argument(
        "--package", default="pytorch_lightning", choices=("pytorch_lightning", "lightning.pytorch")
    )
    args = ap.parse_args()
    out = Path(args.out)
    pl = importlib.import_module(args.package)
    cbs = callbacks(pl)
    pl.seed_everything(0)
    if args.package == "pytorch_lightning":
        module = ClassificationModule(
            build_model("small_resnet"), partial(torch.optim.SGD, lr=0.05, momentum=0.9)
        )
    else:
        module = lit_classifier(pl)
    prune = HardwareAwarePruning(
        args.predictor if args.second is None else {"first": args.predictor, "second": args.second},
        SHAPE,
        latency_ratio=0.5,
        start_epoch=1,
        num_steps=args.num_steps,
        monitor="val/acc" if args.package == "pytorch_lightning" else "val_acc",
        verify=False,
        export=None,
        report_dir=out,
    )
    start = cbs["StartWidths"]()
    per_epoch = cbs["EpochWidths"]()
    callback_list: list[Any] = [start, per_epoch]
    if args.hang_at_epoch >= 0:
        callback_list.append(cbs["Hang"](args.hang_at_epoch, out / "hung"))
    callback_list += [
        prune,
        pl.callbacks.ModelCheckpoint(dirpath=out / "ckpt", save_last=True, save_top_k=-1),
    ]
    trainer = pl.Trainer(
        max_epochs=args.max_epochs,
        accelerator="cpu",
        devices=2 if args.ddp else 1,
        strategy="ddp" if args.ddp else "auto",
        callbacks=callback_list,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=out,
    )
    trainer.fit(module, data(0), data(1), ckpt_path=args.resume)
    net = network(module)
    widths = {n: m.out_channels for n, m in net.named_modules() if isinstance(m, nn.Conv2d)}
    rank = trainer.global_rank
    (out / f"result_rank{rank}.json").write_text(
        json.dumps(
            {
                "widths": widths,
                "start_widths": start.widths,
                "widths_per_epoch": per_epoch.per_epoch,
                "steps_attempted": prune.steps_attempted,
                "history_len": len(prune.history),
                "weights_sum": float(sum(p.double().sum() for p in net.parameters())),
                "package": type(trainer).__module__.split(".trainer")[0],
                "epochs": [s.epoch for s in prune.steps],
                "world": trainer.world_size,
                "per_target": [list(s.per_target) for s in prune.steps],
            }
        )
    )


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    main()

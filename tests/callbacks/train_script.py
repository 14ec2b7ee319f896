"""A real, tiny training run with HardwareAwarePruning; the resume and DDP tests start it as a process.

python train_script.py PREDICTOR OUT_DIR [--ddp] [--hang-at-epoch N] [--resume CKPT] [--max-epochs N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from functools import partial
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hwprune.callbacks import HardwareAwarePruning
from hwprune.models.factory import build_model
from hwprune.module import ClassificationModule

SHAPE = (1, 1, 28, 28)


class StartWidths(Callback):
    """Record the conv widths when training starts (after a checkpoint restore)."""

    def __init__(self) -> None:
        self.widths: dict[str, int] = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.widths = {
            n: m.out_channels for n, m in pl_module.model.named_modules() if isinstance(m, nn.Conv2d)
        }


class EpochWidths(Callback):
    """Record the conv widths at the end of every training epoch, i.e. after that epoch's prune step."""

    def __init__(self) -> None:
        self.per_epoch: list[dict[str, int]] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.per_epoch.append(
            {n: m.out_channels for n, m in pl_module.model.named_modules() if isinstance(m, nn.Conv2d)}
        )


class Hang(Callback):
    """Write a marker at the start of ``epoch`` and wait to be killed."""

    def __init__(self, epoch: int, marker: Path) -> None:
        self.epoch, self.marker = epoch, marker

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            self.marker.write_text(str(trainer.current_epoch))
            while True:
                time.sleep(1)


def data(seed: int) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, *SHAPE[1:], generator=g)
    y = torch.randint(0, 10, (64,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=16)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("predictor")
    ap.add_argument("out")
    ap.add_argument("--ddp", action="store_true")
    ap.add_argument("--hang-at-epoch", type=int, default=-1)
    ap.add_argument("--resume", default=None)
    ap.add_argument("--max-epochs", type=int, default=4)
    args = ap.parse_args()
    out = Path(args.out)
    pl.seed_everything(0)
    module = ClassificationModule(
        build_model("small_resnet"), partial(torch.optim.SGD, lr=0.05, momentum=0.9)
    )
    prune = HardwareAwarePruning(
        args.predictor,
        SHAPE,
        latency_ratio=0.5,
        start_epoch=1,
        num_steps=3,
        verify=False,
        export=None,
        report_dir=out,
    )
    start = StartWidths()
    per_epoch = EpochWidths()
    callbacks: list[Callback] = [start, per_epoch]
    if args.hang_at_epoch >= 0:
        callbacks.append(Hang(args.hang_at_epoch, out / "hung"))
    callbacks += [prune, ModelCheckpoint(dirpath=out / "ckpt", save_last=True, save_top_k=-1)]
    trainer = pl.Trainer(
        max_epochs=args.max_epochs,
        accelerator="cpu",
        devices=2 if args.ddp else 1,
        strategy="ddp" if args.ddp else "auto",
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=out,
    )
    trainer.fit(module, data(0), data(1), ckpt_path=args.resume)
    widths = {n: m.out_channels for n, m in module.model.named_modules() if isinstance(m, nn.Conv2d)}
    rank = trainer.global_rank
    (out / f"result_rank{rank}.json").write_text(
        json.dumps(
            {
                "widths": widths,
                "start_widths": start.widths,
                "widths_per_epoch": per_epoch.per_epoch,
                "steps_attempted": prune.steps_attempted,
                "history_len": len(prune.history),
                "weights_sum": float(sum(p.double().sum() for p in module.model.parameters())),
                "epochs": [s.epoch for s in prune.steps],
                "world": trainer.world_size,
            }
        )
    )


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    main()

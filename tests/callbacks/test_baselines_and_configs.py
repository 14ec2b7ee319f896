"""The uninstructed baseline in a real fit, and the three pruning configs composed and instantiated."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelPruning
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hwprune.callbacks import HardwareAwarePruning, PredictorFactory, UninstructedPruning
from hwprune.models.factory import build_model
from hwprune.module import ClassificationModule

SHAPE = (1, 1, 28, 28)


def test_uninstructed_prunes_uniformly_with_round_to(tmp_path: Path) -> None:
    pl.seed_everything(0)
    module = ClassificationModule(build_model("small_resnet"), partial(torch.optim.SGD, lr=0.05))
    data = DataLoader(TensorDataset(torch.randn(32, *SHAPE[1:]), torch.randint(0, 10, (32,))), batch_size=16)
    cb = UninstructedPruning(SHAPE, pruning_ratio=0.5, epoch=1, round_to=8)
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        callbacks=[cb],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, data, data)
    widths = [m.out_channels for m in module.model.modules() if isinstance(m, nn.Conv2d)]
    assert cb.done and all(w % 8 == 0 for w in widths) and max(widths) == 64
    with pytest.raises(ValueError, match=r"`pruning_ratio` must be a fraction in \(0, 1\), got 1.0"):
        UninstructedPruning(SHAPE, pruning_ratio=1.0)


@pytest.mark.parametrize(
    ("group", "kind"),
    [
        ("hw_aware", HardwareAwarePruning),
        ("uninstructed", UninstructedPruning),
        ("modelpruning", ModelPruning),
    ],
)
def test_pruning_configs_instantiate(compose_cfg: Callable[..., DictConfig], group: str, kind: type) -> None:
    cfg = compose_cfg(f"pruning={group}")
    callbacks = [instantiate(c) for c in cfg.pruning.callbacks.values()]
    assert len(callbacks) == 1 and isinstance(callbacks[0], kind)
    if group == "hw_aware":
        cb = callbacks[0]
        assert isinstance(cb.predictor_arg, PredictorFactory) and cb.input_shape == SHAPE
        assert cb.latency_ratio == 0.5

"""The main job as a library function, so ``train.py``, the CLI and the tests run the same code."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

__all__ = ["train"]


def train(cfg: DictConfig) -> dict[str, Any]:
    """Compose-time config -> fitted (and, with a pruning config, pruned) model and its metrics.

    Steps: seed, instantiate the datamodule, model and LightningModule, instantiate every callback under
    ``cfg.pruning.callbacks``, fit, then test. Writes ``metrics.json`` into ``cfg.run_dir``.

    Args:
        cfg: The composed config (``hwprune/conf/config.yaml`` and its groups).

    Returns:
        A dict with the final metrics (``val/acc``, ``test/acc`` when tested), ``run_dir`` and ``wall_s``.

    Raises:
        ValueError: Raised by the instantiated objects for bad values (an unknown model name, a negative
            batch size, ...); Hydra's InstantiationException is unwrapped so the message stays readable.
    """
    t0 = time.perf_counter()
    pl.seed_everything(int(cfg.seed), workers=True)
    run_dir = Path(str(cfg.run_dir))
    run_dir.mkdir(parents=True, exist_ok=True)

    datamodule = _instantiate(cfg.data.datamodule, "data.datamodule")
    model = _instantiate(cfg.model, "model")
    module = _instantiate(cfg.module, "module", model=model)
    callbacks = [_instantiate(c, f"pruning.callbacks.{name}") for name, c in cfg.pruning.callbacks.items()]
    trainer: pl.Trainer = _instantiate(cfg.trainer, "trainer", callbacks=callbacks)

    trainer.fit(module, datamodule=datamodule)
    metrics: dict[str, Any] = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if cfg.test_after_fit:
        for res in trainer.test(module, datamodule=datamodule, verbose=False):
            metrics.update({k: float(v) for k, v in res.items()})
    metrics["params"] = int(sum(p.numel() for p in module.model.parameters()))
    metrics["wall_s"] = round(time.perf_counter() - t0, 1)
    metrics["run_dir"] = str(run_dir)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    return metrics


def _instantiate(node: Any, where: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` that re-raises the user's own error instead of Hydra's wrapper."""
    from hydra.errors import InstantiationException
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, (ValueError, FileNotFoundError, TypeError, MisconfigurationException)):
            raise type(cause)(f"in config `{where}`: {cause}") from cause
        raise

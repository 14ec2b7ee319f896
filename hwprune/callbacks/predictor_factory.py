"""Steps 1-2 of the main job: measure a model's layer space on a target (cached), then fit a predictor."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from hwprune.measure import EvaluatorConfig, Target, load_target, measure, model_space, read_table

log = logging.getLogger(__name__)

__all__ = ["PredictorFactory", "ensure_predictor"]


def ensure_predictor(
    target: Target | str,
    model: nn.Module,
    input_shape: tuple[int, ...],
    cache_dir: str | os.PathLike[str] = "tables",
    *,
    step: int = 4,
    floor: float = 0.25,
    evaluator: EvaluatorConfig | None = None,
    predictor_kwargs: Mapping[str, Any] | None = None,
) -> Any:
    """Return a :class:`~hwprune.predict.LatencyPredictor` for ``model`` on ``target``.

    The model's layer space (each conv's output channels swept from ``floor`` to 1.0 of the original, every
    ``step``-th count) is measured into ``<cache_dir>/<target>/<model>_<h>.csv`` with
    :func:`hwprune.measure.measure`, which skips configurations already in the table, so a second run
    measures nothing. The target's shipped table, when it exists, is fitted on together with it.

    Args:
        target: A :class:`~hwprune.measure.Target` or catalogue name.
        model: The dense model.
        input_shape: Its input shape including batch.
        cache_dir: Root of the cached tables.
        step: Channel step of the sweep.
        floor: Smallest fraction of each conv's channels swept.
        evaluator: Timing settings (default :class:`~hwprune.measure.EvaluatorConfig`).
        predictor_kwargs: Arguments of :class:`~hwprune.predict.LatencyPredictor`.

    Returns:
        The fitted predictor.

    Raises:
        ValueError: If ``step`` or ``floor`` is out of range (see :func:`hwprune.measure.model_space`).

    Example:
        >>> model = build_model("small_resnet")
        >>> pred = ensure_predictor("cpu_torch", model, (1, 1, 28, 28))  # doctest: +SKIP
    """
    import pandas as pd

    from hwprune.predict import LatencyPredictor

    target = load_target(target)
    name = re.sub(r"[^A-Za-z0-9_]+", "_", type(model).__name__.lower())
    table = Path(os.path.expanduser(str(cache_dir))) / target.name / f"{name}_{int(input_shape[-1])}.csv"
    table.parent.mkdir(parents=True, exist_ok=True)
    space = model_space(model, tuple(int(s) for s in input_shape), floor=floor, step=step)
    import torch

    threads = torch.get_num_threads()
    try:
        summary = measure(target, space, table, evaluator=evaluator, progress=True)
    finally:
        torch.set_num_threads(threads)  # the backend may pin threads for timing; training needs them back
    log.info(
        "layer space of %s on %s: %d measured now, %d cached (%s)",
        name,
        target.name,
        summary.measured,
        summary.skipped,
        table,
    )
    frames = [read_table(table)]
    if target.table and Path(target.table).exists() and Path(target.table).resolve() != table.resolve():
        frames.append(read_table(target.table))
    df = pd.concat(frames, ignore_index=True)
    kwargs = dict(
        predictor_kwargs
        or {
            "estimator": "extra_trees",
            "target_transform": "log_per_flop",
            "cv_folds": 0,
            "n_estimators": 100,
        }
    )
    return LatencyPredictor(**kwargs).fit(df)


@dataclass(frozen=True)
class PredictorFactory:
    """A picklable ``(model, input_shape) -> predictor`` for :class:`HardwareAwarePruning` configs.

    Args:
        target: The device target (a :class:`~hwprune.measure.Target` or catalogue name).
        cache_dir: Root of the cached tables.
        step: Channel step of the sweep.
        floor: Smallest fraction of each conv's channels swept.
        repeat: Timing samples per configuration.
        min_repeat_ms: Shortest sample, in ms.
        predictor_kwargs: Arguments of :class:`~hwprune.predict.LatencyPredictor`.

    Example:
        >>> factory = PredictorFactory("cpu_torch")
        >>> pred = factory(build_model("small_resnet"), (1, 1, 28, 28))  # doctest: +SKIP
    """

    target: Target | str
    cache_dir: str = "tables"
    step: int = 4
    floor: float = 0.25
    repeat: int = 5
    min_repeat_ms: float = 10.0
    predictor_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self, model: nn.Module, input_shape: tuple[int, ...]) -> Any:
        """Measure (what is not cached) and fit; see :func:`ensure_predictor`."""
        return ensure_predictor(
            self.target,
            model,
            input_shape,
            self.cache_dir,
            step=self.step,
            floor=self.floor,
            evaluator=EvaluatorConfig(repeat=self.repeat, min_repeat_ms=self.min_repeat_ms),
            predictor_kwargs=dict(self.predictor_kwargs) or None,
        )

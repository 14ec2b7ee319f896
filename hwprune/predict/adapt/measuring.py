"""Measure, then adapt: :func:`measure_and_adapt` times the selected configurations and fits the predictor.

The glue between the measuring harness (:func:`hwprune.measure.measure`, imported when called: the
measuring stage comes first in the data flow) and :func:`~hwprune.predict.adapt.select_configs` and
:func:`~hwprune.predict.adapt.adapt`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwprune.predict.adapt.model import AdaptedPredictor, adapt
from hwprune.predict.adapt.prior import PriorLike, load_prior
from hwprune.predict.adapt.selection import candidate_frame, select_configs

log = logging.getLogger(__name__)

__all__ = ["AdaptResult", "measure_and_adapt"]


@dataclass(frozen=True)
class AdaptResult:
    """What :func:`measure_and_adapt` did.

    Attributes:
        predictor: The adapted predictor.
        table: The new target's measurement table.
        predictor_path: Where the predictor was saved (None if not saved).
        n_candidates: Configurations in the layer space.
        n_selected: Configurations chosen (at most the budget).
        measured: Of those, timed by this call (the others were in the table already, or failed).
        wall_s: Wall time in seconds.
    """

    predictor: AdaptedPredictor
    table: Path
    predictor_path: Path | None
    n_candidates: int
    n_selected: int
    measured: int
    wall_s: float


def measure_and_adapt(
    target: Any,
    space: Sequence[Mapping[str, Any]],
    out_path: str | os.PathLike[str],
    *,
    adapt_from: PriorLike,
    budget: int,
    out_predictor: str | os.PathLike[str] | None = None,
    evaluator: Any = None,
    progress: bool = False,
    seed: int = 0,
    sidecar: Mapping[str, Any] | None = None,
) -> AdaptResult:
    """Measure at most ``budget`` selected configurations on ``target`` and fit the adapted predictor.

    The configurations come from :func:`select_configs` and are timed with the regular harness
    (:func:`hwprune.measure.measure`, append-only table: a killed run resumes, and configurations already
    in the table are not timed again); the predictor is then fitted on the table's rows with
    :func:`adapt`.

    Args:
        target: A :class:`hwprune.measure.Target`, catalogue name or YAML path (the new target).
        space: The new target's layer space (e.g. :func:`hwprune.measure.model_space`).
        out_path: The measurement table to append to.
        adapt_from: The prior (see :func:`load_prior`).
        budget: Most configurations to measure (an int >= 1).
        out_predictor: Where to save the predictor (None: not saved).
        evaluator: A :class:`hwprune.measure.EvaluatorConfig` (default: the harness's).
        progress: Show the harness's progress bar.
        seed: As :func:`select_configs`.
        sidecar: Extra keys for the table's sidecar JSON.

    Returns:
        An :class:`AdaptResult`.

    Raises:
        ValueError, TypeError, FileNotFoundError: As :func:`select_configs` and :func:`adapt`.
        RuntimeError: If the backend cannot start.

    Example:
        >>> from hwprune.measure import model_space
        >>> res = measure_and_adapt("cpu_torch", model_space("small_resnet", (1, 1, 28, 28)), "new.csv",
        ...                         adapt_from="tables/cpu_torch/small_resnet_28.csv", budget=100,
        ...                         out_predictor="new.skops")  # doctest: +SKIP
    """
    from hwprune.measure import load_target, measure

    t0 = time.perf_counter()
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 1:
        raise ValueError(f"`budget` must be an int >= 1 (configurations to measure), got {budget!r}")
    tgt = load_target(target)
    prior = load_prior(adapt_from)
    space = list(space)
    picks = select_configs(prior, space, int(budget), seed=seed)
    meta = {"adapt": {"from": prior.target_, "from_device": prior.device_, "budget": int(budget)}}
    summary = measure(
        tgt, picks, out_path, evaluator=evaluator, progress=progress, sidecar={**meta, **dict(sidecar or {})}
    )
    pred = adapt(prior, out_path, random_state=seed)
    pred.source_table_ = str(out_path)  # the closed loop grows this table and refits the correction
    saved = None if out_predictor is None else pred.save(out_predictor)
    return AdaptResult(
        predictor=pred,
        table=Path(out_path),
        predictor_path=saved,
        n_candidates=len(candidate_frame(space)),
        n_selected=len(picks),
        measured=summary.measured,
        wall_s=time.perf_counter() - t0,
    )

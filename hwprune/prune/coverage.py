"""Is a predictor fit to plan this model? The conv shapes of the model that its table never measured.

A predictor knows the layer shapes (spatial size, kernel, stride, padding, groups) its table measured and
stores them as ``layer_shapes_`` (:func:`hwprune.predict.tables.layer_shapes` names them). On a shape it
never saw, its trees return the constant of some leaf: stairs and totals are guesses. A predictor fitted
on ``small_resnet`` at 28x28 and handed ResNet-18 at 64x64 priced a 10.2x speedup as "budget met" (issue
18). :func:`unmeasured_layers` names the model's convs whose shape the predictor never measured and the
share of the predicted latency they carry; :func:`check_coverage` warns, and refuses above
:data:`UNMEASURED_SHARE_LIMIT` unless told to only warn.

Example:
    >>> r18 = build_model("resnet18", 3, input_size=64)  # doctest: +SKIP
    >>> cov = unmeasured_layers(pred, r18, (1, 3, 64, 64))  # doctest: +SKIP
    >>> cov.share  # doctest: +SKIP
    1.0
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from torch import nn

from hwprune.contract import conv_layer_configs
from hwprune.prune.model_latency import layer_cost_fn

log = logging.getLogger(__name__)

__all__ = ["UNMEASURED_SHARE_LIMIT", "CoverageAction", "Coverage", "check_coverage", "unmeasured_layers"]

UNMEASURED_SHARE_LIMIT: float = 0.1
"""Above this share of the model's predicted conv latency on shapes the table never measured, a plan is
refused unless the caller opts in (the callback's ``coverage_check="warn"``, ``hwprune prune
--allow-unmeasured``): a tenth of the latency guessed is already more than the 5% a budget is judged by."""

CoverageAction = Literal["raise", "warn"]


@dataclass(frozen=True)
class Coverage:
    """Which convs of a model a predictor never measured the shape of.

    Attributes:
        layers: ``(conv name, layer shape)`` of each conv whose shape is not among ``layer_shapes_``.
        share: Their share of the model's predicted conv latency, in [0, 1].
        known: Whether the predictor records its shapes (False: nothing could be checked, share 0).
        n_layers: Convs in the model.
    """

    layers: tuple[tuple[str, str], ...]
    share: float
    known: bool
    n_layers: int

    def describe(self, limit: int = 8) -> str:
        """The unmeasured convs in words, the first ``limit`` of them named with their shapes."""
        names = ", ".join(f"{n} ({s})" for n, s in self.layers[:limit])
        more = f" and {len(self.layers) - limit} more" if len(self.layers) > limit else ""
        return (
            f"{len(self.layers)} of {self.n_layers} conv layer(s), {self.share:.0%} of the predicted "
            f"latency, have shapes the predictor's table never measured: {names}{more}"
        )


def unmeasured_layers(predictor: Any, model: nn.Module, input_shape: Sequence[int]) -> Coverage:
    """The convs of ``model`` whose layer shape ``predictor`` never measured, and their latency share.

    Args:
        predictor: A fitted predictor; its ``layer_shapes_`` (as :func:`hwprune.predict.tables.layer_shapes`
            names them) are the shapes it measured. Without them nothing is checked.
        model: The model to plan.
        input_shape: Its input shape including batch.

    Returns:
        The :class:`Coverage`.

    Example:
        >>> unmeasured_layers(pred, build_model("small_resnet"), (1, 1, 28, 28)).layers  # doctest: +SKIP
        ()
    """
    from hwprune.predict.features import config_frame
    from hwprune.predict.tables import layer_shapes

    layers = conv_layer_configs(model, tuple(int(s) for s in input_shape))
    known = set(getattr(predictor, "layer_shapes_", ()) or ())
    if not known or not layers:
        return Coverage((), 0.0, bool(known), len(layers))
    frame = pd.DataFrame([layer.config for layer in layers])
    shapes = layer_shapes(config_frame(frame, default_dtype="float32"))
    missing = [i for i, s in enumerate(shapes) if s not in known]
    if not missing:
        return Coverage((), 0.0, True, len(layers))
    cost = np.asarray(layer_cost_fn(predictor)(frame), dtype=float).reshape(-1)
    total = float(cost.sum())
    share = float(cost[missing].sum() / total) if total > 0 else 1.0
    return Coverage(tuple((layers[i].name, shapes[i]) for i in missing), share, True, len(layers))


def check_coverage(
    coverage: Coverage,
    action: CoverageAction = "raise",
    *,
    limit: float = UNMEASURED_SHARE_LIMIT,
    what: str = "the model",
    opt_in: str = "`coverage_check='warn'`",
) -> None:
    """Warn about unmeasured shapes; above ``limit`` of the latency, refuse unless ``action="warn"``.

    Args:
        coverage: :func:`unmeasured_layers`' result.
        action: ``"raise"`` refuses a model above ``limit``; ``"warn"`` only warns.
        limit: Largest share of the predicted latency on unmeasured shapes that is only warned about.
        what: The model's name in the message.
        opt_in: How the caller opts in, named in the refusal.

    Raises:
        ValueError: If ``coverage.share`` > ``limit`` and ``action`` is ``"raise"``.

    Example:
        >>> check_coverage(Coverage((), 0.0, True, 10))
    """
    if not coverage.known:
        log.info("the predictor records no measured layer shapes: cannot check it against %s", what)
        return
    if not coverage.layers:
        return
    text = f"{what}: {coverage.describe()}; there the predictor guesses"
    if coverage.share > limit and action == "raise":
        raise ValueError(
            f"the predictor must have measured the layer shapes of {what} (at most {limit:.0%} of the "
            f"predicted latency on unmeasured shapes), got {coverage.share:.0%}: {coverage.describe()}; "
            f"measure this model's layer space (`hwprune measure --model ... --input ...`, or a "
            f"PredictorFactory), or pass {opt_in} to plan on guesses"
        )
    log.warning("%s", text)

"""Predicted latency of a whole model: the one definition the planner, the callback and the CLI share.

A :class:`~hwprune.predict.LatencyPredictor` defines it
(:meth:`~hwprune.predict.LatencyPredictor.predict_model`:
every conv with the elementwise layers on its output, plus the calibrated overhead). Any other object with
``predict(DataFrame) -> ndarray`` (a stub in a test, an imported regressor) is priced as the sum of its
conv predictions; it may add ``layer_costs`` and ``overhead_ms_`` to mean more.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from torch import nn

from hwprune.measure.space import conv_layer_configs
from hwprune.staircase import Predictor

__all__ = ["floor_ms", "layer_cost_fn", "layer_latencies", "overhead_ms", "predicted_latency"]


def layer_cost_fn(predictor: Predictor):  # type: ignore[no-untyped-def]
    """The predictor's per-conv cost: ``layer_costs`` where it has one, else ``predict``."""
    return getattr(predictor, "layer_costs", predictor.predict)


def overhead_ms(predictor: Predictor) -> float:
    """The predictor's calibrated per-model overhead in ms (0 for a plain predictor)."""
    return float(getattr(predictor, "overhead_ms_", 0.0) or 0.0)


def floor_ms(predictor: Predictor) -> float:
    """The predictor's dispatch floor in ms: no network runs faster (0 for a plain predictor)."""
    return float(getattr(predictor, "floor_ms_", 0.0) or 0.0)


def layer_latencies(predictor: Predictor, model: nn.Module, input_shape: Sequence[int]) -> dict[str, float]:
    """Return each conv layer's predicted cost in ms (with the elementwise layers after it), by name.

    Args:
        predictor: Anything with ``predict(DataFrame) -> ndarray`` (ms per row).
        model: The model.
        input_shape: Input shape including batch.

    Returns:
        Layer name -> ms, in execution order.

    Example:
        >>> layer_latencies(predictor, build_model("small_resnet"), (1, 1, 28, 28))  # doctest: +SKIP
        {'stem.0': 0.05, ...}
    """
    layers = conv_layer_configs(model, tuple(int(s) for s in input_shape))
    frame = pd.DataFrame([layer.config for layer in layers])
    lat = np.asarray(layer_cost_fn(predictor)(frame), dtype=float)
    return {layer.name: float(v) for layer, v in zip(layers, lat.reshape(-1), strict=True)}


def predicted_latency(predictor: Predictor, model: nn.Module, input_shape: Sequence[int]) -> float:
    """Return the model's predicted whole-network latency in ms on the predictor's target.

    Args:
        predictor: Anything with ``predict(DataFrame) -> ndarray`` (ms per row).
        model: The model.
        input_shape: Input shape including batch.

    Returns:
        Predicted latency in ms: the per-conv costs plus the calibrated overhead.

    Example:
        >>> predicted_latency(predictor, build_model("small_resnet"), (1, 1, 28, 28))  # doctest: +SKIP
        0.61
    """
    shape = tuple(int(s) for s in input_shape)
    if hasattr(predictor, "predict_model"):
        return float(predictor.predict_model(model, shape))
    work = sum(layer_latencies(predictor, model, shape).values()) + overhead_ms(predictor)
    return float(max(work, floor_ms(predictor)))

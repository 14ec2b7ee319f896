"""Predicted latency of a whole model: the sum of its conv layers' predicted latencies."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from torch import nn

from hwprune.measure.space import conv_layer_configs
from hwprune.staircase import Predictor

__all__ = ["layer_latencies", "predicted_latency"]


def layer_latencies(predictor: Predictor, model: nn.Module, input_shape: Sequence[int]) -> dict[str, float]:
    """Return each conv layer's predicted latency in ms, keyed by module name.

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
    lat = np.asarray(predictor.predict(pd.DataFrame([layer.config for layer in layers])), dtype=float)
    return {layer.name: float(v) for layer, v in zip(layers, lat.reshape(-1), strict=True)}


def predicted_latency(predictor: Predictor, model: nn.Module, input_shape: Sequence[int]) -> float:
    """Return the model's predicted latency in ms (sum over its conv layers).

    Args:
        predictor: Anything with ``predict(DataFrame) -> ndarray`` (ms per row).
        model: The model.
        input_shape: Input shape including batch.

    Returns:
        Predicted latency in ms.

    Example:
        >>> predicted_latency(predictor, build_model("small_resnet"), (1, 1, 28, 28))  # doctest: +SKIP
        0.61
    """
    return float(sum(layer_latencies(predictor, model, input_shape).values()))

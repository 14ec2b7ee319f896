"""Predicted latency of a whole model: the one definition the planner, the callback and the CLI share.

A :class:`~hwprune.predict.LatencyPredictor` defines it
(:meth:`~hwprune.predict.LatencyPredictor.predict_model`:
every conv with the elementwise layers on its output, plus the calibrated overhead). Any other object with
``predict(DataFrame) -> ndarray`` (a stub in a test, an imported regressor) is priced as the sum of its
conv predictions; it may add ``layer_costs`` and ``overhead_ms_`` to mean more.

:class:`LatencyModel` prices the same sum as a function of the channel groups' widths, with cached predictor
calls: the planner's view of a model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from torch import nn

from hwprune.contract import CONFIG_COLUMNS, conv_layer_configs
from hwprune.staircase import Predictor

if TYPE_CHECKING:
    from hwprune.prune.graph import ChannelGroup

__all__ = [
    "LatencyModel",
    "floor_ms",
    "layer_cost_fn",
    "layer_latencies",
    "overhead_ms",
    "predicted_latency",
]


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


class LatencyModel:
    """Predicted latency of a model as a function of its groups' widths (cached predictor calls).

    Args:
        predictor: Anything with ``predict(DataFrame) -> ndarray`` (ms per row).
        layers: Conv layer configs of the current model (from ``conv_layer_configs``).
        groups: All channel groups of the current model.
    """

    def __init__(
        self, predictor: Predictor, layers: Mapping[str, Mapping[str, int]], groups: Sequence[ChannelGroup]
    ) -> None:
        self.predictor = predictor
        self._cost = layer_cost_fn(predictor)  # each conv with the elementwise layers on its output
        self.overhead = overhead_ms(predictor)
        self.base = {n: dict(c) for n, c in layers.items()}
        self.groups = list(groups)
        self.width = {g.index: g.width for g in groups}
        # layer -> [(group index, side)]: how each group's width moves each layer.
        self.touch: dict[str, list[tuple[int, str]]] = {n: [] for n in self.base}
        for g in groups:
            for name, side in g.layers:
                if name in self.touch:
                    self.touch[name].append((g.index, side))
        self.neighbours: dict[int, set[int]] = {g.index: set() for g in groups}
        for users in self.touch.values():
            ids = {gi for gi, _ in users}
            for gi in ids:
                self.neighbours[gi] |= ids - {gi}
        self._cache: dict[tuple[int, ...], float] = {}
        self.calls = 0
        self.rows = 0

    def config(self, name: str, plan: Mapping[int, int]) -> tuple[int, ...]:
        """Return layer ``name``'s config tuple (``CONFIG_COLUMNS`` order) under ``plan``."""
        c = dict(self.base[name])
        for gi, side in self.touch[name]:
            d = self.width[gi] - plan[gi]
            if side == "dw":
                c["in_channels"] -= d
                c["out_channels"] -= d
                c["groups"] = c["in_channels"]
            elif side == "out":
                c["out_channels"] -= d
            else:
                c["in_channels"] -= d
        return tuple(int(c[k]) for k in CONFIG_COLUMNS)

    def latencies(self, configs: Sequence[tuple[int, ...]]) -> np.ndarray:
        """Return the predicted ms of each config tuple (one predictor call for the uncached ones)."""
        missing = sorted({c for c in configs if c not in self._cache})
        if missing:
            pred = np.asarray(
                self._cost(pd.DataFrame(missing, columns=list(CONFIG_COLUMNS))), dtype=float
            ).reshape(-1)
            if pred.shape[0] != len(missing):
                raise ValueError(f"predictor returned {pred.shape[0]} latencies for {len(missing)} configs")
            self.calls += 1
            self.rows += len(missing)
            self._cache.update(zip(missing, pred.tolist(), strict=True))
        return np.array([self._cache[c] for c in configs], dtype=float)

    def total(self, plan: Mapping[int, int]) -> float:
        """Predicted work (ms) under ``plan``: the convs' costs plus the overhead, before the floor."""
        return float(self.latencies([self.config(n, plan) for n in self.base]).sum()) + self.overhead

    def curves(
        self, gis: Sequence[int], domains: Mapping[int, Sequence[int]], plan: Mapping[int, int]
    ) -> dict[int, np.ndarray]:
        """Return, for each group in ``gis``, the summed latency of its layers at each count of its domain."""
        keys: list[tuple[int, ...]] = []
        spans: dict[int, tuple[int, int, int]] = {}
        for gi in gis:
            names = [n for n, _ in self.groups[gi].layers if n in self.base]
            start = len(keys)
            trial = dict(plan)
            for c in domains[gi]:
                trial[gi] = int(c)
                keys.extend(self.config(n, trial) for n in names)
            spans[gi] = (start, len(domains[gi]), len(names))
        lat = self.latencies(keys)
        out: dict[int, np.ndarray] = {}
        for gi, (start, n_counts, n_layers) in spans.items():
            block = lat[start : start + n_counts * n_layers]
            out[gi] = block.reshape(n_counts, n_layers).sum(axis=1) if n_layers else np.zeros(n_counts)
        return out

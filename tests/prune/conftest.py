"""A deterministic synthetic-staircase predictor for the planner's logic (the real one: tests/conftest.py).

The real predictor is fitted on live CPU timings, so its stairs move with the machine; the planner's steps
are tested here against a latency that is an exact staircase in channels, so what each step must do is
known in advance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest

from hwprune.contract import CONFIG_COLUMNS


class StaircasePredictor:
    """Latency that is an exact staircase in channels: a conv costs its MACs with every channel count padded
    up to a multiple of ``tile`` (as a kernel that tiles channels by 8 does), plus a fixed cost per layer.

    It implements the predictor protocol the planner uses (``predict(DataFrame) -> ndarray`` in ms, and
    the optional ``floor_ms_``). Any count that is not a multiple of ``tile`` costs the same as the next
    multiple, so a group's friendly counts are exactly the multiples of ``tile`` in its range, plus its
    top width, whatever its neighbours' widths are.

    Args:
        tile: Channel tile.
        ms_per_mmac: Milliseconds per million (padded) multiply-accumulates.
        layer_ms: Fixed cost of each conv.
        floor_ms: Dispatch floor: no model runs faster.
    """

    def __init__(
        self, tile: int = 8, ms_per_mmac: float = 1e-3, layer_ms: float = 1e-4, floor_ms: float = 0.0
    ) -> None:
        self.tile = tile
        self.ms_per_mmac = ms_per_mmac
        self.layer_ms = layer_ms
        self.floor_ms_ = floor_ms

    def padded(self, channels: np.ndarray) -> np.ndarray:
        """Channels rounded up to the tile."""
        return np.ceil(channels / self.tile) * self.tile

    def predict(self, configs: pd.DataFrame | Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Predicted ms of each conv config (rows keyed by CONFIG_COLUMNS)."""
        df = pd.DataFrame(configs)
        b, cin, cout, h, w, k, s, p, g = (df[c].to_numpy(dtype=float) for c in CONFIG_COLUMNS)
        hw_out = (np.floor((h + 2 * p - k) / s) + 1) * (np.floor((w + 2 * p - k) / s) + 1)
        depthwise = (g > 1) & (g == cin) & (g == cout)
        per_pixel = np.where(depthwise, self.padded(cout), self.padded(cin / g) * self.padded(cout)) * k * k
        return self.layer_ms + b * hw_out * per_pixel * 1e-6 * self.ms_per_mmac

    def friendly(self, lo: int, top: int) -> list[int]:
        """The friendly counts of a group whose counts run from ``lo`` to ``top``."""
        return sorted({c for c in range(lo, top + 1) if c % self.tile == 0} | {top})


@pytest.fixture
def staircase() -> StaircasePredictor:
    """The synthetic staircase predictor (tile 8, no floor)."""
    return StaircasePredictor()


@pytest.fixture
def make_staircase() -> type[StaircasePredictor]:
    """The class, for tests that need other settings (a floor, another tile)."""
    return StaircasePredictor

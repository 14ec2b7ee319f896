"""Friendly counts and snapping."""

from __future__ import annotations

import numpy as np
import pytest

from hwprune.staircase import friendly_from_curve, snap, vary_channels


def test_friendly_from_curve_keeps_right_edges() -> None:
    # Stairs: 1-2 cost 1.0, 3-4 cost 2.0, 5 costs 1.5 (faster than 3-4), 6 costs 3.0.
    counts = [1, 2, 3, 4, 5, 6]
    lat = [1.0, 1.0, 2.0, 2.0, 1.5, 3.0]
    assert friendly_from_curve(counts, lat) == [2, 5, 6]


def test_friendly_definition_holds() -> None:
    rng = np.random.default_rng(0)
    lat = np.repeat(rng.uniform(1, 2, size=10), 8) + np.linspace(0, 0.5, 80)
    counts = list(range(1, 81))
    fr = friendly_from_curve(counts, lat.tolist())
    for f in fr:
        assert all(lat[c - 1] > lat[f - 1] for c in counts if c > f)
    assert fr[-1] == 80


@pytest.mark.parametrize(("mode", "expected"), [("up", 32), ("down", 16), ("nearest", 16)])
def test_snap_modes(mode: str, expected: int) -> None:
    assert snap(20, [8, 16, 32], mode) == expected  # type: ignore[arg-type]


def test_snap_edges() -> None:
    assert snap(16, [8, 16, 32], "down") == 16
    assert snap(24, [8, 16, 32], "nearest") == 32  # tie goes up: same latency, more channels
    assert snap(40, [8, 16, 32], "up") == 32
    assert snap(4, [8, 16, 32], "down") == 8


def test_snap_rejects_bad_mode() -> None:
    with pytest.raises(ValueError, match="`mode` must be one of"):
        snap(3, [1, 2], "sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`friendly` must hold"):
        snap(3, [], "up")


def test_vary_channels_depthwise_moves_groups() -> None:
    cfg = dict(
        batch=1,
        in_channels=32,
        out_channels=32,
        height=8,
        width=8,
        kernel_size=3,
        stride=1,
        padding=1,
        groups=32,
    )
    df = vary_channels(cfg, [8, 16])
    assert df["groups"].tolist() == [8, 16] and df["in_channels"].tolist() == [8, 16]


def test_friendly_from_curve_validates() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        friendly_from_curve([2, 1], [1.0, 1.0])

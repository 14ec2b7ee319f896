"""Friendly counts and snapping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwprune.staircase import (
    SLOWDOWN_TOLERANCE,
    friendly_from_curve,
    friendly_mask,
    is_slowdown,
    snap,
    vary_channels,
)


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


# The one friendly rule and the one slowdown threshold (issue 13, item 4) --------------------------------


def test_friendly_mask_and_from_curve_agree_on_one_rule() -> None:
    counts = [4, 8, 12, 16, 20]
    lat = [1.0, 1.0, 2.0, 1.5, 3.0]
    assert friendly_from_curve(counts, lat) == [8, 16, 20]
    assert friendly_mask(lat).tolist() == [False, True, False, True, True]
    assert friendly_mask([]).tolist() == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.01, 10.0, allow_nan=False), min_size=1, max_size=40))
def test_friendly_rule_holds_for_any_curve(lat: list[float]) -> None:
    counts = list(range(1, len(lat) + 1))
    fr = set(friendly_from_curve(counts, lat))
    for i, c in enumerate(counts):
        later = lat[i + 1 :]
        # friendly <=> strictly faster than every larger count (the largest count always is)
        assert (c in fr) == all(lat[i] < x for x in later)


def test_friendly_mask_skips_failed_timings() -> None:
    # A NaN (failed timing) is never friendly and does not hide the counts below it.
    assert friendly_mask([1.0, float("nan"), 2.0]).tolist() == [True, False, True]
    assert friendly_mask([float("nan"), float("nan")]).tolist() == [False, False]


def test_report_and_plot_use_the_staircase_rule() -> None:
    import hwprune.measure.plot as measure_plot
    from hwprune.predict import report

    assert report.friendly_mask is friendly_mask  # imported, not a second copy
    assert not hasattr(measure_plot, "friendly")  # the plotting helper copy is gone


def test_is_slowdown_uses_the_tolerance() -> None:
    assert SLOWDOWN_TOLERANCE == 0.05
    assert is_slowdown(1.051, 1.0) is True and is_slowdown(1.05, 1.0) is False  # strictly more than 5%
    assert is_slowdown(1.2, 1.0, tolerance=0.25) is False
    mask = is_slowdown(np.array([0.9, 1.04, 1.06, 2.0]), 1.0)
    assert mask.tolist() == [False, False, True, True]
    series = is_slowdown(pd.Series([1.0, 3.0]), pd.Series([1.0, 2.0]))
    assert series.tolist() == [False, True]
    for bad in (-0.1, float("nan"), "5%", True):
        with pytest.raises(ValueError, match="`tolerance` must be a share >= 0"):
            is_slowdown(1.0, 1.0, tolerance=bad)  # type: ignore[arg-type]

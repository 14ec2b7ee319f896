"""friendly_counts on a real predictor fitted on this CPU's measurements."""

from __future__ import annotations

import pytest

from hwprune.staircase import friendly_counts, vary_channels


def test_friendly_counts_with_real_predictor(predictor: object) -> None:
    cfg = dict(
        batch=1,
        in_channels=64,
        out_channels=128,
        height=14,
        width=14,
        kernel_size=3,
        stride=2,
        padding=1,
        groups=1,
    )
    fr = friendly_counts(predictor, cfg, max_channels=128, min_channels=32)  # type: ignore[arg-type]
    lat = predictor.predict(vary_channels(cfg, list(range(32, 129))))  # type: ignore[attr-defined]
    assert fr[-1] == 128 and all(32 <= f <= 128 for f in fr)
    for f in fr:
        assert all(lat[c - 32] > lat[f - 32] for c in range(f + 1, 129))
    with pytest.raises(ValueError, match="`max_channels` must be an int >= 1"):
        friendly_counts(predictor, cfg, max_channels=0)  # type: ignore[arg-type]

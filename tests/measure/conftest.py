"""Shared fixtures of the measure tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from hwprune.measure import EvaluatorConfig

ConvFactory = Callable[..., dict[str, Any]]


def _conv(
    cin: int = 8, cout: int = 8, hw: int = 8, k: int = 3, s: int = 1, g: int = 1, b: int = 1
) -> dict[str, Any]:
    return {
        "batch": b,
        "in_channels": cin,
        "out_channels": cout,
        "height": hw,
        "width": hw,
        "kernel_size": k,
        "stride": s,
        "padding": k // 2,
        "groups": g,
    }


@pytest.fixture
def make_conv() -> ConvFactory:
    """Factory of config dicts keyed by CONFIG_COLUMNS."""
    return _conv


@pytest.fixture
def fast_eval() -> EvaluatorConfig:
    """Few, short samples: tests check plumbing and ratios, not absolute times."""
    return EvaluatorConfig(warmup=1, number=1, repeat=3, min_repeat_ms=2.0)

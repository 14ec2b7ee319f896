"""hwprune: performance-aware channel pruning for PyTorch Lightning.

The public API is loaded lazily, so ``import hwprune`` stays cheap (no TVM, no Lightning import until a
name is used).

Example:
    >>> from hwprune import HardwareAwarePruning, LatencyPredictor  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "HardwareAwarePruning": "hwprune.callbacks",
    "LatencyPredictor": "hwprune.predict",
    "measure": "hwprune.measure",
    "read_table": "hwprune.measure",
    "Target": "hwprune.measure",
    "snap": "hwprune.staircase",
    "friendly_counts": "hwprune.staircase",
    "load_pruned": "hwprune.callbacks",
    "build_model": "hwprune.models",
}

__all__ = ["__version__", *_EXPORTS]


# `measure` is the measuring subpackage (its sweep function is `hwprune.measure.measure`): Python's import
# system binds `hwprune.measure` to the subpackage once it is imported, so the name cannot mean the function.
_SUBPACKAGES = frozenset({"measure"})


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"hwprune.{name}")
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hwprune' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

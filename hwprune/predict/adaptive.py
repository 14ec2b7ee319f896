"""Moved: adaptive profiling is a way of measuring, and lives in :mod:`hwprune.measure.adaptive`.

This path re-exports it only for ``benchmarks/predictor.py`` (imported by ``tests/benchmarks``); delete it
once that script imports ``hwprune.measure.adaptive``.
"""

from __future__ import annotations

from hwprune.measure.adaptive import AdaptiveResult, AdaptiveRound, adaptive_measure, replay_adaptive

__all__ = ["AdaptiveResult", "AdaptiveRound", "adaptive_measure", "replay_adaptive"]

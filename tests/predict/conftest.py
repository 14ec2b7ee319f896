"""Fixtures for the predict tests: a predictor fitted on ``tiny_table`` (tests/conftest.py), and saved."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwprune.predict import LatencyPredictor


@pytest.fixture(scope="session")
def fitted(tiny_table: Path) -> LatencyPredictor:
    """A quickly fitted predictor (fixed model, 3-fold CV for the validation metrics)."""
    return LatencyPredictor(
        estimator="hist_gradient_boosting", target_transform="log", cv_folds=3, n_estimators=40
    ).fit(tiny_table)


@pytest.fixture(scope="session")
def saved(fitted: LatencyPredictor, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``fitted`` written to a skops file."""
    return fitted.save(tmp_path_factory.mktemp("pred") / "pred.skops")

"""Fixtures for the predict tests: a small table timed for real with the measurement harness."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwprune.measure import EvaluatorConfig, load_target, measure, model_space
from hwprune.predict import LatencyPredictor


@pytest.fixture(scope="session")
def tiny_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 40 real conv2d timings on this CPU (torch, 1 thread), two layers of the default model."""
    path = tmp_path_factory.mktemp("table") / "tiny.csv"
    space = model_space(
        "small_resnet",
        (1, 1, 28, 28),
        step=4,
        layers=["layers.1.conv2", "layers.2.shortcut"],
        sweep_in="coupled",
    )
    measure(
        load_target("cpu_torch"),
        space,
        path,
        progress=False,
        evaluator=EvaluatorConfig(warmup=2, repeat=5, min_repeat_ms=5.0),
    )
    return path


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

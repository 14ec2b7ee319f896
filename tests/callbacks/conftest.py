"""A real latency predictor for the pruning tests: a small layer space measured on this CPU, then fitted.

The table is cached in pytest's cache folder; :func:`hwprune.measure.measure` skips configurations already
there, so only the first session pays for the measurement (about 15 s on 2 cores).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hwprune.measure import EvaluatorConfig, measure, model_space
from hwprune.predict import LatencyPredictor

SHAPE = (1, 1, 28, 28)


def real_table(cache_dir: Path) -> Path:
    """Measure (or reuse) small_resnet's space plus mobilenet_v2's depthwise/1x1 convs on the local CPU."""
    path = cache_dir / "cpu_torch_test_space.csv"
    space = model_space("small_resnet", SHAPE, step=8, floor=0.25) + model_space(
        "mobilenet_v2", SHAPE, step=32, floor=0.5
    )
    measure(
        "cpu_torch",
        space,
        path,
        evaluator=EvaluatorConfig(warmup=1, repeat=3, min_repeat_ms=2.0),
        progress=False,
    )
    return path


@pytest.fixture(scope="session")
def predictor(request: pytest.FixtureRequest) -> LatencyPredictor:
    path = real_table(Path(request.config.cache.mkdir("hwprune")))
    return LatencyPredictor(
        estimator="extra_trees", target_transform="log_per_flop", cv_folds=0, n_estimators=50
    ).fit(path)

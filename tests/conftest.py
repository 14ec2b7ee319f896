"""Shared fixtures: the repo root, a helper to compose the real Hydra configs, and a real CPU predictor."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, open_dict

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Iterator[Callable[..., DictConfig]]:
    """Compose ``hwprune/conf/config.yaml`` as train.py does, with overrides; ``run_dir`` in ``tmp_path``."""

    def _compose(*overrides: str) -> DictConfig:
        with initialize_config_module(config_module="hwprune.conf", version_base="1.3"):
            cfg = compose(config_name="config", overrides=list(overrides))
        with open_dict(cfg):
            cfg.run_dir = str(tmp_path / "run")
        return cfg

    yield _compose


@pytest.fixture(scope="session")
def predictor(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """A real latency predictor for the pruning tests: a small layer space measured on this CPU, then fitted.

    The table is cached in pytest's cache folder (a session temp dir under ``-p no:cacheprovider``);
    :func:`hwprune.measure.measure` skips configurations already there, so only the first session pays
    for the measurement (about 15 s on 2 cores). It covers
    small_resnet's convs and mobilenet_v2's depthwise and 1x1 convs at 28x28.
    """
    from hwprune.callbacks.predictor_factory import FAST_PREDICTOR
    from hwprune.measure import EvaluatorConfig, measure, model_space
    from hwprune.predict import LatencyPredictor

    shape = (1, 1, 28, 28)
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider: measure afresh
    folder = Path(cache.mkdir("hwprune")) if cache is not None else tmp_path_factory.mktemp("hwprune")
    path = folder / "cpu_torch_test_space_2d.csv"
    # small_resnet in the default 2-D space (out and in sweeps, (in, out) pairs), mobilenet_v2 out only.
    space = model_space("small_resnet", shape, step=8, floor=0.25, pairs=8) + model_space(
        "mobilenet_v2", shape, step=32, floor=0.5, sweep_in="coupled"
    )
    evaluator = EvaluatorConfig(warmup=1, repeat=3, min_repeat_ms=2.0)
    measure("cpu_torch", space, path, evaluator=evaluator, progress=False)
    return LatencyPredictor(**{**FAST_PREDICTOR, "n_estimators": 50}).fit(path)


@pytest.fixture(scope="session")
def tiny_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 40 real conv2d timings on this CPU (torch, 1 thread), two layers of the default model.

    Shared by the predict tests and the adaptive-profiling replay (tests/measure/test_adaptive.py).
    """
    from hwprune.measure import EvaluatorConfig, load_target, measure, model_space

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

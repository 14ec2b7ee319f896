"""Fixtures of the reliability tests: a real table, a real fitted predictor and its file, a bad-input helper.

Everything is built from data measured on this machine (``tables/cpu_torch/small_resnet_28.csv``, committed),
so no test times anything it does not need to.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: A real measurement table of the default model on this machine's CPU (538 rows).
REAL_TABLE = REPO / "tables" / "cpu_torch" / "small_resnet_28.csv"


@pytest.fixture(scope="session")
def fitted_predictor():  # noqa: ANN201 - LatencyPredictor, imported lazily
    """A real LatencyPredictor fitted on the committed CPU table (extra trees, no CV: about 1 s)."""
    from hwprune.callbacks.predictor_factory import FAST_PREDICTOR
    from hwprune.predict import LatencyPredictor

    return LatencyPredictor(**{**FAST_PREDICTOR, "n_estimators": 10}).fit(REAL_TABLE)


@pytest.fixture(scope="session")
def predictor_file(fitted_predictor, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: ANN001
    """The fitted predictor saved with skops."""
    return fitted_predictor.save(tmp_path_factory.mktemp("pred") / "cpu_torch.skops")


@pytest.fixture
def predictor_copy(predictor_file: Path, tmp_path: Path) -> Path:
    """A private copy of the predictor file, free to mutate."""
    dst = tmp_path / "copy.skops"
    shutil.copyfile(predictor_file, dst)
    return dst

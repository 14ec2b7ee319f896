"""``FAST_PREDICTOR``: the one fast predictor preset (training path, ``hwprune prune``, benchmarks, tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwprune.callbacks.predictor_factory import FAST_PREDICTOR
from hwprune.predict import LatencyPredictor

TABLE = Path(__file__).resolve().parents[2] / "tables" / "cpu_torch" / "small_resnet_28.csv"


def test_preset_fits_extra_trees_without_a_model_search() -> None:
    pred = LatencyPredictor(**FAST_PREDICTOR).fit(TABLE)
    assert (pred.estimator_kind_, pred.transform_) == ("extra_trees", "log_per_flop")
    assert len(pred.estimator_.estimators_) == 100
    assert not pred.validation_ and not pred.cv_results_  # no cross-validation: a fit takes seconds
    default = LatencyPredictor()
    assert (default.cv_folds, default.n_estimators) != (
        FAST_PREDICTOR["cv_folds"],
        FAST_PREDICTOR["n_estimators"],
    )


def test_preset_is_read_only_and_copies_override_it() -> None:
    with pytest.raises(TypeError):
        FAST_PREDICTOR["n_estimators"] = 5  # type: ignore[index]
    small = {**FAST_PREDICTOR, "n_estimators": 5}
    assert LatencyPredictor(**small).n_estimators == 5 and FAST_PREDICTOR["n_estimators"] == 100

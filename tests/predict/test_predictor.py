"""LatencyPredictor: scikit-learn conventions, predictions, predict_model, calibrate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from hwprune.contract import CONFIG_COLUMNS
from hwprune.measure import CONFIG_COLUMNS as MEASURE_CONFIG_COLUMNS
from hwprune.measure import conv_layer_configs, read_table
from hwprune.models.factory import build_model
from hwprune.predict import LatencyPredictor, build_features, feature_names
from hwprune.predict.features import config_frame, layer_key


def test_config_columns_match_measurement_contract() -> None:
    assert CONFIG_COLUMNS == tuple(MEASURE_CONFIG_COLUMNS)


def test_init_only_stores_params_and_clone_round_trips() -> None:
    pred = LatencyPredictor(estimator="extra_trees", cv_folds=3, n_estimators=7)
    assert pred.get_params() == {
        "estimator": "extra_trees",
        "target_transform": "auto",
        "cv_folds": 3,
        "n_estimators": 7,
        "random_state": 0,
    }
    assert not [k for k in vars(pred) if k.endswith("_")]
    assert clone(pred).get_params() == pred.get_params()


def test_unfitted_raises_standard_error() -> None:
    row = dict(
        batch=1,
        in_channels=8,
        out_channels=8,
        height=8,
        width=8,
        kernel_size=3,
        stride=1,
        padding=1,
        groups=1,
    )
    with pytest.raises(NotFittedError):
        LatencyPredictor().predict([row])
    with pytest.raises(NotFittedError):
        LatencyPredictor().save("never.skops")


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"estimator": "svm"}, "`estimator` must be any of"),
        ({"target_transform": "sqrt"}, "`target_transform` must be any of"),
        ({"cv_folds": 1}, "`cv_folds` must be 0"),
        ({"cv_folds": 0}, "`cv_folds` must be >= 2 when"),
        (
            {"n_estimators": 0, "estimator": "extra_trees", "target_transform": "log"},
            "`n_estimators` must be",
        ),
    ],
)
def test_fit_validates_params(params: dict, match: str, tiny_table: Path) -> None:
    with pytest.raises(ValueError, match=match):
        LatencyPredictor(**params).fit(tiny_table)


def test_fit_sets_fitted_state(fitted: LatencyPredictor, tiny_table: Path) -> None:
    df = read_table(tiny_table)
    assert fitted.target_ == "cpu_torch"
    assert fitted.backend_ == "torch_cpu" and fitted.dtypes_ == ("float32",)
    assert fitted.n_train_rows_ == len(df)
    assert set(fitted.validation_) >= {"layer_within10", "count_within10", "count_mape"}
    assert 0.0 <= fitted.validation_["count_within10"] <= 1.0
    assert fitted.n_features_in_ == len(feature_names())


def test_predict_is_positive_deterministic_and_accepts_mappings(
    fitted: LatencyPredictor, tiny_table: Path
) -> None:
    df = read_table(tiny_table)
    a = fitted.predict(df)
    b = fitted.predict(df[list(CONFIG_COLUMNS)].to_dict("records"))
    assert a.shape == (len(df),) and a.dtype == np.float64
    assert np.all(a > 0)
    np.testing.assert_array_equal(a, b)
    assert fitted.predict(df.iloc[:0]).shape == (0,)
    # in-sample the boosted trees should land near the medians they were fitted on
    assert np.median(np.abs(a / df["latency_ms"].to_numpy() - 1)) < 0.10


def test_predict_rejects_bad_configs(fitted: LatencyPredictor, tiny_table: Path) -> None:
    df = read_table(tiny_table)
    with pytest.raises(ValueError, match="must have the columns"):
        fitted.predict(df.drop(columns=["groups"]))
    with pytest.raises(ValueError, match="dtype must be one this predictor was fitted on"):
        fitted.predict(df.assign(dtype="float16"))
    with pytest.raises(ValueError, match="must be positive"):
        fitted.predict(df.assign(out_channels=0))


def test_fit_rejects_mixed_targets(tiny_table: Path) -> None:
    df = read_table(tiny_table)
    df.loc[0, "target"] = "other"
    with pytest.raises(ValueError, match="must hold one target"):
        LatencyPredictor(estimator="extra_trees", target_transform="log", cv_folds=0).fit(df)


def test_auto_selection_records_all_candidates(tiny_table: Path) -> None:
    pred = LatencyPredictor(cv_folds=2, n_estimators=20).fit(tiny_table)
    assert len(pred.cv_results_) == 4
    assert (pred.estimator_kind_, pred.transform_) in {
        (r["estimator"], r["transform"]) for r in pred.cv_results_
    }
    best = max(r["layer_within10"] for r in pred.cv_results_)
    assert pred.validation_["layer_within10"] == best


def test_predict_members_needs_extra_trees(fitted: LatencyPredictor, tiny_table: Path) -> None:
    with pytest.raises(ValueError, match="needs estimator='extra_trees'"):
        fitted.predict_members(read_table(tiny_table))
    et = LatencyPredictor(estimator="extra_trees", target_transform="log", cv_folds=0, n_estimators=5)
    members = et.fit(tiny_table).predict_members(read_table(tiny_table))
    assert members.shape[0] == 5 and np.all(members > 0)


def test_predict_model_sums_conv_layers_and_calibrates(fitted: LatencyPredictor) -> None:
    model = build_model("small_resnet")
    per_layer = fitted.conv_latencies(model, (1, 1, 28, 28))
    total = fitted.predict_model(model, (1, 1, 28, 28))
    assert list(per_layer) == [layer.name for layer in conv_layer_configs(model, (1, 1, 28, 28))]
    assert total == pytest.approx(sum(per_layer.values()))
    calibrated = clone(fitted)
    calibrated.__dict__.update({k: v for k, v in vars(fitted).items() if k.endswith("_")})
    # One network cannot separate per-element cost from overhead: all of the rest goes to the overhead.
    calibrated.calibrate([(model, (1, 1, 28, 28), total * 1.5)])
    assert calibrated.elem_ms_per_m_ == 0.0
    assert calibrated.overhead_ms_ == pytest.approx(0.5 * total)
    assert calibrated.predict_model(model, (1, 1, 28, 28)) == pytest.approx(total * 1.5)
    with pytest.raises(ValueError, match="`measurements` must hold at least one"):
        calibrated.calibrate([])
    with pytest.raises(ValueError, match="`measurements` latencies must be finite ms > 0, got -1"):
        calibrated.calibrate([(model, (1, 1, 28, 28), -1)])


def _law(pred: LatencyPredictor, nets: list, shape: tuple, a: float, b: float, floor: float) -> list:
    """Whole-model times that follow the calibration's law exactly, from the predictor's own conv sums."""
    from hwprune.predict.features import config_frame, output_melems

    out = []
    for n in nets:
        cfg = pd.DataFrame([c.config for c in conv_layer_configs(n, shape)])
        c = float(pred.predict(cfg).sum())
        e = float(output_melems(config_frame(cfg, default_dtype="float32")).sum())
        out.append((n, shape, max(c + a * e + b, floor)))
    return out


def test_calibration_recovers_elementwise_cost_overhead_and_floor(fitted: LatencyPredictor) -> None:
    from hwprune.verify.calibration import calibration_variants

    shape = (1, 1, 28, 28)
    dense = build_model("small_resnet")
    nets = [dense, *calibration_variants(dense, shape, ratios=(0.9, 0.7, 0.5, 0.35, 0.25), seed=1)]
    pred = clone(fitted)
    pred.__dict__.update({k: v for k, v in vars(fitted).items() if k.endswith("_")})
    conv = [fitted.predict_model(n, shape) for n in nets]
    # No floor: a and b come back exactly.
    pred.calibrate(_law(pred, nets, shape, a=2.0, b=0.1, floor=0.0))
    assert pred.elem_ms_per_m_ == pytest.approx(2.0, rel=1e-6)
    assert pred.overhead_ms_ == pytest.approx(0.1, rel=1e-6)
    assert pred.floor_ms_ == 0.0
    # A floor between the smallest and the largest network is found, and predict_model respects it.
    floor = sorted(ms for _, _, ms in _law(fitted, nets, shape, 2.0, 0.1, 0.0))[2]
    pred.calibrate(_law(fitted, nets, shape, a=2.0, b=0.1, floor=floor))
    assert pred.floor_ms_ == pytest.approx(floor)
    assert pred.elem_ms_per_m_ == pytest.approx(2.0, rel=1e-6)
    smallest = nets[int(np.argmin(conv))]
    assert pred.predict_model(smallest, shape) == pytest.approx(floor)
    # append=True keeps the earlier measurements.
    n_before = len(pred.calibration_)
    pred.calibrate(_law(fitted, nets[:1], shape, 2.0, 0.1, floor), append=True)
    assert len(pred.calibration_) == n_before + 1


def test_calibration_survives_save_and_load(fitted: LatencyPredictor, tmp_path: Path) -> None:
    shape = (1, 1, 28, 28)
    dense = build_model("small_resnet")
    pred = clone(fitted)
    pred.__dict__.update({k: v for k, v in vars(fitted).items() if k.endswith("_")})
    pred.calibrate([(dense, shape, 2 * fitted.predict_model(dense, shape))])
    back = LatencyPredictor.load(pred.save(tmp_path / "cal.skops"))
    assert back.predict_model(dense, shape) == pytest.approx(pred.predict_model(dense, shape))
    assert back.overhead_ms_ == pytest.approx(pred.overhead_ms_)
    assert len(back.calibration_) == 1


def test_features_expose_tiles() -> None:
    cfg = config_frame(
        [
            dict(
                batch=1,
                in_channels=20,
                out_channels=33,
                height=14,
                width=14,
                kernel_size=3,
                stride=2,
                padding=1,
                groups=1,
            )
        ],
        default_dtype="float32",
    )
    feats = dict(zip(feature_names(), build_features(cfg)[0], strict=True))
    assert feats["out_mod16"] == 1 and feats["out_ceil16"] == 3 and feats["in_ceil8"] == 3
    assert feats["out_height"] == 7
    assert feats["log_flops"] == pytest.approx(np.log(2 * 33 * 7 * 7 * 20 * 9))
    assert layer_key(cfg).iloc[0] == "b1_14x14_k3s2p1_g1_float32"


def test_predict_is_one_vectorised_call_per_batch(fitted: LatencyPredictor, tiny_table: Path) -> None:
    """5,000 rows go to the regressor in one call (no per-row loop); no timing is asserted."""
    df = read_table(tiny_table)
    big = pd.concat([df] * (5000 // len(df) + 1)).iloc[:5000]
    pred = clone(fitted)
    pred.__dict__.update({k: v for k, v in vars(fitted).items() if k.endswith("_")})
    calls: list[int] = []
    inner = fitted.estimator_.predict

    class Spy:
        def predict(self, X: np.ndarray) -> np.ndarray:
            calls.append(len(X))
            return inner(X)

    pred.estimator_ = Spy()
    out = pred.predict(big)
    assert calls == [5000]
    np.testing.assert_array_equal(out, fitted.predict(big))


def test_count_folds_keep_copies_of_a_config_together(tiny_table: Path) -> None:
    """Issue 12, item 13: combined tables repeat configs; a copy must not train its own score."""
    df = read_table(tiny_table)
    doubled = pd.concat([df, df], ignore_index=True)
    pred = LatencyPredictor(estimator="extra_trees", target_transform="log", cv_folds=3, n_estimators=5)
    cfg = config_frame(doubled, default_dtype="float32")
    keys = cfg[list(CONFIG_COLUMNS) + ["dtype"]].astype(str).agg("_".join, axis=1).to_numpy()
    for train, test in pred._splits(np.zeros((len(doubled), 1)), keys, "count"):
        assert not set(keys[train]) & set(keys[test])

"""Predictor files: round trip, refusals, and malicious files that must never run code."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio

from hwprune.measure import read_table
from hwprune.predict import LatencyPredictor, PredictorFileError
from hwprune.predict import io as pio


class _Boom:
    """Creates a marker file if anything ever reconstructs it through __reduce__."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_round_trip_gives_identical_predictions(
    fitted: LatencyPredictor, saved: Path, tiny_table: Path
) -> None:
    loaded = LatencyPredictor.load(saved, expected_target="cpu_torch")
    df = read_table(tiny_table)
    np.testing.assert_array_equal(loaded.predict(df), fitted.predict(df))
    assert loaded.target_ == fitted.target_ and loaded.n_train_rows_ == fitted.n_train_rows_
    assert loaded.validation_ == pytest.approx(fitted.validation_)
    assert loaded.get_params() == fitted.get_params()


def test_file_carries_metadata(saved: Path) -> None:
    meta = pio.read_file(saved)["meta"]
    for key in (
        "target",
        "backend",
        "device",
        "dtype",
        "feature_schema",
        "hwprune_version",
        "sklearn_version",
        "n_train_rows",
        "validation",
    ):
        assert key in meta, key
    assert meta["target"] == "cpu_torch" and meta["n_train_rows"] > 0


def test_refuses_wrong_target(saved: Path) -> None:
    with pytest.raises(
        PredictorFileError, match="fitted for target 'cpu_torch', but target 'jetson' is expected"
    ):
        LatencyPredictor.load(saved, expected_target="jetson")


def test_refuses_wrong_schema(saved: Path) -> None:
    with pytest.raises(PredictorFileError, match="uses feature schema 1, but schema 99 is expected"):
        LatencyPredictor.load(saved, expected_schema=99)


def test_refuses_other_sklearn_minor(fitted: LatencyPredictor, tmp_path: Path) -> None:
    payload = {
        "format": pio.FILE_FORMAT,
        "format_version": pio.FILE_FORMAT_VERSION,
        "meta": {**fitted.metadata(), "sklearn_version": "1.2.0"},
        "estimator": fitted.estimator_,
    }
    path = pio.write_file(payload, tmp_path / "old.skops")
    with pytest.raises(PredictorFileError, match="written with scikit-learn 1.2.0"):
        LatencyPredictor.load(path)
    with pytest.warns(UserWarning, match="refit it"):
        loaded = LatencyPredictor.load(path, allow_version_mismatch=True)
    assert loaded.target_ == "cpu_torch"


def test_refuses_truncated_file(saved: Path, tmp_path: Path) -> None:
    data = saved.read_bytes()
    bad = tmp_path / "truncated.skops"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(PredictorFileError, match="not a skops zip|truncated or corrupt"):
        LatencyPredictor.load(bad)


def test_refuses_skops_file_that_is_not_a_predictor(tmp_path: Path) -> None:
    path = tmp_path / "other.skops"
    sio.dump({"hello": 1}, path)
    with pytest.raises(PredictorFileError, match="not a hwprune latency predictor"):
        LatencyPredictor.load(path)


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LatencyPredictor.load(tmp_path / "nope.skops")


def test_pickle_payload_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned_pickle"
    path = tmp_path / "evil.skops"
    path.write_bytes(pickle.dumps(_Boom(str(marker))))
    with pytest.raises(PredictorFileError, match="not a skops zip archive"):
        LatencyPredictor.load(path)
    assert not marker.exists()


def test_pickle_hidden_in_a_zip_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned_zip"
    path = tmp_path / "evil_zip.skops"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(
            "schema.json", '{"__class__": "dict", "__module__": "builtins", "__loader__": "DictNode"}'
        )
        zf.writestr("payload.pkl", pickle.dumps(_Boom(str(marker))))
    with pytest.raises(PredictorFileError):
        LatencyPredictor.load(path)
    assert not marker.exists()


def test_skops_file_with_untrusted_type_never_runs(fitted: LatencyPredictor, tmp_path: Path) -> None:
    marker = tmp_path / "pwned_skops"
    path = tmp_path / "evil_types.skops"
    payload = {
        "format": pio.FILE_FORMAT,
        "format_version": pio.FILE_FORMAT_VERSION,
        "meta": fitted.metadata(),
        "estimator": fitted.estimator_,
        "extra": _Boom(str(marker)),
    }
    sio.dump(payload, path)
    assert not marker.exists()  # dumping must not have run it either
    with pytest.raises(PredictorFileError, match="not on hwprune's allow-list"):
        LatencyPredictor.load(path)
    assert not marker.exists()


def test_refuses_a_file_whose_metadata_was_edited(saved: Path, tmp_path: Path) -> None:
    """Issue 18, item 9: a target renamed inside the archive no longer loads as normal."""
    edited = tmp_path / "edited.skops"
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(edited, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "schema.json":
                assert b'\\"cpu_torch\\"' in data  # a JSON string inside skops' JSON schema
                data = data.replace(b'\\"cpu_torch\\"', b'\\"jetson_orin_cudnn\\"')
            dst.writestr(item, data)
    with pytest.raises(
        PredictorFileError, match=r"metadata that was changed after it was saved \(target now"
    ):
        LatencyPredictor.load(edited)
    assert LatencyPredictor.load(saved).target_ == "cpu_torch"  # the untouched file still loads

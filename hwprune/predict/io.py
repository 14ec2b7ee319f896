"""Predictor files: skops archives that run no code when loaded.

A predictor file is a skops zip (``skops.io.dump``) of a plain dict: a format tag, the metadata (target,
backend, device, dtype, feature-schema version, hwprune and scikit-learn versions, training row count,
validation metrics) and the fitted scikit-learn regressor. Pickle and plain joblib are never used: they run
arbitrary code on load (and nn-Meter's pickled predictors broke with scikit-learn 1.3, nn-Meter #131).

Loading first lists the file's types with ``skops.io.get_untrusted_types``, which reads only the JSON
schema, and refuses the file if any type is outside :data:`TRUSTED_TYPES`, an explicit allow-list of the
scikit-learn tree types this package writes. Only then is the file loaded, with exactly that allow-list.

Version policy: a file written with another scikit-learn *major.minor* is refused (tree internals change
between minor releases), with a hint to refit; ``allow_version_mismatch=True`` turns that into a warning.
A different patch release loads silently.

skops is imported only when a file is written or read: on import it walks every scikit-learn module, which
imports torch (scikit-learn's array-API shim) where torch is installed, and fitting or predicting a table
needs neither.
"""

from __future__ import annotations

import logging
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import sklearn

log = logging.getLogger(__name__)

__all__ = [
    "FILE_FORMAT",
    "FILE_FORMAT_VERSION",
    "TRUSTED_TYPES",
    "PredictorFileError",
    "meta_digest",
    "read_file",
    "write_file",
]

FILE_FORMAT: str = "hwprune-latency-predictor"
FILE_FORMAT_VERSION: int = 1

TRUSTED_TYPES: tuple[str, ...] = (
    # The only types skops does not trust by default that a hwprune predictor holds.
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
)
"""Types beyond skops' built-in safe set that a predictor file may contain; anything else is refused."""


class PredictorFileError(ValueError):
    """A predictor file cannot be loaded: corrupt, not a predictor, unsafe, or not what the caller expects."""


def meta_digest(meta: dict[str, Any]) -> str:
    """SHA-256 of a predictor's metadata, as :func:`write_file` stores it beside the metadata.

    A file whose metadata was edited by hand (a target renamed inside the archive) no longer matches and
    is refused on load. It catches edits, not forgeries: anyone can recompute it.

    Example:
        >>> meta_digest({"target": "cpu_torch"})[:12]
        'dc05da8a9816'
    """
    import hashlib
    import json

    return hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def _version_tuple(version: str) -> tuple[int, ...]:
    parts: list[int] = []
    for p in version.split(".")[:2]:
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def write_file(payload: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a predictor payload with skops.

    Args:
        payload: The dict built by :meth:`hwprune.predict.LatencyPredictor.save`.
        path: Output file; parent folders are created. ``.skops`` is the conventional suffix.

    Returns:
        The path written.

    Example:
        >>> write_file({"format": FILE_FORMAT}, "/tmp/x.skops")  # doctest: +SKIP
    """
    import skops.io as sio

    if isinstance(payload.get("meta"), dict):
        payload = {**payload, "meta_digest": meta_digest(payload["meta"])}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    sio.dump(payload, tmp, compression=zipfile.ZIP_DEFLATED)
    os.replace(tmp, path)  # a crash mid-write never leaves a truncated predictor under the real name
    return path


def read_file(
    path: str | os.PathLike[str],
    *,
    expected_target: str | None = None,
    expected_schema: int | None = None,
    allow_version_mismatch: bool = False,
) -> dict[str, Any]:
    """Read and check a predictor file without running any code from it.

    Args:
        path: A file written by :func:`write_file`.
        expected_target: If given, the file's target must equal it.
        expected_schema: If given, the file's feature-schema version must equal it.
        allow_version_mismatch: Warn instead of refusing a file from another scikit-learn major.minor.

    Returns:
        The payload dict.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        PredictorFileError: If the file is not a zip (e.g. a pickle), is truncated or corrupt, holds a type
            outside :data:`TRUSTED_TYPES`, is not a hwprune predictor, its metadata was edited after it was
            saved (:func:`meta_digest`), or its target, feature schema or scikit-learn version differs
            from what is expected.

    Example:
        >>> payload = read_file("pred.skops", expected_target="cpu_torch")  # doctest: +SKIP
    """
    import skops.io as sio

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictor file {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise PredictorFileError(
            f"{path} is not a predictor file: not a skops zip archive (a truncated or partial copy, or a "
            "pickle: pickle and joblib files are refused because loading them can run arbitrary code); copy "
            "it again, or refit it with `hwprune fit`"
        )
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as err:  # skops raises assorted errors on a corrupt schema; all mean "not loadable"
        raise PredictorFileError(
            f"{path} is not a valid predictor file (truncated or corrupt?): {err}"
        ) from err
    unknown = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if unknown:
        raise PredictorFileError(
            f"{path} holds types that are not on hwprune's allow-list and could run code on load: {unknown}; "
            "refusing to load it"
        )
    try:
        payload = sio.load(path, trusted=list(TRUSTED_TYPES))
    except Exception as err:
        raise PredictorFileError(f"{path} could not be loaded (truncated or corrupt?): {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != FILE_FORMAT:
        raise PredictorFileError(f"{path} is a skops file but not a hwprune latency predictor")
    if payload.get("format_version") != FILE_FORMAT_VERSION:
        raise PredictorFileError(
            f"{path} has predictor file format {payload.get('format_version')!r}, this hwprune reads "
            f"{FILE_FORMAT_VERSION}; refit it with `hwprune fit`"
        )
    meta = payload.get("meta")
    if not isinstance(meta, dict):
        raise PredictorFileError(f"{path} has no metadata")
    if "meta_digest" in payload and payload["meta_digest"] != meta_digest(meta):
        raise PredictorFileError(
            f"{path} has metadata that was changed after it was saved (target now {meta.get('target')!r}): "
            "its digest no longer matches, so its target, schema and calibration cannot be trusted; refit it "
            "with `hwprune fit`, or save the predictor again from Python after changing it"
        )
    if expected_target is not None and meta.get("target") != expected_target:
        raise PredictorFileError(
            f"{path} was fitted for target {meta.get('target')!r}, but target {expected_target!r} is "
            "expected: a predictor is only valid on the device and backend it was measured on"
        )
    if expected_schema is not None and meta.get("feature_schema") != expected_schema:
        raise PredictorFileError(
            f"{path} uses feature schema {meta.get('feature_schema')!r}, but schema {expected_schema!r} is "
            "expected; refit it with `hwprune fit`"
        )
    saved = str(meta.get("sklearn_version", "?"))
    if _version_tuple(saved) != _version_tuple(sklearn.__version__):
        msg = (
            f"{path} was written with scikit-learn {saved}, this is {sklearn.__version__}: tree internals "
            "differ between minor releases, refit it with `hwprune fit TABLE --out PRED`"
        )
        if not allow_version_mismatch:
            raise PredictorFileError(msg)
        warnings.warn(msg, UserWarning, stacklevel=3)
    for key in ("validation",):
        if key in meta and isinstance(meta[key], dict):
            meta[key] = {k: (float(v) if isinstance(v, np.floating) else v) for k, v in meta[key].items()}
    return payload

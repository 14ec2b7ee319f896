"""The file side of a latency predictor: the metadata it carries, ``save`` and ``load``.

:class:`PredictorFileMixin` holds the part of :class:`~hwprune.predict.predictor.LatencyPredictor` that
writes and reads predictor files (the skops format itself is :mod:`hwprune.predict.io`). A file records
its *kind* in its metadata (none: ``plain``); :data:`PREDICTOR_KINDS` names the class that reads each kind,
so that ``LatencyPredictor.load`` returns an :class:`~hwprune.predict.adapt.AdaptedPredictor` for an
adapted file without the base class importing its subclass: the class is looked up by its dotted path
when such a file is read.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import sklearn
from sklearn.utils.validation import check_is_fitted

from hwprune.predict import io as pio
from hwprune.predict.features import FEATURE_SCHEMA_VERSION, DevicePeaks, feature_names

__all__ = ["PREDICTOR_KINDS", "PredictorFileMixin", "predictor_class"]

PREDICTOR_KINDS: dict[str, str] = {
    "plain": "hwprune.predict.predictor.LatencyPredictor",
    "adapted": "hwprune.predict.adapt.model.AdaptedPredictor",
}
"""The class that reads each kind of predictor file (its metadata's ``kind``; a file without one is plain)."""


def predictor_class(kind: str, path: str | os.PathLike[str]) -> type[PredictorFileMixin]:
    """The class that reads a predictor file of ``kind`` (:data:`PREDICTOR_KINDS`), imported on first use.

    Args:
        kind: The file's kind.
        path: The file (named in the error).

    Returns:
        The class.

    Raises:
        PredictorFileError: If ``kind`` is not one of :data:`PREDICTOR_KINDS`.

    Example:
        >>> predictor_class("plain", "pred.skops").__name__
        'LatencyPredictor'
    """
    if kind not in PREDICTOR_KINDS:
        raise pio.PredictorFileError(
            f"{path} is a predictor of kind {kind!r}, this hwprune reads {sorted(PREDICTOR_KINDS)}; "
            "refit it with `hwprune fit`"
        )
    module, _, name = PREDICTOR_KINDS[kind].rpartition(".")
    klass: type[PredictorFileMixin] = getattr(importlib.import_module(module), name)
    return klass


class PredictorFileMixin:
    """The file methods of :class:`~hwprune.predict.predictor.LatencyPredictor`.

    A mixin, not a predictor of its own: :meth:`metadata` reads the fitted attributes, and :meth:`load`
    builds the predictor with the reading class's :meth:`_from_payload`, which each predictor class
    defines (it knows its own parameters and regressors).
    """

    FILE_KIND: ClassVar[str] = "plain"
    """The kind of file this class writes and reads (a key of :data:`PREDICTOR_KINDS`)."""

    if TYPE_CHECKING:
        estimator_: Any
        estimator_kind_: str
        transform_: str
        peaks_: DevicePeaks
        target_: str
        backend_: str
        device_: str
        dtype_: str
        dtypes_: tuple[str, ...]
        batches_: tuple[int, ...]
        layer_shapes_: tuple[str, ...]
        n_train_rows_: int
        train_digest_: str
        validation_: dict[str, float]
        cv_results_: list[dict[str, Any]]
        elem_ms_per_m_: float
        overhead_ms_: float
        floor_ms_: float
        calibration_: list[dict[str, Any]]
        n_features_in_: int

        def get_params(self, deep: bool = True) -> dict[str, Any]: ...

    def metadata(self) -> dict[str, Any]:
        """The metadata a saved file carries.

        Returns:
            target, backend, device, dtype, feature_schema, hwprune/sklearn versions, n_train_rows,
            validation metrics, and the chosen estimator and transform.

        Raises:
            sklearn.exceptions.NotFittedError: If not fitted.

        Example:
            >>> pred.metadata()["target"]  # doctest: +SKIP
            'cpu_torch'
        """
        check_is_fitted(self, "estimator_")
        from importlib.metadata import PackageNotFoundError, version

        try:
            hw_version = version("hwprune")
        except PackageNotFoundError:
            hw_version = "unknown"
        return {
            "target": self.target_,
            "backend": self.backend_,
            "device": self.device_,
            "dtype": self.dtype_,
            "dtypes": list(self.dtypes_),
            "batches": list(getattr(self, "batches_", ())),
            "layer_shapes": list(getattr(self, "layer_shapes_", ())),
            "feature_schema": FEATURE_SCHEMA_VERSION,
            "feature_names": feature_names(),
            "hwprune_version": hw_version,
            "sklearn_version": sklearn.__version__,
            "n_train_rows": int(self.n_train_rows_),
            "train_digest": str(getattr(self, "train_digest_", "")),
            "validation": {k: float(v) for k, v in self.validation_.items()},
            "estimator_kind": self.estimator_kind_,
            "transform": self.transform_,
            "elem_ms_per_m": float(self.elem_ms_per_m_),
            "overhead_ms": float(self.overhead_ms_),
            "floor_ms": float(self.floor_ms_),
            "calibration": list(self.calibration_),
            "peaks": {k: (None if v is None else float(v)) for k, v in asdict(self.peaks_).items()},
            "params": {k: v for k, v in self.get_params().items()},
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save with skops (never pickle) together with :meth:`metadata`.

        Args:
            path: Output file, conventionally ``*.skops``.

        Returns:
            The path written.

        Raises:
            sklearn.exceptions.NotFittedError: If not fitted.

        Example:
            >>> pred.save("predictors/cpu_torch.skops")  # doctest: +SKIP
        """
        payload = {
            "format": pio.FILE_FORMAT,
            "format_version": pio.FILE_FORMAT_VERSION,
            "meta": self.metadata(),
            "estimator": self.estimator_,
        }
        return pio.write_file(payload, path)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        expected_target: str | None = None,
        expected_schema: int | None = FEATURE_SCHEMA_VERSION,
        allow_version_mismatch: bool = False,
    ) -> Self:
        """Load a predictor file safely.

        Args:
            path: A file written by :meth:`save`.
            expected_target: Refuse the file unless it was fitted for this target.
            expected_schema: Refuse the file unless it uses this feature schema (default: this version's,
                :data:`hwprune.predict.features.FEATURE_SCHEMA_VERSION`; ``None`` skips the check, but
                predicting still needs the current schema).
            allow_version_mismatch: Warn instead of refusing a file from another scikit-learn major.minor.

        Returns:
            A fitted predictor whose predictions equal the saved one's, of the class its kind names
            (:data:`PREDICTOR_KINDS`): ``LatencyPredictor.load`` returns an
            :class:`~hwprune.predict.adapt.AdaptedPredictor` for an adapted file.

        Raises:
            FileNotFoundError: If ``path`` does not exist.
            PredictorFileError: On any load failure: not a skops zip (a pickle), truncated, a type off the
                allow-list, not a predictor, a target, schema or version mismatch, or a kind this class
                does not read (``AdaptedPredictor.load`` of a plain file). Nothing in the file is ever
                executed.

        Example:
            >>> pred = LatencyPredictor.load("pred.skops", expected_target="cpu_torch")  # doctest: +SKIP
        """
        payload = pio.read_file(
            path,
            expected_target=expected_target,
            expected_schema=expected_schema,
            allow_version_mismatch=allow_version_mismatch,
        )
        meta = payload["meta"]
        if meta.get("feature_schema") != FEATURE_SCHEMA_VERSION:
            raise pio.PredictorFileError(
                f"{path} uses feature schema {meta.get('feature_schema')!r}; this hwprune computes schema "
                f"{FEATURE_SCHEMA_VERSION}, so it cannot predict with it; refit it with `hwprune fit`"
            )
        kind = str(meta.get("kind", "plain"))
        klass = cls if kind == cls.FILE_KIND else predictor_class(kind, path)
        if not issubclass(klass, cls):
            raise pio.PredictorFileError(
                f"{path} is a {kind} latency predictor, not an {cls.FILE_KIND} one; load it with "
                f"{klass.__name__}.load"
            )
        return klass._from_payload(payload, path)

    @classmethod
    def _from_payload(cls, payload: Mapping[str, Any], path: str | os.PathLike[str]) -> Self:
        """Rebuild a fitted predictor from a checked file payload (each predictor class defines it)."""
        raise NotImplementedError(f"{cls.__name__} must define _from_payload to read predictor files")

    def _restore(self, meta: Mapping[str, Any]) -> None:
        """Set the fitted attributes every predictor file carries in its metadata (raises KeyError)."""
        self.peaks_ = DevicePeaks(meta["peaks"].get("gflops"), meta["peaks"].get("gbytes_per_s"))
        self.target_ = str(meta["target"])
        self.backend_ = str(meta["backend"])
        self.device_ = str(meta["device"])
        self.dtypes_ = tuple(str(d) for d in meta["dtypes"])
        self.batches_ = tuple(int(b) for b in meta.get("batches", ()))
        self.layer_shapes_ = tuple(str(k) for k in meta.get("layer_shapes", ()))
        self.dtype_ = str(meta["dtype"])
        self.n_train_rows_ = int(meta["n_train_rows"])
        self.train_digest_ = str(meta.get("train_digest", ""))
        self.validation_ = dict(meta["validation"])
        self.cv_results_ = []
        self.elem_ms_per_m_ = float(meta.get("elem_ms_per_m", 0.0))
        self.overhead_ms_ = float(meta.get("overhead_ms", 0.0))
        self.floor_ms_ = float(meta.get("floor_ms", 0.0))
        self.calibration_ = list(meta.get("calibration", []))
        self.n_features_in_ = len(meta["feature_names"])

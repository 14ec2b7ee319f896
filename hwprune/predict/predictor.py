"""The per-target regression latency predictor.

:class:`LatencyPredictor` follows scikit-learn's estimator rules: ``__init__`` only stores parameters,
``fit(table)`` returns ``self``, fitted state lives in trailing-underscore attributes and an unfitted
predictor raises :class:`sklearn.exceptions.NotFittedError`.

It regresses ``log(latency)`` (or ``log(latency / FLOPs)``, the inverse throughput, which varies far less
across layer shapes than latency itself) on the staircase features of :mod:`hwprune.predict.features`, and
chooses the regressor and the target transform by grouped cross-validation, the groups being layer shapes.

What trees can and cannot do: within the channel range a layer was measured on, the tile features pin the
stair edges and predictions are accurate. Outside it (a wider layer than any measured, or a spatial size
never seen) a tree predicts a constant in its leaf. Regressing ``log(latency / FLOPs)`` makes that constant
a throughput rather than a latency, so unseen shapes get the right order of magnitude, but stairs of an
unseen shape are only guessed. Measure the layers you prune; ``hwprune measure --adaptive`` does it cheaply.

This module holds the fitting and predicting parts. Saving and loading files is
:class:`~hwprune.predict.predictor_file.PredictorFileMixin`'s; reading a table
(:func:`~hwprune.predict.tables.load_table`) and the accuracy measures live in
:mod:`hwprune.predict.tables`; pricing a whole network and its end-to-end calibration
(:meth:`LatencyPredictor.predict_model`, :meth:`LatencyPredictor.calibrate`) in
:mod:`hwprune.predict.whole_model`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.ensemble import ExtraTreesRegressor, HistGradientBoostingRegressor
from sklearn.model_selection import GroupKFold, KFold
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from hwprune.contract import CONFIG_COLUMNS
from hwprune.predict import io as pio
from hwprune.predict.features import DevicePeaks, build_features, config_frame, feature_names, layer_key
from hwprune.predict.predictor_file import PredictorFileMixin
from hwprune.predict.tables import (
    TableLike,
    accuracy,
    layer_shapes,
    load_table,
    table_digest,
    table_value,
    warn_on_busy_table,
)
from hwprune.predict.whole_model import WholeModelMixin

log = logging.getLogger(__name__)

__all__ = ["EstimatorKind", "LatencyPredictor", "TargetTransform"]

EstimatorKind = Literal["auto", "hist_gradient_boosting", "extra_trees"]
TargetTransform = Literal["auto", "log", "log_per_flop"]
_ESTIMATORS: tuple[str, ...] = ("hist_gradient_boosting", "extra_trees")
_TRANSFORMS: tuple[str, ...] = ("log", "log_per_flop")
_LOG_FLOPS_COL = feature_names().index("log_flops")


class LatencyPredictor(WholeModelMixin, PredictorFileMixin, BaseEstimator):
    """Predict conv2d latency (ms) on one target from its measurement table.

    Args:
        estimator: ``"hist_gradient_boosting"``, ``"extra_trees"`` or ``"auto"`` (pick by grouped CV).
        target_transform: ``"log"`` (regress log ms), ``"log_per_flop"`` (regress log of ms per FLOP) or
            ``"auto"`` (pick by grouped CV).
        cv_folds: Folds of the grouped cross-validation that chooses the model and yields the validation
            metrics stored with it; 0 skips it (then ``estimator`` and ``target_transform`` must not be
            ``"auto"``).
        n_estimators: Trees of the extra-trees model (boosting iterations are 2.5x this).
        random_state: Seed for the regressors and the fold shuffling; fits are deterministic.

    Attributes:
        target_: The table's target id.
        backend_, device_, dtype_: The table's backend, device and dtype(s) (comma-joined if several).
        dtypes_: dtypes seen in training; predicting another raises.
        batches_: Batch sizes seen in training (the callback warns when it plans for another).
        layer_shapes_: Layer shapes seen in training, as :func:`layer_shapes` names them.
        estimator_: The fitted scikit-learn regressor.
        estimator_kind_, transform_: What the CV chose.
        peaks_: Device peaks from the sidecar.
        n_train_rows_: Training rows.
        train_digest_: :func:`table_digest` of the training table ("" for a file saved before it existed).
        validation_: Cross-validated metrics of the chosen model (``layer_*``: unseen layer shapes,
            ``count_*``: unseen rows of known layers): ``within5``, ``within10``, ``mape``.
        cv_results_: One dict per candidate with its grouped-CV metrics.
        elem_ms_per_m_: Whole-model calibration (:meth:`calibrate`): ms per million output elements of
            a conv, the cost of the BatchNorm, activation and add that follow it (0.0 until calibrated).
        overhead_ms_: Whole-model calibration: ms that do not scale with the channels (launches,
            pooling, the classifier; 0.0 until calibrated; may be negative when isolated conv timings
            run slower than the same convs inside the network).
        floor_ms_: Whole-model calibration: the dispatch floor, below which the network cannot run
            however few channels it keeps (the host launching kernels one by one; 0.0 = none found).
        calibration_: The end-to-end measurements the calibration was fitted on, as plain records
            (conv configs and measured ms), so a refit on a grown table can re-fit the calibration.

    Example:
        >>> pred = LatencyPredictor().fit("tables/cpu_torch/small_resnet_28.csv")  # doctest: +SKIP
        >>> pred.predict([dict(batch=1, in_channels=64, out_channels=48, height=14, width=14,
        ...                    kernel_size=3, stride=1, padding=1, groups=1)])  # doctest: +SKIP
        array([0.0812])
    """

    def __init__(
        self,
        estimator: EstimatorKind = "auto",
        target_transform: TargetTransform = "auto",
        cv_folds: int = 5,
        n_estimators: int = 200,
        random_state: int = 0,
    ) -> None:
        self.estimator = estimator
        self.target_transform = target_transform
        self.cv_folds = cv_folds
        self.n_estimators = n_estimators
        self.random_state = random_state

    # ---------------------------------------------------------------- fitting
    def _check_params(self) -> None:
        if self.estimator not in get_args(EstimatorKind):
            raise ValueError(f"`estimator` must be any of {get_args(EstimatorKind)}, got {self.estimator!r}")
        if self.target_transform not in get_args(TargetTransform):
            raise ValueError(
                f"`target_transform` must be any of {get_args(TargetTransform)}, "
                f"got {self.target_transform!r}"
            )
        if not isinstance(self.cv_folds, int) or self.cv_folds < 0 or self.cv_folds == 1:
            raise ValueError(f"`cv_folds` must be 0 (no CV) or an int >= 2, got {self.cv_folds!r}")
        if self.cv_folds == 0 and "auto" in (self.estimator, self.target_transform):
            raise ValueError(
                "`cv_folds` must be >= 2 when `estimator` or `target_transform` is 'auto', got 0"
            )
        if not isinstance(self.n_estimators, int) or self.n_estimators < 1:
            raise ValueError(f"`n_estimators` must be an int >= 1, got {self.n_estimators!r}")

    def _make(self, kind: str) -> BaseEstimator:
        if kind == "extra_trees":
            return ExtraTreesRegressor(
                n_estimators=self.n_estimators,
                max_features=0.7,
                min_samples_leaf=1,
                n_jobs=1,
                random_state=self.random_state,
            )
        return HistGradientBoostingRegressor(
            max_iter=int(self.n_estimators * 2.5),
            learning_rate=0.08,
            max_leaf_nodes=31,
            min_samples_leaf=3,
            l2_regularization=1e-3,
            early_stopping=False,
            random_state=self.random_state,
        )

    @staticmethod
    def _encode(y_ms: np.ndarray, X: np.ndarray, transform: str) -> np.ndarray:
        z = np.log(y_ms)
        return z - X[:, _LOG_FLOPS_COL] if transform == "log_per_flop" else z

    @staticmethod
    def _decode(z: np.ndarray, X: np.ndarray, transform: str) -> np.ndarray:
        return np.exp(z + X[:, _LOG_FLOPS_COL]) if transform == "log_per_flop" else np.exp(z)

    def _oof(self, kind: str, transform: str, X: np.ndarray, y: np.ndarray, splits: list[Any]) -> np.ndarray:
        """Out-of-fold predictions (ms) of one candidate."""
        out = np.empty_like(y)
        z = self._encode(y, X, transform)
        for tr, te in splits:
            est = self._make(kind).fit(X[tr], z[tr])
            out[te] = self._decode(est.predict(X[te]), X[te], transform)
        return out

    def _splits(self, X: np.ndarray, groups: np.ndarray, by: Literal["layer", "count"]) -> list[Any]:
        """Folds by layer shape (``layer``) or by configuration (``count``): both group their key."""
        n_groups = len(np.unique(groups))
        if n_groups >= 2:
            cv: Any = GroupKFold(
                n_splits=min(self.cv_folds, n_groups), shuffle=True, random_state=self.random_state
            )
            return list(cv.split(X, groups=groups))
        cv = KFold(n_splits=min(self.cv_folds, len(X)), shuffle=True, random_state=self.random_state)
        return list(cv.split(X))

    def fit(self, table: TableLike, y: None = None) -> LatencyPredictor:
        """Fit on one target's measurement table.

        Args:
            table: A measurement CSV path (read with :func:`hwprune.measure.read_table`, device peaks from
                its JSON sidecar) or a DataFrame with the table's columns.
            y: Ignored; present for scikit-learn compatibility (the latency is the table's ``latency_ms``).

        Returns:
            ``self``.

        Raises:
            ValueError: If a parameter is invalid, the table mixes targets, has fewer than 2 rows or a
                non-positive latency (``hwprune.measure.TableError`` is a ValueError too).

        A table with more than 5% of its rows measured under contention or noisy (as
        :func:`hwprune.measure.measure` marks them in ``settings``) is fitted as it is, with a warning
        (:func:`hwprune.measure.contention.warn_on_table`): its latencies are those of a busy machine.

        Example:
            >>> LatencyPredictor(cv_folds=3).fit("tables/cpu_torch/small_resnet_28.csv")  # doctest: +SKIP
        """
        self._check_params()
        df, peaks = load_table(table)
        warn_on_busy_table(df, table)
        # One thread: the 2-core machines this runs on are shared, and OpenMP under oversubscription made a
        # 1-second fit take minutes (2026-11-26). Extra-trees predict in parallel is not bit-deterministic.
        with threadpool_limits(limits=1, user_api="openmp"):
            return self._fit(df, peaks)

    def _fit(self, df: pd.DataFrame, peaks: DevicePeaks) -> LatencyPredictor:
        target = table_value(df, "target", "unknown")
        dtype_default = None if "dtype" in df.columns else "float32"
        cfg = config_frame(df, default_dtype=dtype_default)
        X = build_features(cfg, peaks)
        y_ms = df["latency_ms"].to_numpy(dtype=float)
        groups = layer_key(cfg).to_numpy()

        kinds = _ESTIMATORS if self.estimator == "auto" else (self.estimator,)
        transforms = _TRANSFORMS if self.target_transform == "auto" else (self.target_transform,)
        cv_results: list[dict[str, Any]] = []
        validation: dict[str, float] = {}
        best = (kinds[0], transforms[0])
        if self.cv_folds >= 2:
            layer_splits = self._splits(X, groups, "layer")
            scored = []
            for kind in kinds:
                for tf in transforms:
                    oof = self._oof(kind, tf, X, y_ms, layer_splits)
                    res = {"estimator": kind, "transform": tf, **accuracy(oof, y_ms, "layer_")}
                    cv_results.append(res)
                    scored.append(((res["layer_within10"], -res["layer_mape"]), (kind, tf), res))
                    log.info(
                        "grouped CV %s/%s: within10=%.3f mape=%.2f%%",
                        kind,
                        tf,
                        res["layer_within10"],
                        res["layer_mape"],
                    )
            scored.sort(key=lambda t: t[0], reverse=True)
            best, best_res = scored[0][1], scored[0][2]
            # Unseen counts of known layers, split by configuration: a config measured twice (combined
            # tables repeat rows) never has a copy in the training folds of its own score.
            configs = cfg[list(CONFIG_COLUMNS) + ["dtype"]].astype(str).agg("_".join, axis=1).to_numpy()
            count_oof = self._oof(best[0], best[1], X, y_ms, self._splits(X, configs, "count"))
            validation = {
                **{k: v for k, v in best_res.items() if k.startswith("layer_")},
                **accuracy(count_oof, y_ms, "count_"),
                "n_layer_groups": float(len(np.unique(groups))),
            }

        est = self._make(best[0]).fit(X, self._encode(y_ms, X, best[1]))
        self.estimator_ = est
        self.estimator_kind_ = best[0]
        self.transform_ = best[1]
        self.peaks_ = peaks
        self.target_ = target
        self.backend_ = table_value(df, "backend", "unknown")
        self.device_ = table_value(df, "device", "unknown")
        self.dtypes_ = tuple(sorted(pd.unique(cfg["dtype"])))
        self.batches_ = tuple(sorted(int(b) for b in pd.unique(cfg["batch"])))
        self.layer_shapes_ = tuple(sorted(set(layer_shapes(cfg))))
        self.dtype_ = ",".join(self.dtypes_)
        self.n_train_rows_ = len(df)
        self.train_digest_ = table_digest(df)
        self.validation_ = validation
        self.cv_results_ = cv_results
        self.elem_ms_per_m_ = 0.0
        self.overhead_ms_ = 0.0
        self.floor_ms_ = 0.0
        self.calibration_: list[dict[str, Any]] = []
        self.n_features_in_ = X.shape[1]
        log.info("fitted %s/%s on %d rows of target %s", best[0], best[1], len(df), target)
        return self

    # ------------------------------------------------------------- predicting
    def _features(self, configs: pd.DataFrame | Sequence[Mapping[str, Any]]) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        default = self.dtypes_[0] if len(self.dtypes_) == 1 else None
        cfg = config_frame(configs, default_dtype=default)
        unseen = sorted(set(pd.unique(cfg["dtype"])) - set(self.dtypes_))
        if unseen:
            raise ValueError(
                f"`configs` dtype must be one this predictor was fitted on {list(self.dtypes_)}, got {unseen}"
            )
        return build_features(cfg, self.peaks_)

    def predict(self, configs: pd.DataFrame | Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Predict the latency in ms of each config.

        Args:
            configs: Rows with the table's config columns (``batch, in_channels, out_channels, height,
                width, kernel_size, stride, padding, groups``) and optionally ``dtype`` (default: the
                training dtype when there was only one). Extra columns are ignored.

        Returns:
            A float64 array of latencies in ms, one per row; deterministic.

        Raises:
            sklearn.exceptions.NotFittedError: If the predictor is not fitted.
            ValueError: If a column is missing or invalid, or a dtype was not in the training table.

        Example:
            >>> pred.predict(pd.DataFrame([layer.config for layer in layers]))  # doctest: +SKIP
        """
        if len(configs) == 0:
            check_is_fitted(self, "estimator_")
            return np.zeros(0, dtype=np.float64)
        X = self._features(configs)
        with threadpool_limits(limits=1, user_api="openmp"):
            z = self.estimator_.predict(X)
        return self._decode(z, X, self.transform_).astype(np.float64)

    def predict_members(self, configs: pd.DataFrame | Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Predict with every member of an extra-trees ensemble (for uncertainty, e.g. adaptive profiling).

        Args:
            configs: As for :meth:`predict`.

        Returns:
            An array ``(n_members, n_rows)`` of latencies in ms.

        Raises:
            ValueError: If the fitted regressor is not an ensemble of trees (``estimator="extra_trees"``).

        Example:
            >>> spread = LatencyPredictor(estimator="extra_trees", target_transform="log",
            ...     cv_folds=0).fit(df).predict_members(df).std(axis=0)  # doctest: +SKIP
        """
        X = self._features(configs)
        if not isinstance(self.estimator_, ExtraTreesRegressor):
            raise ValueError(
                "`predict_members` needs estimator='extra_trees', this predictor uses "
                f"{self.estimator_kind_!r}"
            )
        return np.stack([self._decode(t.predict(X), X, self.transform_) for t in self.estimator_.estimators_])

    # ------------------------------------------------------------------ files
    @classmethod
    def _from_payload(cls, payload: Mapping[str, Any], path: str | os.PathLike[str]) -> LatencyPredictor:
        """Rebuild a fitted predictor from a checked file payload (``meta`` and ``estimator``).

        The files part (``metadata``, ``save``, ``load``) is :class:`PredictorFileMixin`'s.
        """
        meta = payload["meta"]
        est = payload["estimator"]
        if not isinstance(est, ExtraTreesRegressor | HistGradientBoostingRegressor):
            raise pio.PredictorFileError(f"{path} holds a {type(est).__name__}, not a hwprune regressor")
        try:
            params = {
                k: meta["params"][k]
                for k in ("estimator", "target_transform", "cv_folds", "n_estimators", "random_state")
            }
            obj = cls(**params)
            obj.estimator_ = est
            obj.estimator_kind_ = str(meta["estimator_kind"])
            obj.transform_ = str(meta["transform"])
            obj._restore(meta)
        except (KeyError, TypeError, AttributeError) as err:
            raise pio.PredictorFileError(f"{path} has incomplete metadata: {err!r}") from err
        if obj.transform_ not in _TRANSFORMS or obj.estimator_kind_ not in _ESTIMATORS:
            raise pio.PredictorFileError(f"{path} names an unknown estimator or transform")
        return obj

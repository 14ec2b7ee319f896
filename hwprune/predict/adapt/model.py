"""The adapted predictor: the prior's prediction times a correction fitted on a new target's few rows.

:class:`AdaptedPredictor` is a :class:`~hwprune.predict.LatencyPredictor`; :func:`adapt` fits one. The
corrections (``offset``, ``trees``, ``ridge_trees``, ``prior_feature`` and their ``blend``) are described in
:mod:`hwprune.predict.adapt`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, get_args

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from hwprune.contract import CONFIG_COLUMNS
from hwprune.predict import io as pio
from hwprune.predict.adapt.corrections import (
    BLEND,
    CORRECTIONS,
    Correction,
    fit_part,
    fit_parts,
    part_members,
    parts_from_payload,
    predict_parts,
)
from hwprune.predict.adapt.prior import PriorLike, check_overlap, load_prior, prior_log
from hwprune.predict.features import build_features, config_frame
from hwprune.predict.predictor import LatencyPredictor
from hwprune.predict.tables import (
    TableLike,
    accuracy,
    layer_shapes,
    load_table,
    table_value,
    warn_on_busy_table,
    within_share,
)

log = logging.getLogger(__name__)

__all__ = ["AdaptedPredictor", "adapt"]


class AdaptedPredictor(LatencyPredictor):
    """A latency predictor for a new target: the prior's prediction times a correction fitted on few rows.

    ``log ms = base + correction``: ``base`` is the prior's log-latency prediction of the same conv (at the
    prior's dtype and nearest batch), or for ``prior_feature`` the log FLOPs (trees then regress log ms
    per FLOP with the prior's prediction as a feature). ``blend`` (the default) averages the log
    predictions of ``trees``, ``ridge_trees`` and ``prior_feature``. See the module docstring.

    Args:
        prior: The old target's predictor, predictor file or table (see :func:`load_prior`).
        correction: ``"blend"`` (default), ``"offset"``, ``"trees"``, ``"ridge_trees"``,
            ``"prior_feature"``, or ``"auto"`` (the one of these five that cross-validates best on the
            new rows: with a few hundred rows that choice is noisy, so ``blend`` is the default).
        cv_folds: Folds (grouped by configuration) of the cross-validation that yields the validation
            metrics (and the choice of ``"auto"``); 0 skips it (then ``correction`` must not be ``"auto"``).
        n_estimators: Trees of each tree correction.
        random_state: Seed of the trees and the folds; fits are deterministic.

    Attributes:
        prior_: The fitted prior (a plain :class:`~hwprune.predict.LatencyPredictor`).
        correction_: The correction in use.
        parts_: Its fitted parts, one per correction averaged (three for ``blend``): dicts with ``kind``,
            ``trees`` (extra-trees or None), ``linear`` (the ridge of ``ridge_trees`` or None),
            ``offsets`` (per layer shape log ratio of ``offset``) and ``offset`` (the global one, the
            fallback for a shape never measured).
        estimator_: The first part's trees (None for ``offset``).
        validation_: ``count_within5``, ``count_within10``, ``count_mape`` of the correction on unseen
            configurations of the new target (cross-validated), and ``prior_within10``: the raw prior
            on the new rows.
        cv_results_: One dict per correction scored.
        The rest as :class:`~hwprune.predict.LatencyPredictor`.

    Example:
        >>> pred = AdaptedPredictor(prior="tables/cuda_cudnn_fp32/resnet18_224.csv").fit(
        ...     "h200_300_rows.csv")  # doctest: +SKIP
        >>> pred.predict_model(model, (1, 3, 224, 224))  # doctest: +SKIP
    """

    FILE_KIND: ClassVar[str] = "adapted"  # its files' kind: LatencyPredictor.load returns this class for them

    def __init__(
        self,
        prior: PriorLike | None = None,
        correction: Correction = "blend",
        cv_folds: int = 5,
        n_estimators: int = 100,
        random_state: int = 0,
    ) -> None:
        self.prior = prior
        self.correction = correction
        self.cv_folds = cv_folds
        self.n_estimators = n_estimators
        self.random_state = random_state

    # ------------------------------------------------------------ fitting
    def _check_params(self) -> None:
        if self.prior is None:
            raise ValueError("`prior` must be a predictor, a predictor file or a table, got None")
        if self.correction not in get_args(Correction):
            raise ValueError(f"`correction` must be any of {get_args(Correction)}, got {self.correction!r}")
        if isinstance(self.cv_folds, bool) or not isinstance(self.cv_folds, int) or self.cv_folds in (1,):
            raise ValueError(f"`cv_folds` must be 0 (no CV) or an int >= 2, got {self.cv_folds!r}")
        if self.cv_folds < 0:
            raise ValueError(f"`cv_folds` must be 0 (no CV) or an int >= 2, got {self.cv_folds!r}")
        if self.cv_folds == 0 and self.correction == "auto":
            raise ValueError("`cv_folds` must be >= 2 when `correction` is 'auto', got 0")
        n = self.n_estimators
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"`n_estimators` must be an int >= 1, got {n!r}")

    def _tree_params(self) -> dict[str, int]:
        return {"n_estimators": self.n_estimators, "random_state": self.random_state}

    def fit(self, table: TableLike, y: None = None) -> AdaptedPredictor:
        """Fit the correction on the new target's rows.

        Args:
            table: The new target's measurement table (CSV path or DataFrame, one target).
            y: Ignored (scikit-learn compatibility).

        Returns:
            ``self``.

        Raises:
            ValueError: If a parameter is invalid, the table is invalid or mixes targets, or the prior saw
                none of the table's layer shapes.
            TypeError, FileNotFoundError: As :func:`load_prior`.

        Example:
            >>> AdaptedPredictor(prior="old.skops").fit("new.csv")  # doctest: +SKIP
        """
        self._check_params()
        prior = load_prior(self.prior)
        df, peaks = load_table(table)
        warn_on_busy_table(df, table)
        with threadpool_limits(limits=1, user_api="openmp"):
            return self._fit_adapted(prior, df, peaks)

    def _fit_adapted(self, prior: LatencyPredictor, df: pd.DataFrame, peaks: Any) -> AdaptedPredictor:
        target = table_value(df, "target", "unknown")
        cfg = config_frame(df, default_dtype=None if "dtype" in df.columns else "float32")
        check_overlap(prior, cfg, f"the table of {target!r}")
        X = build_features(cfg, peaks)
        lp = prior_log(prior, cfg)
        shapes = np.asarray(layer_shapes(cfg))
        y = np.log(df["latency_ms"].to_numpy(dtype=float))
        ms = np.exp(y)
        if self.correction == "auto":
            singles, scored_kinds = CORRECTIONS, ("blend", *CORRECTIONS)
        elif self.correction == "blend":
            singles, scored_kinds = BLEND, ("blend",)
        else:
            singles, scored_kinds = (self.correction,), (self.correction,)
        cv_results: list[dict[str, Any]] = []
        validation: dict[str, float] = {}
        best = scored_kinds[0]
        if self.cv_folds >= 2:
            keys = cfg[list(CONFIG_COLUMNS)].astype(str).agg("_".join, axis=1).to_numpy()
            oof = {k: np.empty_like(y) for k in singles}
            for tr, te in self._splits(X, keys, "count"):
                for k in singles:
                    part = fit_part(k, X[tr], lp[tr], shapes[tr], y[tr], **self._tree_params())
                    oof[k][te] = predict_parts([part], X[te], lp[te], shapes[te])
            if "blend" in scored_kinds:
                oof["blend"] = np.mean([oof[k] for k in BLEND], axis=0)
            scored = []
            for k in scored_kinds:
                pred = np.exp(oof[k])
                res = {"correction": k, **accuracy(pred, ms, "count_")}
                cv_results.append(res)
                scored.append(((res["count_within10"], -res["count_mape"]), k, res))
                log.info(
                    "adapt CV %s: within10=%.3f mape=%.2f%%", k, res["count_within10"], res["count_mape"]
                )
            scored.sort(key=lambda t: t[0], reverse=True)
            best, best_res = scored[0][1], scored[0][2]
            validation = {k: float(v) for k, v in best_res.items() if k != "correction"}
        validation["prior_within10"] = within_share(np.exp(lp), ms, 0.10)
        self.prior_ = prior
        self.correction_ = best
        self.parts_ = fit_parts(best, X, lp, shapes, y, **self._tree_params())
        self.estimator_ = self.parts_[0]["trees"]
        self.estimator_kind_ = f"adapted/{best}"
        self.transform_ = "log_ratio"
        self.peaks_ = peaks
        self.target_ = target
        self.backend_ = table_value(df, "backend", "unknown")
        self.device_ = table_value(df, "device", "unknown")
        self.dtypes_ = tuple(sorted(pd.unique(cfg["dtype"])))
        self.batches_ = tuple(sorted(int(b) for b in pd.unique(cfg["batch"])))
        self.layer_shapes_ = tuple(sorted(set(shapes.tolist())))
        self.dtype_ = ",".join(self.dtypes_)
        self.n_train_rows_ = len(df)
        self.validation_ = validation
        self.cv_results_ = cv_results
        self.elem_ms_per_m_ = 0.0
        self.overhead_ms_ = 0.0
        self.floor_ms_ = 0.0
        self.calibration_: list[dict[str, Any]] = []
        self.n_features_in_ = X.shape[1]
        log.info(
            "adapted %s (%s) to %s with %d rows: correction %s, prior alone within ±10%% %.1f%%",
            prior.target_,
            prior.device_,
            target,
            len(df),
            best,
            100 * validation["prior_within10"],
        )
        return self

    # ------------------------------------------------------------ predicting
    def _inputs(self, configs: pd.DataFrame | Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, ...]:
        check_is_fitted(self, "prior_")
        default = self.dtypes_[0] if len(self.dtypes_) == 1 else None
        cfg = config_frame(configs, default_dtype=default)
        unseen = sorted(set(pd.unique(cfg["dtype"])) - set(self.dtypes_))
        if unseen:
            raise ValueError(
                f"`configs` dtype must be one this predictor was fitted on {list(self.dtypes_)}, got {unseen}"
            )
        X = build_features(cfg, self.peaks_)
        return X, prior_log(self.prior_, cfg), np.asarray(layer_shapes(cfg))

    def predict(self, configs: pd.DataFrame | Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Predict the latency in ms of each config on the new target.

        Args:
            configs: As for :meth:`LatencyPredictor.predict`.

        Returns:
            A float64 array of ms, one per row; deterministic.

        Raises:
            sklearn.exceptions.NotFittedError: If not fitted.
            ValueError: If a column is missing or invalid, or a dtype was not in the new table.

        Example:
            >>> pred.predict([dict(batch=1, in_channels=64, out_channels=48, height=56, width=56,
            ...                    kernel_size=3, stride=1, padding=1, groups=1)])  # doctest: +SKIP
        """
        if len(configs) == 0:
            check_is_fitted(self, "prior_")
            return np.zeros(0, dtype=np.float64)
        with threadpool_limits(limits=1, user_api="openmp"):
            X, lp, shapes = self._inputs(configs)
            return np.exp(predict_parts(self.parts_, X, lp, shapes)).astype(np.float64)

    def predict_members(self, configs: pd.DataFrame | Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Predict with every tree of the correction (for uncertainty); parts of a blend are averaged.

        Args:
            configs: As for :meth:`predict`.

        Returns:
            An array ``(n_estimators, n_rows)`` of ms.

        Raises:
            ValueError: If the correction has no trees (``offset``).

        Example:
            >>> pred.predict_members(df).std(axis=0)  # doctest: +SKIP
        """
        check_is_fitted(self, "prior_")
        if all(p["trees"] is None for p in self.parts_):
            raise ValueError(
                f"`predict_members` needs a tree correction, this predictor uses {self.correction_!r}"
            )
        X, lp, shapes = self._inputs(configs)
        return np.exp(part_members(self.parts_, X, lp, shapes, self.n_estimators))

    # ------------------------------------------------------------ files
    def metadata(self) -> dict[str, Any]:
        """The metadata a saved file carries: the base metadata, the prior's, and the correction.

        Returns:
            A dict; ``kind`` is ``"adapted"`` and ``prior`` holds the prior's own metadata.

        Raises:
            sklearn.exceptions.NotFittedError: If not fitted.

        Example:
            >>> pred.metadata()["prior"]["target"]  # doctest: +SKIP
            'cuda_cudnn_fp32'
        """
        check_is_fitted(self, "prior_")
        meta = super().metadata()
        meta.update(
            kind=self.FILE_KIND,
            prior=self.prior_.metadata(),
            correction=self.correction_,
            parts=[
                {
                    "kind": p["kind"],
                    "offsets": {k: float(v) for k, v in p["offsets"].items()},
                    "offset": float(p["offset"]),
                }
                for p in self.parts_
            ],
            params={
                "correction": self.correction,
                "cv_folds": self.cv_folds,
                "n_estimators": self.n_estimators,
                "random_state": self.random_state,
            },
        )
        return meta

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save with skops (never pickle): the correction, the prior's regressor and both metadata.

        Args:
            path: Output file, conventionally ``*.skops``.

        Returns:
            The path written.

        Raises:
            sklearn.exceptions.NotFittedError: If not fitted.

        Example:
            >>> pred.save("predictors/h200_adapted.skops")  # doctest: +SKIP
        """
        payload = {
            "format": pio.FILE_FORMAT,
            "format_version": pio.FILE_FORMAT_VERSION,
            "meta": self.metadata(),
            "estimator": self.estimator_,
            "parts": [{"trees": p["trees"], "linear": p["linear"]} for p in self.parts_],
            "prior_estimator": self.prior_.estimator_,
        }
        return pio.write_file(payload, path)

    @classmethod
    def _from_payload(cls, payload: Mapping[str, Any], path: str | os.PathLike[str]) -> AdaptedPredictor:
        meta = payload["meta"]
        try:
            prior = LatencyPredictor._from_payload(
                {"meta": meta["prior"], "estimator": payload["prior_estimator"]}, path
            )
            parts = parts_from_payload(payload["parts"], meta["parts"], path)
            params = {
                k: meta["params"][k] for k in ("correction", "cv_folds", "n_estimators", "random_state")
            }
            obj = cls(prior=prior, **params)  # the prior as a parameter too: `refit` fits again on it
            obj.prior_ = prior
            obj.correction_ = str(meta["correction"])
            obj.parts_ = parts
            obj.estimator_ = parts[0]["trees"]
            obj.estimator_kind_ = str(meta["estimator_kind"])
            obj.transform_ = str(meta["transform"])
            obj._restore(meta)
        except (KeyError, TypeError, AttributeError, ValueError) as err:
            if isinstance(err, pio.PredictorFileError):
                raise
            raise pio.PredictorFileError(
                f"{path} has incomplete adapted-predictor metadata: {err!r}"
            ) from err
        if not parts or obj.correction_ not in ("blend", *CORRECTIONS):
            raise pio.PredictorFileError(f"{path} names an unknown correction {obj.correction_!r}")
        return obj


def adapt(
    prior: PriorLike,
    new_table: TableLike,
    *,
    correction: Correction = "blend",
    cv_folds: int = 5,
    n_estimators: int = 100,
    random_state: int = 0,
) -> AdaptedPredictor:
    """Fit a predictor for a new target from its few measured rows and an old target's predictor or table.

    Args:
        prior: The old target's fitted predictor, predictor file, or table (see :func:`load_prior`).
        new_table: The new target's measurements (CSV path or DataFrame), e.g. of the configurations
            :func:`select_configs` chose.
        correction: As :class:`AdaptedPredictor`.
        cv_folds: As :class:`AdaptedPredictor`.
        n_estimators: As :class:`AdaptedPredictor`.
        random_state: As :class:`AdaptedPredictor`.

    Returns:
        The fitted :class:`AdaptedPredictor`.

    Raises:
        ValueError, TypeError, FileNotFoundError: As :meth:`AdaptedPredictor.fit`.

    Example:
        >>> pred = adapt("tables/cuda_cudnn_fp32/resnet18_224.csv", "h200.csv")  # doctest: +SKIP
        >>> pred.save("h200.skops")  # doctest: +SKIP
    """
    return AdaptedPredictor(
        prior=load_prior(prior),
        correction=correction,
        cv_folds=cv_folds,
        n_estimators=n_estimators,
        random_state=random_state,
    ).fit(new_table)

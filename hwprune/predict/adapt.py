"""Adapt a latency predictor to a new device or setting from a few hundred measurements.

A full sweep of a model's layer space takes minutes on a GPU and hours on a small board, and every new
batch size, dtype or library version needs one. This module measures at most ``budget`` configurations of
the new target and fits a predictor that takes the old target's knowledge as its prior:

1. :func:`select_configs` chooses where to measure: first every layer shape's dense configuration
   (the planner starts from it), then configurations that cover each residue mod 8 of the out- and
   in-channels not yet measured (tensor-core and SIMD stairs fall on them), then greedily the ones that
   best *represent* the rest of the space (facility location: each candidate counts for how much closer
   it brings every other configuration of its layer shape to a measured one, in (log in, log out,
   residue) space), weighted up where the prior's trees disagree or the prior predicts a stair edge.
   The order does not depend on the budget, so ``select_configs(p, c, 100)`` is the first 100 of
   ``select_configs(p, c, 300)``, and it is deterministic given ``seed``.
2. :func:`adapt` fits an :class:`AdaptedPredictor`: the prior's log-latency prediction for the same conv
   (queried at the prior's dtype and nearest batch) plus a correction fitted on the new rows:

   * ``offset``: one log ratio per layer shape (shrunk towards the global median ratio);
   * ``trees``: extra-trees on the log ratio, with the staircase features and the prior's prediction;
   * ``ridge_trees``: a ridge regression of the log ratio on the prior's prediction and the log work
     features (a smooth device/setting change), then extra-trees on what is left;
   * ``prior_feature``: extra-trees on log latency per FLOP as a scratch fit would, with the prior's
     prediction as one more feature (the trees may ignore a prior that misleads);
   * ``blend`` (the default): the mean, in log space, of the three tree corrections; the most robust
     on the measured pairs, where a choice by cross-validation on a few hundred rows was noisy
     (``auto`` does that choice among all five).

   ``docs/PREDICTOR.md`` ("Adapting to a new target") gives the measured figures of each choice.

:class:`AdaptedPredictor` is a :class:`~hwprune.predict.LatencyPredictor`: the planner,
``predict_model``, ``calibrate``, ``refit``, ``hwprune report`` and skops files (the prior's trees inside,
never pickle) all work on it, and :meth:`LatencyPredictor.load` returns one for an adapted file.
"""

from __future__ import annotations

import logging
import math
import os
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from hwprune.predict import io as pio
from hwprune.predict.features import (
    CONFIG_COLUMNS,
    build_features,
    config_frame,
    feature_names,
)
from hwprune.predict.predictor import (
    LatencyPredictor,
    TableLike,
    _mape,
    _single,
    layer_shapes,
    load_table,
    within_share,
)

log = logging.getLogger(__name__)

__all__ = [
    "PRIOR_PREDICTOR",
    "AdaptResult",
    "AdaptedPredictor",
    "Correction",
    "adapt",
    "load_prior",
    "measure_and_adapt",
    "prior_configs",
    "select_configs",
]

Correction = Literal["blend", "auto", "offset", "trees", "ridge_trees", "prior_feature"]
_CORRECTIONS: tuple[str, ...] = ("offset", "trees", "ridge_trees", "prior_feature")
_BLEND: tuple[str, ...] = ("trees", "ridge_trees", "prior_feature")
_LOG_FLOPS = feature_names().index("log_flops")
_WORK = [
    feature_names().index(n)
    for n in ("log_flops", "log_bytes", "log_intensity", "log_out_elems", "log_in_elems", "log_weight_elems")
]
_SIM_WIDTH = 0.35  # similarity kernel width in log2 channels (0.35: counts 25% apart are alike)
_SHRINK_ROWS = 3.0  # a layer shape's own offset counts as much as the global one after this many rows

PRIOR_PREDICTOR: dict[str, Any] = {
    "estimator": "extra_trees",
    "target_transform": "log_per_flop",
    "cv_folds": 0,
    "n_estimators": 100,
}
"""How a prior given as a table is fitted: extra-trees (their spread guides :func:`select_configs`)."""

PriorLike = LatencyPredictor | pd.DataFrame | str | os.PathLike[str]


# ----------------------------------------------------------------------------------------------- prior
def load_prior(prior: PriorLike) -> LatencyPredictor:
    """Turn a fitted predictor, a predictor file or a measurement table into a fitted prior.

    Args:
        prior: A fitted :class:`~hwprune.predict.LatencyPredictor`, a ``.skops`` predictor file, or a
            measurement table (CSV path or DataFrame), which is fitted with :data:`PRIOR_PREDICTOR`.

    Returns:
        The fitted prior.

    Raises:
        FileNotFoundError: If ``prior`` is a path that does not exist.
        TypeError: If ``prior`` is none of the above, or an :class:`AdaptedPredictor` object.
        sklearn.exceptions.NotFittedError: If ``prior`` is an unfitted predictor.
        ValueError: If the table cannot be fitted (:meth:`LatencyPredictor.fit`), the file is not a
            predictor (:class:`~hwprune.predict.PredictorFileError`) or is an adapted one (adapt from its
            prior or its target's table instead).

    Example:
        >>> prior = load_prior("tables/cuda_cudnn_fp32/resnet18_224.csv")  # doctest: +SKIP
    """
    if isinstance(prior, AdaptedPredictor):
        raise TypeError(
            "`prior` must be a plain LatencyPredictor, a predictor file or a table, got an "
            "AdaptedPredictor: adapt from its prior or from its target's table instead"
        )
    if isinstance(prior, LatencyPredictor):
        check_is_fitted(prior, "estimator_")
        return prior
    if isinstance(prior, pd.DataFrame):
        return LatencyPredictor(**PRIOR_PREDICTOR).fit(prior)
    if isinstance(prior, str | os.PathLike):
        path = Path(prior)
        if not path.is_file():
            raise FileNotFoundError(
                "`prior` must be a predictor file (.skops) or a measurement table (.csv), got "
                f"{str(path)!r}, which does not exist"
            )
        if zipfile.is_zipfile(path):
            loaded = LatencyPredictor.load(path)
            if isinstance(loaded, AdaptedPredictor):
                raise ValueError(
                    f"`prior` {str(path)!r} is an adapted predictor; adapt from its prior or from its "
                    "target's table instead"
                )
            return loaded
        log.info("fitting the prior on table %s", path)
        return LatencyPredictor(**PRIOR_PREDICTOR).fit(path)
    raise TypeError(
        "`prior` must be a LatencyPredictor, a predictor file path or a table (path or DataFrame), got "
        f"{type(prior).__name__}"
    )


def prior_configs(
    prior: LatencyPredictor, configs: pd.DataFrame | Sequence[Mapping[str, Any]]
) -> pd.DataFrame:
    """The same convs as the prior is asked about them: in its dtype, and its nearest batch if it lacks ours.

    An adapted predictor predicts ``prior(prior_configs(prior, x)) * correction(x)``: the prior is never
    asked about a dtype it was not fitted on, and a batch it never saw maps to its nearest (in log).

    Args:
        prior: A fitted predictor.
        configs: Config rows (``dtype`` optional: the prior's when absent).

    Returns:
        A frame with the config columns and ``dtype``.

    Example:
        >>> prior_configs(prior, [dict(batch=32, in_channels=64, out_channels=64, height=56, width=56,
        ...     kernel_size=3, stride=1, padding=1, groups=1, dtype="float16")])  # doctest: +SKIP
    """
    cfg = config_frame(configs, default_dtype=prior.dtypes_[0])
    q = cfg[list(CONFIG_COLUMNS)].copy()
    dtypes = list(prior.dtypes_)
    q["dtype"] = [d if d in dtypes else dtypes[0] for d in cfg["dtype"]]
    batches = list(getattr(prior, "batches_", ()))
    if batches:
        b = q["batch"].to_numpy()
        near = np.array([min(batches, key=lambda x, v=v: (abs(math.log(x / v)), x)) for v in b])
        q["batch"] = np.where(np.isin(b, batches), b, near)
    return q


def _prior_log(prior: LatencyPredictor, cfg: pd.DataFrame) -> np.ndarray:
    return np.log(prior.predict(prior_configs(prior, cfg)))


def _shape_names(cfg: pd.DataFrame) -> np.ndarray:
    """Layer shape with the batch (selection strata): a table may hold several batches."""
    return np.array([f"b{b}_{s}" for b, s in zip(cfg["batch"], layer_shapes(cfg), strict=True)])


def _check_overlap(prior: LatencyPredictor, cfg: pd.DataFrame, what: str) -> None:
    """Refuse a prior that saw none of the new target's layer shapes (it would only extrapolate)."""
    known = set(getattr(prior, "layer_shapes_", ()))
    if not known:  # a file written before layer shapes were recorded: nothing to check against
        return
    new = set(layer_shapes(cfg))
    if not new & known:
        raise ValueError(
            f"`prior` (target {prior.target_!r}) was fitted on layer shapes {sorted(known)[:6]}..., none of "
            f"the {len(new)} shapes of {what} ({sorted(new)[:6]}...): it knows nothing of this layer space; "
            "give a prior measured on the same network"
        )
    missing = new - known
    if missing:
        log.warning(
            "`prior` (target %s) never saw %d of %d layer shapes of %s; its predictions there are guesses",
            prior.target_,
            len(missing),
            len(new),
            what,
        )


# ------------------------------------------------------------------------------------------- selection
def _candidate_frame(candidates: pd.DataFrame | Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    df = candidates if isinstance(candidates, pd.DataFrame) else pd.DataFrame(list(candidates))
    if len(df) == 0:
        raise ValueError("`candidates` must hold at least one configuration, got none")
    missing = [c for c in CONFIG_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"`candidates` must have the keys {list(CONFIG_COLUMNS)}, missing {missing}")
    return df.drop_duplicates(subset=list(CONFIG_COLUMNS)).reset_index(drop=True)


def _edges(cfg: pd.DataFrame, log_pred: np.ndarray, jump: float = 0.05) -> np.ndarray:
    """1.0 next to a predicted stair edge (neighbouring counts of a sweep differ by > ``jump`` in log)."""
    from hwprune.predict.report import stair_series

    bonus = np.zeros(len(cfg))
    for s in stair_series(cfg, min_points=3):
        idx = np.asarray(s.index)
        d = np.abs(np.diff(log_pred[idx])) > jump
        bonus[idx[:-1][d]] = 1.0
        bonus[idx[1:][d]] = 1.0
    return bonus


class _Selector:
    """Greedy, budget-independent order of picks over the candidates (see :func:`select_configs`)."""

    MAX_DEMAND = 1500  # candidates of one shape that the coverage sums over (a seeded sample beyond this)

    def __init__(self, cfg: pd.DataFrame, weight: np.ndarray, seed: int, width: float) -> None:
        self.cin = cin = cfg["in_channels"].to_numpy(dtype=np.int64)
        self.cout = cout = cfg["out_channels"].to_numpy(dtype=np.int64)
        xy = np.column_stack([np.log2(cin), np.log2(cout)])
        rng = np.random.default_rng(seed)
        jitter = rng.uniform(0.0, 1e-9, len(cfg))  # seeded tie-break
        names, inv = np.unique(_shape_names(cfg), return_inverse=True)
        self.blocks: list[dict[str, np.ndarray]] = []
        for k in range(len(names)):
            m = np.flatnonzero(inv == k)
            dem = m if len(m) <= self.MAX_DEMAND else np.sort(rng.choice(m, self.MAX_DEMAND, replace=False))
            d = np.linalg.norm(xy[m][:, None, :] - xy[dem][None, :, :], axis=2)
            d += 0.25 * (cout[m][:, None] % 8 != cout[dem][None, :] % 8)
            d += 0.25 * (cin[m][:, None] % 8 != cin[dem][None, :] % 8)
            size = cin[m] + cout[m]
            self.blocks.append(
                {
                    "members": m,
                    "sim": np.exp(-0.5 * (d / width) ** 2),
                    "w": weight[dem],
                    "cover": np.zeros(len(dem)),
                    "free": np.ones(len(m), dtype=bool),
                    "jitter": jitter[m],
                    "dense": np.array([int(np.lexsort((-cout[m], -size))[0])]),
                }
            )

    @staticmethod
    def _gains(b: Mapping[str, np.ndarray]) -> np.ndarray:
        g = (np.maximum(b["sim"] - b["cover"][None, :], 0.0) * b["w"][None, :]).sum(axis=1) + b["jitter"]
        return np.where(b["free"], g, -np.inf)

    def _take(self, b: dict[str, np.ndarray], j: int, picks: list[int]) -> None:
        b["free"][j] = False
        b["cover"] = np.maximum(b["cover"], b["sim"][j])
        picks.append(int(b["members"][j]))

    def run(self, budget: int) -> list[int]:
        picks: list[int] = []
        # Every shape's dense configuration first (largest shapes first): the planner starts from it.
        for b in sorted(self.blocks, key=lambda b: -len(b["members"])):
            if len(picks) < budget:
                self._take(b, int(b["dense"][0]), picks)
        gains = [self._gains(b) for b in self.blocks]
        total = sum(len(b["members"]) for b in self.blocks)
        covering = True
        while len(picks) < min(budget, total):
            # While a residue mod 8 of the out- or in-channels is missing from the picks (and the space has
            # it), only candidates that add one compete.
            best = gains
            if covering:
                seen_out, seen_in = np.unique(self.cout[picks] % 8), np.unique(self.cin[picks] % 8)
                masks = [
                    b["free"]
                    & (
                        ~np.isin(self.cout[b["members"]] % 8, seen_out)
                        | ~np.isin(self.cin[b["members"]] % 8, seen_in)
                    )
                    for b in self.blocks
                ]
                covering = any(bool(m.any()) for m in masks)
                if covering:
                    best = [np.where(m, g, -np.inf) for m, g in zip(masks, gains, strict=True)]
            k = int(np.argmax([g.max() for g in best]))
            self._take(self.blocks[k], int(np.argmax(best[k])), picks)
            gains[k] = self._gains(self.blocks[k])
        return picks


def select_configs(
    prior: PriorLike,
    candidates: pd.DataFrame | Sequence[Mapping[str, Any]],
    budget: int,
    *,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Choose at most ``budget`` configurations of the new target's layer space to measure.

    The order: (1) each layer shape's dense configuration (most channels; larger shapes first); (2) while
    a residue mod 8 of the out- or in-channels is missing from the picks and the candidates have it, the
    best candidate (as in 3) among those that add one; (3) greedily the candidate of largest gain in
    a weighted facility-location objective: ``sum_j w_j * max(0, sim(i, j) - cover_j)`` over the
    candidates ``j`` of the same layer shape, where ``sim`` is a Gaussian kernel (width 0.35) on the
    distance in (log2 in, log2 out) channel space plus 0.25 for each channel count whose residue mod 8
    differs, ``cover_j`` is ``j``'s best similarity to a pick so far, and the weight ``w = 1 + u + e``
    has ``u`` the prior's tree disagreement (std of log latency over an extra-trees prior's members,
    scaled to [0, 1]; 0 for a boosting prior) and ``e`` 1 next to a stair edge the prior predicts. So
    picks spread like the space itself (representative, not only its corners), denser where the prior
    is unsure. Picks never depend on ``budget``: a smaller budget takes a prefix.

    Args:
        prior: The old target's predictor or table (see :func:`load_prior`).
        candidates: The new target's layer space: config dicts or a DataFrame with
            :data:`~hwprune.predict.features.CONFIG_COLUMNS` (extra keys such as ``layer`` are kept),
            e.g. :func:`hwprune.measure.model_space`. Duplicates are dropped.
        budget: Most configurations to choose (an int >= 1).
        seed: Breaks ties (the order is deterministic given it).

    Returns:
        The chosen candidates as dicts, in pick order (all of them, still in pick order, if ``budget`` >=
        their number).

    Raises:
        ValueError: If ``budget`` < 1, ``candidates`` is empty or lacks a column, or the prior saw none
            of the candidates' layer shapes.
        TypeError, FileNotFoundError: As :func:`load_prior`.

    Example:
        >>> from hwprune.measure import model_space
        >>> picks = select_configs("tables/cpu_torch/small_resnet_28.csv",
        ...                        model_space("small_resnet", (1, 1, 28, 28)), 100)  # doctest: +SKIP
    """
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 1:
        raise ValueError(f"`budget` must be an int >= 1 (configurations to measure), got {budget!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"`seed` must be an int, got {seed!r}")
    pri = load_prior(prior)
    df = _candidate_frame(candidates)
    cfg = config_frame(df[list(CONFIG_COLUMNS)], default_dtype=pri.dtypes_[0])
    _check_overlap(pri, cfg, "the candidates")
    query = prior_configs(pri, cfg)
    with threadpool_limits(limits=1, user_api="openmp"):
        log_pred = np.log(pri.predict(query))
        try:
            spread = np.log(pri.predict_members(query)).std(axis=0)
        except ValueError:  # a boosting prior has no members to disagree
            spread = np.zeros(len(df))
    u = spread / spread.max() if spread.max() > 0 else spread
    weight = 1.0 + u + _edges(cfg, log_pred)
    picks = _Selector(cfg, weight, int(seed), _SIM_WIDTH).run(int(budget))
    log.info(
        "selected %d of %d candidates over %d layer shapes", len(picks), len(df), len(set(_shape_names(cfg)))
    )
    return df.iloc[picks].to_dict("records")


# ---------------------------------------------------------------------------------------- the predictor
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

    def _trees(self) -> ExtraTreesRegressor:
        return ExtraTreesRegressor(
            n_estimators=self.n_estimators, max_features=0.7, n_jobs=1, random_state=self.random_state
        )

    def _fit_part(
        self, kind: str, X: np.ndarray, lp: np.ndarray, shapes: np.ndarray, y: np.ndarray
    ) -> dict[str, Any]:
        """Fit one single correction on log ms ``y``."""
        D = np.column_stack([X, lp])
        part: dict[str, Any] = {"kind": kind, "trees": None, "linear": None, "offsets": {}, "offset": 0.0}
        r = y - lp
        if kind == "offset":
            g = float(np.median(r))
            part["offset"] = g
            for s in np.unique(shapes):
                rs = r[shapes == s]
                part["offsets"][str(s)] = float(
                    (len(rs) * np.median(rs) + _SHRINK_ROWS * g) / (len(rs) + _SHRINK_ROWS)
                )
        elif kind == "trees":
            part["trees"] = self._trees().fit(D, r)
        elif kind == "ridge_trees":
            lin = Pipeline([("scale", StandardScaler()), ("ridge", Ridge(alpha=1.0))])
            L = np.column_stack([lp, X[:, _WORK]])
            lin.fit(L, r)
            part["linear"] = lin
            part["trees"] = self._trees().fit(D, r - lin.predict(L))
        else:  # prior_feature
            part["trees"] = self._trees().fit(D, y - X[:, _LOG_FLOPS])
        return part

    @staticmethod
    def _part_base(part: Mapping[str, Any], X: np.ndarray, lp: np.ndarray, shapes: np.ndarray) -> np.ndarray:
        """A part's log ms without its trees (the trees' mean is added by the caller)."""
        kind = part["kind"]
        if kind == "offset":
            offs = part["offsets"]
            return lp + np.array([offs.get(str(s), part["offset"]) for s in shapes])
        if kind == "prior_feature":
            return X[:, _LOG_FLOPS].copy()
        if kind == "ridge_trees":
            return lp + part["linear"].predict(np.column_stack([lp, X[:, _WORK]]))
        return lp.copy()

    @classmethod
    def _predict_parts(
        cls, parts: Sequence[Mapping[str, Any]], X: np.ndarray, lp: np.ndarray, shapes: np.ndarray
    ) -> np.ndarray:
        """Log ms: the mean over the parts of each part's prediction."""
        D = np.column_stack([X, lp])
        out = np.zeros(len(X))
        for part in parts:
            z = cls._part_base(part, X, lp, shapes)
            if part["trees"] is not None:
                z = z + part["trees"].predict(D)
            out += z
        return out / len(parts)

    def _fit_parts(
        self, kind: str, X: np.ndarray, lp: np.ndarray, shapes: np.ndarray, y: np.ndarray
    ) -> list[dict[str, Any]]:
        kinds = _BLEND if kind == "blend" else (kind,)
        return [self._fit_part(k, X, lp, shapes, y) for k in kinds]

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
        with threadpool_limits(limits=1, user_api="openmp"):
            return self._fit_adapted(prior, df, peaks)

    def _fit_adapted(self, prior: LatencyPredictor, df: pd.DataFrame, peaks: Any) -> AdaptedPredictor:
        target = _single(df, "target", "unknown")
        cfg = config_frame(df, default_dtype=None if "dtype" in df.columns else "float32")
        _check_overlap(prior, cfg, f"the table of {target!r}")
        X = build_features(cfg, peaks)
        lp = _prior_log(prior, cfg)
        shapes = np.asarray(layer_shapes(cfg))
        y = np.log(df["latency_ms"].to_numpy(dtype=float))
        ms = np.exp(y)
        if self.correction == "auto":
            singles, scored_kinds = _CORRECTIONS, ("blend", *_CORRECTIONS)
        elif self.correction == "blend":
            singles, scored_kinds = _BLEND, ("blend",)
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
                    part = self._fit_part(k, X[tr], lp[tr], shapes[tr], y[tr])
                    oof[k][te] = self._predict_parts([part], X[te], lp[te], shapes[te])
            if "blend" in scored_kinds:
                oof["blend"] = np.mean([oof[k] for k in _BLEND], axis=0)
            scored = []
            for k in scored_kinds:
                pred = np.exp(oof[k])
                res = {
                    "correction": k,
                    "count_within5": within_share(pred, ms, 0.05),
                    "count_within10": within_share(pred, ms, 0.10),
                    "count_mape": _mape(pred, ms),
                }
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
        self.parts_ = self._fit_parts(best, X, lp, shapes, y)
        self.estimator_ = self.parts_[0]["trees"]
        self.estimator_kind_ = f"adapted/{best}"
        self.transform_ = "log_ratio"
        self.peaks_ = peaks
        self.target_ = target
        self.backend_ = _single(df, "backend", "unknown")
        self.device_ = _single(df, "device", "unknown")
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
        return X, _prior_log(self.prior_, cfg), np.asarray(layer_shapes(cfg))

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
            return np.exp(self._predict_parts(self.parts_, X, lp, shapes)).astype(np.float64)

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
        D = np.column_stack([X, lp])
        members = np.zeros((self.n_estimators, len(X)))
        for part in self.parts_:
            base = self._part_base(part, X, lp, shapes)
            trees = part["trees"]
            members += base if trees is None else base + np.stack([t.predict(D) for t in trees.estimators_])
        return np.exp(members / len(self.parts_))

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
            kind="adapted",
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
    def load(  # type: ignore[override]
        cls,
        path: str | os.PathLike[str],
        *,
        expected_target: str | None = None,
        allow_version_mismatch: bool = False,
        **kwargs: Any,
    ) -> AdaptedPredictor:
        """Load an adapted predictor file (``LatencyPredictor.load`` does too, and returns this class).

        Args:
            path: A file written by :meth:`save`.
            expected_target: Refuse the file unless it was adapted to this target.
            allow_version_mismatch: As :meth:`LatencyPredictor.load`.
            **kwargs: Passed on to :meth:`LatencyPredictor.load`.

        Returns:
            The predictor.

        Raises:
            FileNotFoundError: If ``path`` does not exist.
            PredictorFileError: As :meth:`LatencyPredictor.load`, or if the file is a plain predictor.

        Example:
            >>> pred = AdaptedPredictor.load("h200_adapted.skops")  # doctest: +SKIP
        """
        obj = LatencyPredictor.load(
            path, expected_target=expected_target, allow_version_mismatch=allow_version_mismatch, **kwargs
        )
        if not isinstance(obj, AdaptedPredictor):
            raise pio.PredictorFileError(f"{path} is a plain latency predictor, not an adapted one")
        return obj

    @classmethod
    def _from_payload(cls, payload: Mapping[str, Any], path: str | os.PathLike[str]) -> AdaptedPredictor:
        meta = payload["meta"]
        try:
            prior = LatencyPredictor._from_payload(
                {"meta": meta["prior"], "estimator": payload["prior_estimator"]}, path
            )
            parts = []
            for saved, info in zip(payload["parts"], meta["parts"], strict=True):
                trees, linear, kind = saved["trees"], saved["linear"], str(info["kind"])
                if kind not in _CORRECTIONS or (trees is None) != (kind == "offset"):
                    raise pio.PredictorFileError(
                        f"{path} holds an unknown or inconsistent correction {kind!r}"
                    )
                if not (trees is None or isinstance(trees, ExtraTreesRegressor)):
                    raise pio.PredictorFileError(f"{path} holds a {type(trees).__name__} as correction")
                if (linear is None) != (kind != "ridge_trees") or not (
                    linear is None or isinstance(linear, Pipeline)
                ):
                    raise pio.PredictorFileError(f"{path} holds a {type(linear).__name__} as linear part")
                offsets = {str(k): float(v) for k, v in info["offsets"].items()}
                parts.append(
                    {
                        "kind": kind,
                        "trees": trees,
                        "linear": linear,
                        "offsets": offsets,
                        "offset": info["offset"],
                    }
                )
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
        if not parts or obj.correction_ not in ("blend", *_CORRECTIONS):
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


# ---------------------------------------------------------------------------------- measure, then adapt
@dataclass(frozen=True)
class AdaptResult:
    """What :func:`measure_and_adapt` did.

    Attributes:
        predictor: The adapted predictor.
        table: The new target's measurement table.
        predictor_path: Where the predictor was saved (None if not saved).
        n_candidates: Configurations in the layer space.
        n_selected: Configurations chosen (at most the budget).
        measured: Of those, timed by this call (the others were in the table already, or failed).
        wall_s: Wall time in seconds.
    """

    predictor: AdaptedPredictor
    table: Path
    predictor_path: Path | None
    n_candidates: int
    n_selected: int
    measured: int
    wall_s: float


def measure_and_adapt(
    target: Any,
    space: Sequence[Mapping[str, Any]],
    out_path: str | os.PathLike[str],
    *,
    adapt_from: PriorLike,
    budget: int,
    out_predictor: str | os.PathLike[str] | None = None,
    evaluator: Any = None,
    progress: bool = False,
    seed: int = 0,
    sidecar: Mapping[str, Any] | None = None,
) -> AdaptResult:
    """Measure at most ``budget`` selected configurations on ``target`` and fit the adapted predictor.

    The configurations come from :func:`select_configs` and are timed with the regular harness
    (:func:`hwprune.measure.measure`, append-only table: a killed run resumes, and configurations already
    in the table are not timed again); the predictor is then fitted on the table's rows with
    :func:`adapt`.

    Args:
        target: A :class:`hwprune.measure.Target`, catalogue name or YAML path (the new target).
        space: The new target's layer space (e.g. :func:`hwprune.measure.model_space`).
        out_path: The measurement table to append to.
        adapt_from: The prior (see :func:`load_prior`).
        budget: Most configurations to measure (an int >= 1).
        out_predictor: Where to save the predictor (None: not saved).
        evaluator: A :class:`hwprune.measure.EvaluatorConfig` (default: the harness's).
        progress: Show the harness's progress bar.
        seed: As :func:`select_configs`.
        sidecar: Extra keys for the table's sidecar JSON.

    Returns:
        An :class:`AdaptResult`.

    Raises:
        ValueError, TypeError, FileNotFoundError: As :func:`select_configs` and :func:`adapt`.
        RuntimeError: If the backend cannot start.

    Example:
        >>> from hwprune.measure import model_space
        >>> res = measure_and_adapt("cpu_torch", model_space("small_resnet", (1, 1, 28, 28)), "new.csv",
        ...                         adapt_from="tables/cpu_torch/small_resnet_28.csv", budget=100,
        ...                         out_predictor="new.skops")  # doctest: +SKIP
    """
    from hwprune.measure import load_target, measure

    t0 = time.perf_counter()
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 1:
        raise ValueError(f"`budget` must be an int >= 1 (configurations to measure), got {budget!r}")
    tgt = load_target(target)
    prior = load_prior(adapt_from)
    space = list(space)
    picks = select_configs(prior, space, int(budget), seed=seed)
    meta = {"adapt": {"from": prior.target_, "from_device": prior.device_, "budget": int(budget)}}
    summary = measure(
        tgt, picks, out_path, evaluator=evaluator, progress=progress, sidecar={**meta, **dict(sidecar or {})}
    )
    pred = adapt(prior, out_path, random_state=seed)
    pred.source_table_ = str(out_path)  # the closed loop grows this table and refits the correction
    saved = None if out_predictor is None else pred.save(out_predictor)
    return AdaptResult(
        predictor=pred,
        table=Path(out_path),
        predictor_path=saved,
        n_candidates=len(_candidate_frame(space)),
        n_selected=len(picks),
        measured=summary.measured,
        wall_s=time.perf_counter() - t0,
    )

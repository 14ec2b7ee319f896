"""The corrections of an adapted predictor: fit one on log ms, predict with it, read a saved one back.

A correction *part* is a plain dict: ``kind`` (``offset``, ``trees``, ``ridge_trees`` or
``prior_feature``), ``trees`` (extra-trees or None), ``linear`` (the ridge of ``ridge_trees`` or None),
``offsets`` (per layer shape log ratio of ``offset``) and ``offset`` (the global one, the fallback for a
shape never measured). A ``blend`` is the parts of :data:`BLEND`, averaged in log space. Every function
takes the same inputs: the new rows' features ``X``, the prior's log prediction ``lp`` and the layer
``shapes``. :class:`~hwprune.predict.adapt.AdaptedPredictor` holds the fitted parts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from hwprune.predict import io as pio
from hwprune.predict.features import feature_names

__all__ = [
    "BLEND",
    "CORRECTIONS",
    "Correction",
    "fit_part",
    "fit_parts",
    "part_members",
    "parts_from_payload",
    "predict_parts",
]

Correction = Literal["blend", "auto", "offset", "trees", "ridge_trees", "prior_feature"]
CORRECTIONS: tuple[str, ...] = ("offset", "trees", "ridge_trees", "prior_feature")
"""The single corrections (``blend`` and ``auto`` choose among them)."""
BLEND: tuple[str, ...] = ("trees", "ridge_trees", "prior_feature")
"""The corrections a ``blend`` averages."""

_LOG_FLOPS = feature_names().index("log_flops")
_WORK = [
    feature_names().index(n)
    for n in ("log_flops", "log_bytes", "log_intensity", "log_out_elems", "log_in_elems", "log_weight_elems")
]
_SHRINK_ROWS = 3.0  # a layer shape's own offset counts as much as the global one after this many rows


def _trees(n_estimators: int, random_state: int) -> ExtraTreesRegressor:
    return ExtraTreesRegressor(
        n_estimators=n_estimators, max_features=0.7, n_jobs=1, random_state=random_state
    )


def fit_part(
    kind: str,
    X: np.ndarray,
    lp: np.ndarray,
    shapes: np.ndarray,
    y: np.ndarray,
    *,
    n_estimators: int,
    random_state: int,
) -> dict[str, Any]:
    """Fit one single correction on log ms ``y``.

    Args:
        kind: One of :data:`CORRECTIONS`.
        X: Features of the rows (:func:`~hwprune.predict.features.build_features`).
        lp: The prior's log-ms prediction of the rows.
        shapes: Layer shape of each row.
        y: Measured log ms.
        n_estimators: Trees of a tree correction.
        random_state: Seed of the trees.

    Returns:
        The fitted part (see the module docstring).

    Example:
        >>> part = fit_part("trees", X, lp, shapes, y, n_estimators=100, random_state=0)  # doctest: +SKIP
    """
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
        part["trees"] = _trees(n_estimators, random_state).fit(D, r)
    elif kind == "ridge_trees":
        lin = Pipeline([("scale", StandardScaler()), ("ridge", Ridge(alpha=1.0))])
        L = np.column_stack([lp, X[:, _WORK]])
        lin.fit(L, r)
        part["linear"] = lin
        part["trees"] = _trees(n_estimators, random_state).fit(D, r - lin.predict(L))
    else:  # prior_feature
        part["trees"] = _trees(n_estimators, random_state).fit(D, y - X[:, _LOG_FLOPS])
    return part


def fit_parts(
    kind: str,
    X: np.ndarray,
    lp: np.ndarray,
    shapes: np.ndarray,
    y: np.ndarray,
    *,
    n_estimators: int,
    random_state: int,
) -> list[dict[str, Any]]:
    """Fit a correction: the parts of :data:`BLEND` for ``blend``, else the one part.

    Args:
        kind: ``blend`` or one of :data:`CORRECTIONS`.
        X, lp, shapes, y, n_estimators, random_state: As :func:`fit_part`.

    Returns:
        The fitted parts.

    Example:
        >>> parts = fit_parts("blend", X, lp, shapes, y, n_estimators=100, random_state=0)  # doctest: +SKIP
    """
    kinds = BLEND if kind == "blend" else (kind,)
    return [
        fit_part(k, X, lp, shapes, y, n_estimators=n_estimators, random_state=random_state) for k in kinds
    ]


def _part_base(part: Mapping[str, Any], X: np.ndarray, lp: np.ndarray, shapes: np.ndarray) -> np.ndarray:
    """A part's log ms without its trees (the caller adds the trees' prediction)."""
    kind = part["kind"]
    if kind == "offset":
        offs = part["offsets"]
        return lp + np.array([offs.get(str(s), part["offset"]) for s in shapes])
    if kind == "prior_feature":
        return X[:, _LOG_FLOPS].copy()
    if kind == "ridge_trees":
        return lp + part["linear"].predict(np.column_stack([lp, X[:, _WORK]]))
    return lp.copy()


def predict_parts(
    parts: Sequence[Mapping[str, Any]], X: np.ndarray, lp: np.ndarray, shapes: np.ndarray
) -> np.ndarray:
    """Log ms: the mean over the parts of each part's prediction.

    Args:
        parts: Fitted parts (:func:`fit_parts`).
        X, lp, shapes: As :func:`fit_part`, for the rows to predict.

    Returns:
        Log ms, one per row.

    Example:
        >>> ms = np.exp(predict_parts(parts, X, lp, shapes))  # doctest: +SKIP
    """
    D = np.column_stack([X, lp])
    out = np.zeros(len(X))
    for part in parts:
        z = _part_base(part, X, lp, shapes)
        if part["trees"] is not None:
            z = z + part["trees"].predict(D)
        out += z
    return out / len(parts)


def part_members(
    parts: Sequence[Mapping[str, Any]], X: np.ndarray, lp: np.ndarray, shapes: np.ndarray, n_members: int
) -> np.ndarray:
    """Log ms of every tree of the correction (for uncertainty); the parts of a blend are averaged.

    Args:
        parts: Fitted parts, at least one with trees.
        X, lp, shapes: As :func:`fit_part`, for the rows to predict.
        n_members: Trees of each tree part.

    Returns:
        An array ``(n_members, n_rows)`` of log ms.

    Example:
        >>> spread = part_members(parts, X, lp, shapes, 100).std(axis=0)  # doctest: +SKIP
    """
    D = np.column_stack([X, lp])
    members = np.zeros((n_members, len(X)))
    for part in parts:
        base = _part_base(part, X, lp, shapes)
        trees = part["trees"]
        members += base if trees is None else base + np.stack([t.predict(D) for t in trees.estimators_])
    return members / len(parts)


def parts_from_payload(
    saved: Sequence[Mapping[str, Any]], infos: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]
) -> list[dict[str, Any]]:
    """Rebuild and check the parts of a saved adapted predictor.

    Args:
        saved: The file payload's ``parts`` (``trees`` and ``linear`` of each).
        infos: The file metadata's ``parts`` (``kind``, ``offsets`` and ``offset`` of each).
        path: The file (named in the errors).

    Returns:
        The parts.

    Raises:
        PredictorFileError: If a part names an unknown correction or holds a regressor that does not fit
            its kind.
        ValueError, KeyError: If the two lists differ in length or a part lacks a key.

    Example:
        >>> parts = parts_from_payload(payload["parts"], meta["parts"], "a.skops")  # doctest: +SKIP
    """
    parts = []
    for part, info in zip(saved, infos, strict=True):
        trees, linear, kind = part["trees"], part["linear"], str(info["kind"])
        if kind not in CORRECTIONS or (trees is None) != (kind == "offset"):
            raise pio.PredictorFileError(f"{path} holds an unknown or inconsistent correction {kind!r}")
        if not (trees is None or isinstance(trees, ExtraTreesRegressor)):
            raise pio.PredictorFileError(f"{path} holds a {type(trees).__name__} as correction")
        if (linear is None) != (kind != "ridge_trees") or not (
            linear is None or isinstance(linear, Pipeline)
        ):
            raise pio.PredictorFileError(f"{path} holds a {type(linear).__name__} as linear part")
        offsets = {str(k): float(v) for k, v in info["offsets"].items()}
        parts.append(
            {"kind": kind, "trees": trees, "linear": linear, "offsets": offsets, "offset": info["offset"]}
        )
    return parts

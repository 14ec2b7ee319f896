"""The prior of an adapted predictor: what it is fitted from, and how it is asked about a new target's convs.

The prior is the old target's :class:`~hwprune.predict.LatencyPredictor`. :func:`load_prior` accepts a
fitted predictor, a predictor file or a measurement table; :func:`prior_configs` maps a new target's
configurations to those the prior knows (its dtype, its nearest batch).
"""

from __future__ import annotations

import logging
import math
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from hwprune.contract import CONFIG_COLUMNS
from hwprune.predict.features import config_frame
from hwprune.predict.predictor import LatencyPredictor
from hwprune.predict.tables import layer_shapes

log = logging.getLogger(__name__)

__all__ = [
    "PRIOR_PREDICTOR",
    "PriorLike",
    "check_overlap",
    "load_prior",
    "prior_configs",
    "prior_log",
    "shape_names",
]


PRIOR_PREDICTOR: dict[str, Any] = {
    "estimator": "extra_trees",
    "target_transform": "log_per_flop",
    "cv_folds": 0,
    "n_estimators": 100,
}
"""How a prior given as a table is fitted: extra-trees (their spread guides :func:`select_configs`)."""

PriorLike = LatencyPredictor | pd.DataFrame | str | os.PathLike[str]


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
    if isinstance(prior, LatencyPredictor) and prior.FILE_KIND != LatencyPredictor.FILE_KIND:
        raise TypeError(
            "`prior` must be a plain LatencyPredictor, a predictor file or a table, got an "
            f"{type(prior).__name__}: adapt from its prior or from its target's table instead"
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
            if loaded.FILE_KIND != LatencyPredictor.FILE_KIND:
                raise ValueError(
                    f"`prior` {str(path)!r} is an {loaded.FILE_KIND} predictor; adapt from its prior or "
                    "from its target's table instead"
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


def prior_log(prior: LatencyPredictor, cfg: pd.DataFrame) -> np.ndarray:
    """The prior's log-latency prediction of each conv, asked as :func:`prior_configs` maps it.

    Args:
        prior: A fitted predictor.
        cfg: A frame from :func:`~hwprune.predict.features.config_frame`.

    Returns:
        Log ms, one per row.

    Example:
        >>> prior_log(prior, config_frame(new_rows, default_dtype="float16"))  # doctest: +SKIP
    """
    return np.log(prior.predict(prior_configs(prior, cfg)))


def shape_names(cfg: pd.DataFrame) -> np.ndarray:
    """Name each row's layer shape with its batch (the strata of :func:`select_configs`).

    A table may hold several batches, and a batch changes where a shape's stairs fall.

    Args:
        cfg: A frame from :func:`~hwprune.predict.features.config_frame`.

    Returns:
        One name per row, e.g. ``b1_8x8_k3s1p1_g1``.

    Example:
        >>> shape_names(config_frame(rows, default_dtype="float32"))[:1]  # doctest: +SKIP
        array(['b1_8x8_k3s1p1_g1'], dtype='<U16')
    """
    return np.array([f"b{b}_{s}" for b, s in zip(cfg["batch"], layer_shapes(cfg), strict=True)])


def check_overlap(prior: LatencyPredictor, cfg: pd.DataFrame, what: str) -> None:
    """Refuse a prior that saw none of the new target's layer shapes (it would only extrapolate).

    A prior that misses only some of them is used, with a warning: its predictions there are guesses.

    Args:
        prior: A fitted predictor.
        cfg: The new target's configs (a frame from :func:`~hwprune.predict.features.config_frame`).
        what: Names ``cfg`` in the messages (``"the candidates"``).

    Raises:
        ValueError: If ``prior`` records layer shapes and none of ``cfg``'s is among them.

    Example:
        >>> check_overlap(prior, cfg, "the candidates")  # doctest: +SKIP
    """
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

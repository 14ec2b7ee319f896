"""Where to measure a new target: :func:`select_configs`, a budget-independent order of configurations.

See :mod:`hwprune.predict.adapt` for the order (dense configurations, residues mod 8, then a weighted
facility-location objective); the greedy picking is :class:`_Selector`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from hwprune.contract import CONFIG_COLUMNS
from hwprune.predict.adapt.prior import PriorLike, check_overlap, load_prior, prior_configs, shape_names
from hwprune.predict.features import config_frame
from hwprune.predict.stairs import stair_edge_bonus

log = logging.getLogger(__name__)

__all__ = ["candidate_frame", "select_configs"]


_SIM_WIDTH = 0.35  # similarity kernel width in log2 channels (0.35: counts 25% apart are alike)


def candidate_frame(candidates: pd.DataFrame | Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The candidates of a layer space as a frame, one row per distinct configuration.

    Args:
        candidates: Config dicts or a DataFrame with
            :data:`~hwprune.contract.CONFIG_COLUMNS` (extra keys such as ``layer`` are kept).

    Returns:
        The frame, duplicates dropped (the first kept), with a fresh index.

    Raises:
        ValueError: If ``candidates`` is empty or lacks a config column.

    Example:
        >>> len(candidate_frame(model_space("small_resnet", (1, 1, 28, 28))))  # doctest: +SKIP
        1536
    """
    df = candidates if isinstance(candidates, pd.DataFrame) else pd.DataFrame(list(candidates))
    if len(df) == 0:
        raise ValueError("`candidates` must hold at least one configuration, got none")
    missing = [c for c in CONFIG_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"`candidates` must have the keys {list(CONFIG_COLUMNS)}, missing {missing}")
    return df.drop_duplicates(subset=list(CONFIG_COLUMNS)).reset_index(drop=True)


class _Selector:
    """Greedy, budget-independent order of picks over the candidates (see :func:`select_configs`)."""

    MAX_DEMAND = 1500  # candidates of one shape that the coverage sums over (a seeded sample beyond this)

    def __init__(self, cfg: pd.DataFrame, weight: np.ndarray, seed: int, width: float) -> None:
        self.cin = cin = cfg["in_channels"].to_numpy(dtype=np.int64)
        self.cout = cout = cfg["out_channels"].to_numpy(dtype=np.int64)
        xy = np.column_stack([np.log2(cin), np.log2(cout)])
        rng = np.random.default_rng(seed)
        jitter = rng.uniform(0.0, 1e-9, len(cfg))  # seeded tie-break
        names, inv = np.unique(shape_names(cfg), return_inverse=True)
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
            :data:`~hwprune.contract.CONFIG_COLUMNS` (extra keys such as ``layer`` are kept),
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
    df = candidate_frame(candidates)
    cfg = config_frame(df[list(CONFIG_COLUMNS)], default_dtype=pri.dtypes_[0])
    check_overlap(pri, cfg, "the candidates")
    query = prior_configs(pri, cfg)
    with threadpool_limits(limits=1, user_api="openmp"):
        log_pred = np.log(pri.predict(query))
        try:
            spread = np.log(pri.predict_members(query)).std(axis=0)
        except ValueError:  # a boosting prior has no members to disagree
            spread = np.zeros(len(df))
    u = spread / spread.max() if spread.max() > 0 else spread
    weight = 1.0 + u + stair_edge_bonus(cfg, log_pred)
    picks = _Selector(cfg, weight, int(seed), _SIM_WIDTH).run(int(budget))
    log.info(
        "selected %d of %d candidates over %d layer shapes", len(picks), len(df), len(set(shape_names(cfg)))
    )
    return df.iloc[picks].to_dict("records")

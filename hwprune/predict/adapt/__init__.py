"""Adaptive sampling: measure few configurations, chosen by a predictor, and fit on them.

A full sweep of a model's layer space takes minutes on a GPU and hours on a small board. This package holds
the two ways hwprune measures less, which share how they weigh a configuration: a predictor's uncertainty
(the disagreement of its trees) and a bonus next to a stair edge it predicts
(:func:`hwprune.predict.stairs.stair_edge_bonus`, the one definition).

**Adaptive profiling** (``hwprune measure --adaptive``, :func:`adaptive_measure`): no prior. Measure a
coarse grid, fit, then measure in rounds where the current predictor is least sure, with random probes
that estimate its held-out accuracy, until a goal or a time budget (:mod:`~hwprune.predict.adapt.rounds`;
:func:`replay_adaptive` replays it on a dense table).

**Adapting a predictor** to a new device or setting (``hwprune measure --adapt-from``,
:func:`measure_and_adapt`): measure at most ``budget`` configurations and fit a predictor that takes an
old target's knowledge as its prior:

1. :func:`select_configs` chooses where to measure: first every layer shape's dense configuration
   (the planner starts from it), then configurations that cover each residue mod 8 of the out- and
   in-channels not yet measured (tensor-core and SIMD stairs fall on them), then greedily the ones that
   best *represent* the rest of the space (facility location: each candidate counts for how much closer
   it brings every other configuration of its layer shape to a measured one, in (log in, log out,
   residue) space), weighted up where the prior's trees disagree or the prior predicts a stair edge.
   The order does not depend on the budget, so ``select_configs(p, c, 100)`` is the first 100 of
   ``select_configs(p, c, 300)``, and it is deterministic given ``seed``.
2. :func:`adapt` fits an :class:`AdaptedPredictor`: the prior's log-latency prediction for the same conv
   (queried at the prior's dtype and nearest batch) plus a correction fitted on the new rows
   (:mod:`~hwprune.predict.adapt.corrections`):

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

The code lives in one module per step, their public names gathered here: :mod:`~hwprune.predict.adapt.prior`
(the prior: :func:`load_prior`, :func:`prior_configs`), :mod:`~hwprune.predict.adapt.selection`
(:func:`select_configs`), :mod:`~hwprune.predict.adapt.corrections`, :mod:`~hwprune.predict.adapt.model`
(:class:`AdaptedPredictor`, :func:`adapt`), :mod:`~hwprune.predict.adapt.measuring`
(:func:`measure_and_adapt`), :mod:`~hwprune.predict.adapt.rounds` and
:mod:`~hwprune.predict.adapt.profiling` (:func:`adaptive_measure`, :func:`replay_adaptive`).
"""

from __future__ import annotations

from hwprune.predict.adapt.corrections import Correction
from hwprune.predict.adapt.measuring import AdaptResult, measure_and_adapt
from hwprune.predict.adapt.model import AdaptedPredictor, adapt
from hwprune.predict.adapt.prior import PRIOR_PREDICTOR, PriorLike, load_prior, prior_configs
from hwprune.predict.adapt.profiling import adaptive_measure, replay_adaptive
from hwprune.predict.adapt.rounds import AdaptiveResult, AdaptiveRound
from hwprune.predict.adapt.selection import select_configs

__all__ = [
    "PRIOR_PREDICTOR",
    "AdaptResult",
    "AdaptedPredictor",
    "AdaptiveResult",
    "AdaptiveRound",
    "Correction",
    "PriorLike",
    "adapt",
    "adaptive_measure",
    "load_prior",
    "measure_and_adapt",
    "prior_configs",
    "replay_adaptive",
    "select_configs",
]

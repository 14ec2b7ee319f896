"""The option names and defaults that several stages and the command line share, each defined once.

A leaf module that loads no torch, so that ``hwprune --help`` lists the choices without importing torch.
Importing it loads neither numpy nor pandas.

Example:
    >>> from hwprune.options import IMPORTANCE_KINDS, DEFAULT_MIN_CHANNEL_RATIO
    >>> IMPORTANCE_KINDS
    ('l1', 'l2', 'bn_scale', 'taylor')
    >>> DEFAULT_MIN_CHANNEL_RATIO
    0.25
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "DEFAULT_MIN_CHANNEL_RATIO",
    "IMPORTANCE_KINDS",
    "OFFLINE_IMPORTANCE_KINDS",
    "SNAP_MODES",
    "ImportanceKind",
    "SnapMode",
]

SnapMode = Literal["up", "down", "nearest"]
SNAP_MODES: tuple[str, ...] = get_args(SnapMode)
"""How a width moves onto a friendly count (:func:`hwprune.staircase.snap`): ``up`` to the right edge of its
stair (same latency, more channels), ``down`` to the previous stair (less latency), ``nearest``."""

ImportanceKind = Literal["l1", "l2", "bn_scale", "taylor"]
IMPORTANCE_KINDS: tuple[str, ...] = get_args(ImportanceKind)
"""Every channel importance hwprune names: weight norms (``l1``, ``l2``), BatchNorm scale (``bn_scale``) and
first-order Taylor (``taylor``, which reads the last training batch's gradients)."""

OFFLINE_IMPORTANCE_KINDS: tuple[str, ...] = tuple(k for k in IMPORTANCE_KINDS if k != "taylor")
"""The importances an offline prune (``hwprune prune``) can compute: Taylor scores need gradients."""

DEFAULT_MIN_CHANNEL_RATIO: float = 0.25
"""No group goes below this share of its dense width unless told otherwise: the one default of the planner,
:func:`hwprune.prune.prune_to_budget`, ``hwprune prune --min-channel-ratio``, ``hwprune measure --floor``,
the measured layer space and the callback's ``min_channel_ratio``.

A quarter is where the default measurement space stops (:func:`hwprune.measure.model_space`): below it the
predictor has seen no channel count of the layer and only guesses its stairs, and a group cut to a tenth of
its channels rarely recovers its accuracy in fine-tuning."""

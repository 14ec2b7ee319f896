"""Channel importance: one score per channel of a group, from Torch-Pruning's importance classes.

An importance is anything Torch-Pruning would take: a callable ``(group) -> 1-D tensor`` with one score per
channel of the group (higher means keep). The four names in :data:`IMPORTANCE_KINDS` are shortcuts for
Torch-Pruning classes normalised by their group mean, so groups compare on one scale in the planner; any
``tp.importance.Importance`` object (e.g. ``tp.importance.GroupMagnitudeImportance(p=2)``) or plain
function can be passed instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeAlias

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from hwprune.options import IMPORTANCE_KINDS, ImportanceKind

log = logging.getLogger(__name__)

__all__ = ["ImportanceLike", "group_scores", "make_importance"]

ImportanceLike: TypeAlias = ImportanceKind | tp.importance.Importance | Callable[[Any], Any]
"""A name from :data:`IMPORTANCE_KINDS`, a Torch-Pruning ``Importance``, or any ``(group) -> scores``."""

# Importances that read ``.grad`` of the weights (first-order Taylor, and its Hessian estimate).
_NEEDS_GRADS: tuple[type, ...] = (tp.importance.GroupTaylorImportance, tp.importance.GroupHessianImportance)


def make_importance(importance: ImportanceLike) -> Callable[[tp.dependency.Group], Any]:
    """Return the importance callable for a name, or check and return a given importance.

    Args:
        importance: ``"l1"`` or ``"l2"`` (group weight norm), ``"bn_scale"`` (BatchNorm gamma, Network
            Slimming) or ``"taylor"`` (first-order Taylor, needs ``.grad`` on the weights); or a
            Torch-Pruning ``Importance`` object; or any callable ``(group) -> 1-D tensor`` of one score
            per channel (higher keeps the channel).

    Returns:
        A callable ``(group) -> 1-D tensor``.

    Raises:
        ValueError: If ``importance`` is a string outside :data:`IMPORTANCE_KINDS`.
        TypeError: If ``importance`` is neither a string nor callable.

    Example:
        >>> imp = make_importance("l1")
        >>> make_importance(tp.importance.GroupMagnitudeImportance(p=2)).p
        2
    """
    if isinstance(importance, str):
        if importance == "l1":
            return tp.importance.GroupMagnitudeImportance(p=1, normalizer="mean")
        if importance == "l2":
            return tp.importance.GroupMagnitudeImportance(p=2, normalizer="mean")
        if importance == "bn_scale":
            return tp.importance.BNScaleImportance(normalizer="mean")
        if importance == "taylor":
            return tp.importance.GroupTaylorImportance(normalizer="mean")
        raise ValueError(
            f"`importance` must be one of {IMPORTANCE_KINDS}, a torch_pruning Importance or a callable "
            f"(group) -> scores, got {importance!r}"
        )
    if callable(importance):
        return importance
    raise TypeError(
        f"`importance` must be one of {IMPORTANCE_KINDS}, a torch_pruning Importance or a callable "
        f"(group) -> scores, got {type(importance).__name__} {importance!r}"
    )


def _has_grads(group: tp.dependency.Group) -> bool:
    for dep, _ in group:
        mod = dep.target.module
        if (
            isinstance(mod, nn.Conv2d | nn.Linear | nn.BatchNorm2d)
            and getattr(mod.weight, "grad", None) is None
        ):
            return False
    return True


def group_scores(importance: Callable[[tp.dependency.Group], Any], group: tp.dependency.Group) -> np.ndarray:
    """Score every channel of one group.

    An importance that returns None for a group (``bn_scale`` on a group without a BatchNorm) falls back
    to L1, so every group gets scores.

    Args:
        importance: From :func:`make_importance`.
        group: A Torch-Pruning group holding all of its channels.

    Returns:
        Non-negative float64 scores, one per channel, in channel order (NaN and inf count as 0).

    Raises:
        RuntimeError: If ``importance`` reads gradients (Taylor, Hessian) and a weight of the group has
            none (run a backward pass first).
        ValueError: If ``importance`` returns something other than one number per channel of the group.

    Example:
        >>> gm = build_groups(build_model("small_resnet"), (1, 1, 28, 28))  # doctest: +SKIP
        >>> group_scores(make_importance("l1"), gm.tp_groups[0]).shape  # doctest: +SKIP
        (128,)
    """
    if isinstance(importance, _NEEDS_GRADS) and not _has_grads(group):
        raise RuntimeError(
            f"`importance` {type(importance).__name__} ('taylor') needs gradients on the weights: run "
            "loss.backward() before scoring"
        )
    with torch.no_grad():
        scores = importance(group)
    if scores is None:
        scores = tp.importance.GroupMagnitudeImportance(p=1, normalizer="mean")(group)
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().double().cpu().numpy()
    try:
        out = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"`importance` {_name(importance)} must return one score per channel, got "
            f"{type(scores).__name__}: {err}"
        ) from err
    n = len(group[0].idxs)
    if out.ndim != 1 or out.shape[0] != n:
        raise ValueError(
            f"`importance` {_name(importance)} must return a 1-D tensor of {n} scores (one per channel of "
            f"the group), got shape {tuple(out.shape)}"
        )
    return np.abs(np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0))


def _name(importance: object) -> str:
    return getattr(importance, "__qualname__", None) or type(importance).__name__

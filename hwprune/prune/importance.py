"""Channel importance: Torch-Pruning's importance classes, one score per channel of a group."""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

log = logging.getLogger(__name__)

__all__ = ["IMPORTANCE_KINDS", "ImportanceKind", "group_scores", "make_importance"]

ImportanceKind = Literal["l1", "l2", "bn_scale", "taylor"]
IMPORTANCE_KINDS: tuple[str, ...] = ("l1", "l2", "bn_scale", "taylor")


def make_importance(kind: ImportanceKind) -> tp.importance.Importance:
    """Return the Torch-Pruning importance for ``kind``.

    Scores are normalised by their group mean, so groups compare on one scale in the planner.

    Args:
        kind: ``"l1"`` or ``"l2"`` (group weight norm), ``"bn_scale"`` (BatchNorm gamma, Network
            Slimming) or ``"taylor"`` (first-order Taylor, needs ``.grad`` on the weights).

    Returns:
        A callable ``(group) -> 1-D tensor``.

    Raises:
        ValueError: If ``kind`` is unknown.

    Example:
        >>> imp = make_importance("l1")
    """
    if kind == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1, normalizer="mean")
    if kind == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2, normalizer="mean")
    if kind == "bn_scale":
        return tp.importance.BNScaleImportance(normalizer="mean")
    if kind == "taylor":
        return tp.importance.GroupTaylorImportance(normalizer="mean")
    raise ValueError(f"`importance` must be one of {IMPORTANCE_KINDS}, got {kind!r}")


def _has_grads(group: tp.dependency.Group) -> bool:
    for dep, _ in group:
        mod = dep.target.module
        if (
            isinstance(mod, nn.Conv2d | nn.Linear | nn.BatchNorm2d)
            and getattr(mod.weight, "grad", None) is None
        ):
            return False
    return True


def group_scores(
    importance: tp.importance.Importance, group: tp.dependency.Group, kind: ImportanceKind
) -> np.ndarray:
    """Score every channel of one group.

    A group without a BatchNorm (for ``bn_scale``) falls back to L1, so every group gets scores.

    Args:
        importance: From :func:`make_importance`.
        group: A Torch-Pruning group holding all of its channels.
        kind: The kind ``importance`` was made for.

    Returns:
        Non-negative float64 scores, one per channel, in channel order.

    Raises:
        RuntimeError: If ``kind`` is ``"taylor"`` and a weight of the group has no gradient (run a
            backward pass first).
    """
    if kind == "taylor" and not _has_grads(group):
        raise RuntimeError(
            "`importance='taylor'` needs gradients on the weights: run loss.backward() before scoring"
        )
    with torch.no_grad():
        scores = importance(group)
    if scores is None:
        scores = tp.importance.GroupMagnitudeImportance(p=1, normalizer="mean")(group)
    out = scores.detach().double().cpu().numpy().reshape(-1)
    out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
    return np.abs(out)

"""prune: dependency-safe, staircase-aware channel pruning of a model to a latency budget.

Example:
    >>> from hwprune.prune import prune_to_budget
    >>> result = prune_to_budget(model, predictor, (1, 1, 28, 28), budget_ms=0.4)  # doctest: +SKIP
    >>> result.plan.latency_after_ms <= 0.4  # doctest: +SKIP
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hwprune._lazy import lazy_exports

# Re-exports load on first use, so that `hwprune --help` (which imports hwprune.prune.cli) imports no torch.
_EXPORTS: dict[str, str] = {
    "ChannelGroup": "hwprune.prune.graph",
    "GroupedModel": "hwprune.prune.graph",
    "PruneRecord": "hwprune.prune.graph",
    "apply_removals": "hwprune.prune.graph",
    "build_groups": "hwprune.prune.graph",
    "replay_history": "hwprune.prune.graph",
    "IMPORTANCE_KINDS": "hwprune.options",
    "ImportanceKind": "hwprune.options",
    "ImportanceLike": "hwprune.prune.importance",
    "make_importance": "hwprune.prune.importance",
    "layer_latencies": "hwprune.prune.model_latency",
    "predicted_latency": "hwprune.prune.model_latency",
    "GroupDecision": "hwprune.prune.plan",
    "Plan": "hwprune.prune.plan",
    "Planner": "hwprune.prune.planner",
    "plan_pruning": "hwprune.prune.planner",
}

# The planner's channel floor, defined once with the other shared option names (no torch on import).
from hwprune.options import DEFAULT_MIN_CHANNEL_RATIO  # noqa: E402

if TYPE_CHECKING:
    from torch import nn

    from hwprune.options import SnapMode
    from hwprune.prune.graph import PruneRecord
    from hwprune.prune.importance import ImportanceLike
    from hwprune.prune.plan import Plan
    from hwprune.staircase import Predictor

__all__ = [
    "DEFAULT_MIN_CHANNEL_RATIO",
    "IMPORTANCE_KINDS",
    "ChannelGroup",
    "GroupDecision",
    "GroupedModel",
    "ImportanceKind",
    "ImportanceLike",
    "Plan",
    "Planner",
    "PruneRecord",
    "StepResult",
    "apply_removals",
    "build_groups",
    "conv_widths",
    "layer_latencies",
    "make_importance",
    "plan_pruning",
    "predicted_latency",
    "prune_to_budget",
    "replay_history",
]


@dataclass(frozen=True)
class StepResult:
    """One applied prune step.

    Attributes:
        plan: What the planner decided.
        history: Torch-Pruning records of the step, for :func:`replay_history`.
        latency_after_ms: Predicted latency of the pruned model, recomputed from its layers.
    """

    plan: Plan
    history: list[PruneRecord]
    latency_after_ms: float


def conv_widths(model: nn.Module) -> dict[str, int]:
    """Return every Conv2d's output channels, keyed by module name.

    Example:
        >>> conv_widths(build_model("small_resnet"))["stem.0"]  # doctest: +SKIP
        32
    """
    from torch import nn

    return {n: int(m.out_channels) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def prune_to_budget(
    model: nn.Module,
    predictor: Predictor,
    input_shape: Sequence[int],
    budget_ms: float,
    *,
    importance: ImportanceLike = "l1",
    snap: SnapMode | None = "up",
    ignored_layers: Sequence[str | nn.Module] = (),
    dense_widths: dict[str, int] | None = None,
    min_channel_ratio: float = DEFAULT_MIN_CHANNEL_RATIO,
) -> StepResult:
    """Plan and physically apply one prune step, in place.

    Args:
        model: The model to prune (in place).
        predictor: Anything with ``predict(DataFrame) -> ndarray`` (ms per row).
        input_shape: Input shape including batch.
        budget_ms: Predicted latency to reach.
        importance: ``"l1"``, ``"l2"``, ``"bn_scale"``, ``"taylor"`` (needs gradients), a Torch-Pruning
            ``Importance`` object (e.g. ``tp.importance.GroupMagnitudeImportance(p=2)``) or any callable
            ``(group) -> 1-D tensor`` of one score per channel.
        snap: ``"up"``, ``"down"``, ``"nearest"`` or ``None``.
        ignored_layers: Module names or modules whose output channels stay (Linear layers always do).
        dense_widths: Conv name -> dense output channels (the top of each staircase); defaults to now.
        min_channel_ratio: No group goes below this share of its dense width, in (0, 1] (default
            :data:`DEFAULT_MIN_CHANNEL_RATIO`: where the default measurement space stops).

    Returns:
        The step's plan, history and the model's new predicted latency.

    Raises:
        ValueError: If an argument is out of range (see :func:`plan_pruning`).
        TypeError: If ``importance`` is neither a name nor callable.

    Example:
        >>> res = prune_to_budget(model, predictor, (1, 1, 28, 28), budget_ms=0.4)  # doctest: +SKIP
    """
    from hwprune.prune.graph import apply_removals, build_groups
    from hwprune.prune.model_latency import predicted_latency
    from hwprune.prune.planner import plan_pruning

    gm = build_groups(model, input_shape, ignored_layers)
    plan = plan_pruning(
        gm,
        predictor,
        input_shape,
        budget_ms,
        importance=importance,
        snap=snap,
        dense_widths=dense_widths,
        min_channel_ratio=min_channel_ratio,
    )
    history = apply_removals(gm, plan.removals)
    return StepResult(plan, history, predicted_latency(predictor, model, input_shape))


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)

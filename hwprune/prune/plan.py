"""A pruning plan as data: what :func:`hwprune.prune.planner.plan_pruning` decided, per group and in all.

Plain frozen records, so that a plan can be logged, compared, broadcast to DDP ranks and replayed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["GroupDecision", "Plan"]


@dataclass(frozen=True)
class GroupDecision:
    """What the planner decided for one group.

    Attributes:
        root: Root conv name of the group.
        width_before: Width before this step.
        width_after: Planned width.
        dense_width: Width of the dense model (top of the group's staircase).
        friendly: The group's friendly counts (with the final neighbours), ascending.
        latency_saved_ms: Predicted latency of the group's layers at ``width_before`` minus at
            ``width_after`` (final neighbours).
        importance_kept: Share of the group's importance kept (0..1).
    """

    root: str
    width_before: int
    width_after: int
    dense_width: int
    friendly: tuple[int, ...]
    latency_saved_ms: float
    importance_kept: float


@dataclass(frozen=True)
class Plan:
    """A pruning plan for one step.

    Attributes:
        widths: Root conv name -> planned width, for every prunable group.
        removals: Root conv name -> channel indices to remove (lowest importance first), for groups
            that shrink.
        latency_before_ms: Predicted model latency before the step.
        latency_after_ms: Predicted model latency of the plan.
        budget_ms: The budget asked for.
        feasible: Whether the plan meets the budget.
        decisions: One entry per prunable group.
        seconds: Wall time of planning.
    """

    widths: dict[str, int]
    removals: dict[str, list[int]]
    latency_before_ms: float
    latency_after_ms: float
    budget_ms: float
    feasible: bool
    decisions: tuple[GroupDecision, ...]
    seconds: float = field(default=0.0)

"""One plan for several targets: a single architecture that meets every target's latency budget.

Each target has its own predictor (fitted on that target's measurements, at that target's batch) and its
own budget. The planner (:func:`~hwprune.prune.planner.plan_pruning`) prices one cost per conv, so the
targets are folded into one: each target's cost is divided by its budget and weighted,

    cost(conv) = sum_t w_t * cost_t(conv) / B_t,        budget = sum_t w_t,

so a plan on budget spends, on average over the targets, each target's budget. The average is not the
maximum: after each plan the targets still over budget get more weight (multiplicative weights, the
Lagrangian view of a min-max constraint) and the model is planned again, for ``rounds`` rounds; when a
re-weighting comes back to a plan already made (a stall, or a cycle between plans), the folded budget
is tightened by the worst overrun. The first plan that meets every budget is kept; if none does, the one
with the smallest worst overrun is, and it is reported as NOT met.

Friendly counts: the folded curve of a group is the weighted sum of its curves on each target, so a count
where any target's latency steps up is penalised on the fold too; a count friendly on every target is the
best choice where one exists. Where the targets disagree, :class:`TargetConflict` says which target gave
way on which group, and by how much (the ms that target would save at its own next friendly count below).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hwprune.prune.graph import GroupedModel
from hwprune.prune.model_latency import LatencyModel, floor_ms, layer_cost_fn, overhead_ms
from hwprune.prune.plan import Plan
from hwprune.prune.planner import plan_pruning
from hwprune.staircase import Predictor, friendly_from_curve

log = logging.getLogger(__name__)

__all__ = [
    "AtBatch",
    "MultiTargetPlan",
    "TargetConflict",
    "TargetResult",
    "plan_for_targets",
    "single_target_plan",
]


class AtBatch:
    """A predictor asked at a fixed batch: each target is priced at its own batch, whatever the planner's.

    Args:
        predictor: The target's predictor.
        batch: The batch the target runs at (the ``batch`` column of its table).
    """

    def __init__(self, predictor: Predictor, batch: int) -> None:
        self.predictor = predictor
        self.batch = int(batch)
        self._cost = layer_cost_fn(predictor)
        self.overhead_ms_ = overhead_ms(predictor)
        self.floor_ms_ = floor_ms(predictor)

    def layer_costs(self, configs: pd.DataFrame) -> np.ndarray:
        """Each conv's cost (with its elementwise layers) on the target, in ms, at the target's batch."""
        return np.asarray(self._cost(configs.assign(batch=self.batch)), dtype=float).reshape(-1)

    def predict(self, configs: pd.DataFrame) -> np.ndarray:
        """Alias of :meth:`layer_costs` (the :class:`~hwprune.staircase.Predictor` protocol)."""
        return self.layer_costs(configs)


class _Folded:
    """The targets folded into one cost: ``sum_t w_t * cost_t / B_t`` (see the module docstring)."""

    def __init__(
        self, members: Mapping[str, AtBatch], budgets: Mapping[str, float], weights: Mapping[str, float]
    ):
        self.members = dict(members)
        self.scale = {t: float(weights[t]) / float(budgets[t]) for t in self.members}
        self.overhead_ms_ = sum(self.scale[t] * m.overhead_ms_ for t, m in self.members.items())
        self.floor_ms_ = 0.0  # each target's floor is in its own budget (see plan_for_targets)

    def layer_costs(self, configs: pd.DataFrame) -> np.ndarray:
        out = np.zeros(len(configs), dtype=float)
        for t, m in self.members.items():
            out += self.scale[t] * m.layer_costs(configs)
        return out

    def predict(self, configs: pd.DataFrame) -> np.ndarray:
        return self.layer_costs(configs)


@dataclass(frozen=True)
class TargetConflict:
    """A group whose planned width is not a friendly count on one target.

    Attributes:
        target: The target that gave way.
        root: Root conv of the group.
        width: The planned width.
        friendly_below: That target's next friendly count below ``width`` (None when there is none).
        extra_ms: Predicted ms the target would save with ``friendly_below`` instead (>= 0).
    """

    target: str
    root: str
    width: int
    friendly_below: int | None
    extra_ms: float


@dataclass(frozen=True)
class TargetResult:
    """One target's side of a multi-target plan.

    Attributes:
        target: Target name.
        budget_ms: The budget asked for.
        floor_ms: The target's dispatch floor (the budget cannot be met below it).
        latency_before_ms: Predicted latency before the step.
        latency_after_ms: Predicted latency of the plan.
        met: Whether ``latency_after_ms <= budget_ms``.
        weight: The target's final weight in the folded cost.
        gave_way_ms: Sum of the target's :class:`TargetConflict` ``extra_ms``.
    """

    target: str
    budget_ms: float
    floor_ms: float
    latency_before_ms: float
    latency_after_ms: float
    met: bool
    weight: float
    gave_way_ms: float


@dataclass(frozen=True)
class MultiTargetPlan:
    """A plan for several targets.

    Attributes:
        plan: The chosen plan (its latencies are in the folded, budget-normalised unit).
        targets: Per-target predicted latencies and budgets.
        conflicts: Groups whose width is not friendly on some target.
        rounds: Plans made (re-weightings + 1).
        feasible: Whether every target meets its budget.
    """

    plan: Plan
    targets: dict[str, TargetResult]
    conflicts: tuple[TargetConflict, ...]
    rounds: int
    feasible: bool

    @property
    def widths(self) -> dict[str, int]:
        """Root conv name -> planned width."""
        return self.plan.widths

    @property
    def removals(self) -> dict[str, list[int]]:
        """Root conv name -> channel indices to remove."""
        return self.plan.removals


def _check(
    predictors: Mapping[str, Predictor], budgets: Mapping[str, float], batches: Mapping[str, int]
) -> None:
    if not isinstance(predictors, Mapping) or not predictors:
        raise ValueError(
            f"`predictors` must be a non-empty mapping of target name -> predictor, got {predictors!r}"
        )
    for name, p in predictors.items():
        if not hasattr(p, "predict"):
            raise TypeError(f"`predictors[{name!r}]` must have predict(DataFrame), got {type(p).__name__}")
    for what, m in (("budgets_ms", budgets), ("batches", batches)):
        missing = sorted(set(predictors) - set(m))
        extra = sorted(set(m) - set(predictors))
        if missing or extra:
            raise ValueError(
                f"`{what}` must name the same targets as `predictors`: missing {missing}, extra {extra}"
            )
    for name, b in budgets.items():
        if not (isinstance(b, int | float) and math.isfinite(b) and b > 0):
            raise ValueError(f"`budgets_ms[{name!r}]` must be a latency in ms (> 0), got {b!r}")
    for name, b in batches.items():
        if not isinstance(b, int) or b < 1:
            raise ValueError(f"`batches[{name!r}]` must be an int >= 1, got {b!r}")


def _target_latency(lm: LatencyModel, widths: Mapping[int, int], floor: float) -> float:
    return float(max(lm.total(widths), floor))


def _effective_budgets(members: Mapping[str, AtBatch], budgets_ms: Mapping[str, float]) -> dict[str, float]:
    """Each target's budget, raised to its dispatch floor: below the floor no cut helps a target."""
    for t, m in members.items():
        if m.floor_ms_ > budgets_ms[t]:
            log.warning(
                "%s: budget %.4g ms is below its dispatch floor %.4g ms: planning it to the floor",
                t,
                budgets_ms[t],
                m.floor_ms_,
            )
    return {t: max(float(budgets_ms[t]), members[t].floor_ms_) for t in members}


def _widths(gm: GroupedModel, plan: Plan) -> dict[int, int]:
    """Group index -> width under ``plan`` (groups it leaves keep their current width)."""
    index = {g.root: g.index for g in gm.groups}
    widths = {g.index: g.width for g in gm.groups}
    widths.update({index[r]: w for r, w in plan.widths.items()})
    return widths


_Best = tuple[float, Plan, dict[str, float], dict[str, float]]
"""The best plan of the re-weighting: worst overrun, plan, each target's latency, the weights used."""


def _reweight(
    gm: GroupedModel,
    members: Mapping[str, AtBatch],
    models: Mapping[str, LatencyModel],
    shape: tuple[int, ...],
    eff: Mapping[str, float],
    budgets_ms: Mapping[str, float],
    rounds: int,
    step: float,
    plan_kwargs: Mapping[str, object],
) -> tuple[_Best, int]:
    """Plan on the weighted fold of the targets, raising the weights of targets over budget.

    Returns:
        The plan with the smallest worst overrun, and how many plans were made.
    """
    weights = {t: 1.0 / len(members) for t in members}
    tighten = 1.0  # folded budget, as a share of the weights' sum
    best: _Best | None = None
    seen: set[tuple[tuple[str, int], ...]] = set()  # plans made so far: a repeat means a cycle
    made = 0
    for _ in range(rounds):
        folded = _Folded(members, eff, weights)
        plan = plan_pruning(gm, folded, shape, tighten * float(sum(weights.values())), **plan_kwargs)  # type: ignore[arg-type]
        made += 1
        widths = _widths(gm, plan)
        after = {t: _target_latency(models[t], widths, members[t].floor_ms_) for t in members}
        over = {t: after[t] / eff[t] for t in members}
        worst = max(over.values())
        log.info(
            "multi-target round %d: %s",
            made,
            ", ".join(f"{t} {after[t]:.4g}/{budgets_ms[t]:.4g} ms (w {weights[t]:.2f})" for t in members),
        )
        if best is None or worst < best[0] - 1e-12:
            best = (worst, plan, after, dict(weights))
        if worst <= 1.0 + 1e-9:
            break
        key = tuple(sorted(plan.widths.items()))
        if key in seen:  # re-weighting came back to an earlier plan (a stall or a cycle): ask for more
            tighten /= worst
        seen.add(key)
        for t in members:
            if over[t] > 1.0:
                weights[t] *= over[t] ** step
        total = sum(weights.values())
        weights = {t: w / total for t, w in weights.items()}
    assert best is not None  # rounds >= 1
    return best, made


def _results(
    members: Mapping[str, AtBatch],
    budgets_ms: Mapping[str, float],
    before: Mapping[str, float],
    after: Mapping[str, float],
    used: Mapping[str, float],
    conflicts: Sequence[TargetConflict],
) -> dict[str, TargetResult]:
    """Each target's outcome (logged): its latency before and after, met or not, where it gave way."""
    gave = {t: sum(c.extra_ms for c in conflicts if c.target == t) for t in members}
    targets = {
        t: TargetResult(
            target=t,
            budget_ms=float(budgets_ms[t]),
            floor_ms=members[t].floor_ms_,
            latency_before_ms=before[t],
            latency_after_ms=after[t],
            met=after[t] <= float(budgets_ms[t]) + 1e-12,
            weight=used[t],
            gave_way_ms=gave[t],
        )
        for t in members
    }
    for r in targets.values():
        log.info(
            "target %-24s predicted %.4f -> %.4f ms, budget %.4f ms (%s); gave way %.4f ms on %d groups",
            r.target,
            r.latency_before_ms,
            r.latency_after_ms,
            r.budget_ms,
            "met" if r.met else "NOT met",
            r.gave_way_ms,
            sum(1 for c in conflicts if c.target == r.target),
        )
    return targets


def plan_for_targets(
    gm: GroupedModel,
    predictors: Mapping[str, Predictor],
    input_shape: Sequence[int],
    budgets_ms: Mapping[str, float],
    batches: Mapping[str, int],
    *,
    rounds: int = 8,
    step: float = 8.0,
    **plan_kwargs: object,
) -> MultiTargetPlan:
    """Plan one architecture for several targets, each with its own predictor, batch and budget.

    Args:
        gm: The grouped model (see :func:`hwprune.prune.graph.build_groups`).
        predictors: Target name -> that target's predictor.
        input_shape: Input shape (the batch entry is ignored: each target is priced at ``batches[t]``).
        budgets_ms: Target name -> budget in ms on that target.
        batches: Target name -> the batch that target runs (and was measured) at.
        rounds: Most plans made while re-weighting targets over budget (>= 1).
        step: Re-weighting exponent: ``w_t *= (latency_t / budget_t) ** step`` for targets over budget
            (an overrun of 5% raises a weight by 1.05**8 = 1.48x).
        **plan_kwargs: Passed to :func:`~hwprune.prune.planner.plan_pruning` (importance, snap, ...).

    Returns:
        The plan, with each target's predicted latency, and the groups where the targets disagree.

    Raises:
        ValueError: If the mappings name different targets, a budget is not positive, ``rounds < 1``.
        TypeError: If a predictor has no ``predict``.

    Example:
        >>> mp = plan_for_targets(gm, {"cpu": p_cpu, "gpu": p_gpu}, (1, 1, 28, 28),
        ...                       {"cpu": 0.5, "gpu": 0.2}, {"cpu": 1, "gpu": 32})  # doctest: +SKIP
        >>> mp.targets["gpu"].met  # doctest: +SKIP
        True
    """
    _check(predictors, budgets_ms, batches)
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"`rounds` must be an int >= 1, got {rounds!r}")
    if not step > 0:
        raise ValueError(f"`step` must be > 0, got {step!r}")
    shape = tuple(int(s) for s in input_shape)
    if len(predictors) == 1:  # one target is a list of one: its own plan, nothing to fold or re-weight
        ((name, pred),) = predictors.items()
        plan = plan_pruning(
            gm, pred, (int(batches[name]), *shape[1:]), float(budgets_ms[name]), **plan_kwargs
        )  # type: ignore[arg-type]
        return single_target_plan(name, plan, float(budgets_ms[name]), floor_ms(pred))
    members = {t: AtBatch(p, batches[t]) for t, p in predictors.items()}
    eff = _effective_budgets(members, budgets_ms)
    from hwprune.contract import conv_layer_configs

    layers = {layer.name: layer.config for layer in conv_layer_configs(gm.model, shape)}
    models = {t: LatencyModel(m, layers, gm.groups) for t, m in members.items()}
    cap = {g.index: g.width for g in gm.groups}
    before = {t: _target_latency(models[t], cap, members[t].floor_ms_) for t in members}
    best, made = _reweight(gm, members, models, shape, eff, budgets_ms, rounds, step, plan_kwargs)
    _, plan, after, used = best
    widths = _widths(gm, plan)
    conflicts = _conflicts(gm, models, widths, plan)
    targets = _results(members, budgets_ms, before, after, used, conflicts)
    feasible = all(r.met for r in targets.values())
    return MultiTargetPlan(plan, targets, tuple(conflicts), made, feasible)


def single_target_plan(name: str, plan: Plan, budget_ms: float, floor: float = 0.0) -> MultiTargetPlan:
    """One target's :class:`~hwprune.prune.plan.Plan` as a :class:`MultiTargetPlan` of one.

    Args:
        name: The target's name.
        plan: Its plan (from :func:`~hwprune.prune.planner.plan_pruning`).
        budget_ms: The budget it was planned to.
        floor: The target's dispatch floor in ms.

    Returns:
        The plan of one target: its latencies are the plan's own, ``met`` is the plan's ``feasible``.
    """
    result = TargetResult(
        target=name,
        budget_ms=float(budget_ms),
        floor_ms=float(floor),
        latency_before_ms=float(plan.latency_before_ms),
        latency_after_ms=float(plan.latency_after_ms),
        met=bool(plan.feasible),
        weight=1.0,
        gave_way_ms=0.0,
    )
    return MultiTargetPlan(plan, {name: result}, (), 1, bool(plan.feasible))


def _conflicts(
    gm: GroupedModel, models: Mapping[str, LatencyModel], widths: Mapping[int, int], plan: Plan
) -> list[TargetConflict]:
    """Groups whose planned width is not friendly on a target, with that target's cost of the choice."""
    out: list[TargetConflict] = []
    changed = {d.root for d in plan.decisions}
    for g in gm.groups:
        if not g.prunable or g.root not in changed:
            continue
        w = int(widths[g.index])
        counts = list(range(1, g.width + 1))
        for t, lm in models.items():
            curve = lm.curves([g.index], {g.index: counts}, widths)[g.index]
            fr = friendly_from_curve(counts, curve.tolist())
            if w in fr:
                continue
            below = [c for c in fr if c < w]
            down = below[-1] if below else None
            extra = float(curve[w - 1] - curve[down - 1]) if down is not None else 0.0
            out.append(TargetConflict(t, g.root, w, down, max(extra, 0.0)))
    return out

"""The staircase-aware planner: per-group channel counts that meet a latency budget.

Each prunable group ``g`` has a current width ``w_g``. Its *curve* is the predicted latency of every conv
layer it touches (its producers' output channels, its consumers' input channels, its depthwise convs) as
its width varies, with every other group held at its planned width. The curve's friendly counts
(:func:`hwprune.staircase.friendly_from_curve`) are the only widths the planner picks.

The solver is a greedy multiple-choice knapsack with exact costs:

1. **Descend.** While the model is over budget, take the single step (one group, down to its next lower
   friendly count) that loses the least importance per ms saved. The step's saving is read off the
   group's curve, which is exact because the neighbours are held at their planned widths; after a step
   only the neighbours' curves are recomputed (lazily, through a heap).
2. **Fill.** Spend any slack: step a group back up (never above its current width) where that buys the
   most importance per ms and the model stays within budget.
3. **Snap.** A neighbour's move shifts a group's stairs, so every group is re-checked against its curve
   with the final neighbours and snapped (up: same or less latency, more channels; down: less latency)
   until nothing changes.

No step ever raises the predicted latency: a plan that would is discarded and the model is left as is.
Ties break on the group index, so planning is deterministic.
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hwprune.measure.space import conv_layer_configs
from hwprune.measure.table import CONFIG_COLUMNS
from hwprune.prune.graph import ChannelGroup, GroupedModel
from hwprune.prune.importance import ImportanceKind, group_scores, make_importance
from hwprune.prune.model_latency import floor_ms, layer_cost_fn, overhead_ms
from hwprune.staircase import Predictor, SnapMode, friendly_from_curve, snap

log = logging.getLogger(__name__)

__all__ = ["GroupDecision", "LatencyModel", "Plan", "plan_pruning"]

_CONFIG_KEYS: tuple[str, ...] = CONFIG_COLUMNS


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


class LatencyModel:
    """Predicted latency of a model as a function of its groups' widths (cached predictor calls).

    Args:
        predictor: Anything with ``predict(DataFrame) -> ndarray`` (ms per row).
        layers: Conv layer configs of the current model (from ``conv_layer_configs``).
        groups: All channel groups of the current model.
    """

    def __init__(
        self, predictor: Predictor, layers: Mapping[str, Mapping[str, int]], groups: Sequence[ChannelGroup]
    ) -> None:
        self.predictor = predictor
        self._cost = layer_cost_fn(predictor)  # each conv with the elementwise layers on its output
        self.overhead = overhead_ms(predictor)
        self.base = {n: dict(c) for n, c in layers.items()}
        self.groups = list(groups)
        self.width = {g.index: g.width for g in groups}
        # layer -> [(group index, side)]: how each group's width moves each layer.
        self.touch: dict[str, list[tuple[int, str]]] = {n: [] for n in self.base}
        for g in groups:
            for name, side in g.layers:
                if name in self.touch:
                    self.touch[name].append((g.index, side))
        self.neighbours: dict[int, set[int]] = {g.index: set() for g in groups}
        for users in self.touch.values():
            ids = {gi for gi, _ in users}
            for gi in ids:
                self.neighbours[gi] |= ids - {gi}
        self._cache: dict[tuple[int, ...], float] = {}
        self.calls = 0
        self.rows = 0

    def config(self, name: str, plan: Mapping[int, int]) -> tuple[int, ...]:
        """Return layer ``name``'s config tuple (``_CONFIG_KEYS`` order) under ``plan``."""
        c = dict(self.base[name])
        for gi, side in self.touch[name]:
            d = self.width[gi] - plan[gi]
            if side == "dw":
                c["in_channels"] -= d
                c["out_channels"] -= d
                c["groups"] = c["in_channels"]
            elif side == "out":
                c["out_channels"] -= d
            else:
                c["in_channels"] -= d
        return tuple(int(c[k]) for k in _CONFIG_KEYS)

    def latencies(self, configs: Sequence[tuple[int, ...]]) -> np.ndarray:
        """Return the predicted ms of each config tuple (one predictor call for the uncached ones)."""
        missing = sorted({c for c in configs if c not in self._cache})
        if missing:
            pred = np.asarray(
                self._cost(pd.DataFrame(missing, columns=list(_CONFIG_KEYS))), dtype=float
            ).reshape(-1)
            if pred.shape[0] != len(missing):
                raise ValueError(f"predictor returned {pred.shape[0]} latencies for {len(missing)} configs")
            self.calls += 1
            self.rows += len(missing)
            self._cache.update(zip(missing, pred.tolist(), strict=True))
        return np.array([self._cache[c] for c in configs], dtype=float)

    def total(self, plan: Mapping[int, int]) -> float:
        """Predicted work (ms) under ``plan``: the convs' costs plus the overhead, before the floor."""
        return float(self.latencies([self.config(n, plan) for n in self.base]).sum()) + self.overhead

    def curves(
        self, gis: Sequence[int], domains: Mapping[int, Sequence[int]], plan: Mapping[int, int]
    ) -> dict[int, np.ndarray]:
        """Return, for each group in ``gis``, the summed latency of its layers at each count of its domain."""
        keys: list[tuple[int, ...]] = []
        spans: dict[int, tuple[int, int, int]] = {}
        for gi in gis:
            names = [n for n, _ in self.groups[gi].layers if n in self.base]
            start = len(keys)
            trial = dict(plan)
            for c in domains[gi]:
                trial[gi] = int(c)
                keys.extend(self.config(n, trial) for n in names)
            spans[gi] = (start, len(domains[gi]), len(names))
        lat = self.latencies(keys)
        out: dict[int, np.ndarray] = {}
        for gi, (start, n_counts, n_layers) in spans.items():
            block = lat[start : start + n_counts * n_layers]
            out[gi] = block.reshape(n_counts, n_layers).sum(axis=1) if n_layers else np.zeros(n_counts)
        return out


def _dense_width(g: ChannelGroup, dense_widths: Mapping[str, int] | None) -> int:
    if dense_widths:
        for name, side in g.layers:
            if side in ("out", "dw") and name in dense_widths:
                return max(int(dense_widths[name]), g.width)
    return g.width


def plan_pruning(
    gm: GroupedModel,
    predictor: Predictor,
    input_shape: Sequence[int],
    budget_ms: float,
    *,
    importance: ImportanceKind = "l1",
    snap_mode: SnapMode | None = "up",
    dense_widths: Mapping[str, int] | None = None,
    min_ratio: float = 0.1,
    min_channels: int = 1,
    max_passes: int = 50,
) -> Plan:
    """Choose a friendly width for every prunable group so the model meets ``budget_ms``.

    Args:
        gm: The grouped model (see :func:`hwprune.prune.graph.build_groups`).
        predictor: Anything with ``predict(DataFrame) -> ndarray`` (ms per row).
        input_shape: Input shape including batch.
        budget_ms: Predicted latency to reach, in ms.
        importance: Channel importance, see :func:`hwprune.prune.importance.make_importance`.
        snap_mode: How widths are moved onto friendly counts after the neighbours settle: ``"up"``,
            ``"down"``, ``"nearest"``, or ``None`` (no final snap; the descent still stops only on
            counts that lower the latency).
        dense_widths: Conv name -> output channels of the dense model: the top of each group's staircase.
            Defaults to the current widths.
        min_ratio: No group goes below this share of its dense width.
        min_channels: No group goes below this many channels.
        max_passes: Cap on the solver's passes (each costs one batched predictor call).

    Returns:
        The plan; ``feasible`` is False when the floors stop it above the budget.

    Raises:
        ValueError: If ``budget_ms`` is not positive or ``min_ratio``/``min_channels`` are out of range.

    Example:
        >>> gm = build_groups(model, (1, 1, 28, 28))  # doctest: +SKIP
        >>> plan = plan_pruning(gm, predictor, (1, 1, 28, 28), budget_ms=0.5)  # doctest: +SKIP
        >>> plan.latency_after_ms <= 0.5  # doctest: +SKIP
        True
    """
    if not (isinstance(budget_ms, int | float) and math.isfinite(budget_ms) and budget_ms > 0):
        raise ValueError(f"`budget_ms` must be a latency in ms (> 0), got {budget_ms!r}")
    if not 0.0 < min_ratio <= 1.0:
        raise ValueError(f"`min_ratio` must be a fraction in (0, 1], got {min_ratio!r}")
    if not isinstance(min_channels, int) or min_channels < 1:
        raise ValueError(f"`min_channels` must be an int >= 1, got {min_channels!r}")
    t0 = time.perf_counter()
    layers = {layer.name: layer.config for layer in conv_layer_configs(gm.model, tuple(input_shape))}
    lm = LatencyModel(predictor, layers, gm.groups)
    prunable = [g.index for g in gm.groups if g.prunable]
    imp = make_importance(importance)
    prefix: dict[int, np.ndarray] = {}
    order: dict[int, np.ndarray] = {}
    for gi in prunable:
        s = group_scores(imp, gm.tp_groups[gi], importance)
        order[gi] = np.argsort(-s, kind="stable")  # most important first
        prefix[gi] = np.concatenate([[0.0], np.cumsum(s[order[gi]])])
    cap = {g.index: g.width for g in gm.groups}
    dense = {g.index: _dense_width(g, dense_widths) for g in gm.groups}
    lo = {gi: min(cap[gi], max(min_channels, math.ceil(min_ratio * dense[gi]))) for gi in prunable}
    domain = {gi: list(range(lo[gi], dense[gi] + 1)) for gi in prunable}
    plan: dict[int, int] = dict(cap)
    before = lm.total(plan)
    # Below the dispatch floor no cut buys latency: plan down to the floor, never past it (the rest of
    # the channels would be thrown away for nothing), and report the budget as not met.
    floor = floor_ms(predictor)
    requested = float(budget_ms)
    if floor > requested:
        log.warning(
            "budget %.4g ms is below the target's dispatch floor %.4g ms: planning to the floor",
            requested,
            floor,
        )
    budget_ms = max(requested, floor)

    curve_cache: dict[int, np.ndarray] = {}

    def curve(gi: int) -> np.ndarray:
        if gi not in curve_cache:
            curve_cache.update(lm.curves([gi], domain, plan))
        return curve_cache[gi]

    def warm(gis: Sequence[int]) -> None:
        todo = [gi for gi in gis if gi not in curve_cache]
        if todo:
            curve_cache.update(lm.curves(todo, domain, plan))

    def lat_at(gi: int, c: int) -> float:
        return float(curve(gi)[c - lo[gi]])

    def friendly(gi: int) -> list[int]:
        return friendly_from_curve(domain[gi], curve(gi).tolist())

    def move(gi: int, new: int, why: str) -> float:
        saved = lat_at(gi, plan[gi]) - lat_at(gi, new)
        log.debug(
            "group %s (%s): %d -> %d channels, %+.4f ms [%s]",
            gi,
            gm.groups[gi].root,
            plan[gi],
            new,
            -saved,
            why,
        )
        plan[gi] = new
        for nb in lm.neighbours[gi]:
            curve_cache.pop(nb, None)
        return saved

    def next_down(gi: int) -> int | None:
        """Largest candidate below the planned width with strictly lower latency."""
        cur = lat_at(gi, plan[gi])
        if snap_mode is None:
            cands = [c for c in range(plan[gi] - 1, lo[gi] - 1, -1)]
        else:
            cands = [c for c in reversed(friendly(gi)) if c < plan[gi]]
        for c in cands:
            if lat_at(gi, c) < cur:
                return c
        return None

    def ratio(gi: int, new: int) -> float:
        saved = lat_at(gi, plan[gi]) - lat_at(gi, new)
        lost = prefix[gi][plan[gi]] - prefix[gi][new]
        return lost / max(saved, 1e-12)

    total = before
    # 1. Descend. Each pass refreshes every stale curve in one predictor call, then takes the cheapest
    # steps (importance lost per ms saved). A group's own moves keep its curve exact; once a neighbour
    # moved, its curve is stale until the next pass, so it waits.
    for _ in range(max_passes):
        if total <= budget_ms:
            break
        warm(prunable)
        heap: list[tuple[float, int, int]] = []
        for gi in prunable:
            nd = next_down(gi)
            if nd is not None:
                heapq.heappush(heap, (ratio(gi, nd), gi, nd))
        if not heap:
            break
        moved: set[int] = set()
        while heap and total > budget_ms:
            _, gi, nd = heapq.heappop(heap)
            if gi not in curve_cache or lm.neighbours[gi] & moved:
                continue
            total -= move(gi, nd, "descend")
            moved.add(gi)
            nxt = next_down(gi)
            if nxt is not None:
                heapq.heappush(heap, (ratio(gi, nxt), gi, nxt))
        total = lm.total(plan)
    # 2. Fill the slack, best importance per ms first, never above the current width.
    for _ in range(max_passes):
        warm(prunable)
        cands: list[tuple[float, int, int]] = []
        for gi in prunable:
            ups = (
                [c for c in friendly(gi) if plan[gi] < c <= cap[gi]]
                if snap_mode
                else ([plan[gi] + 1] if plan[gi] < cap[gi] else [])
            )
            if ups:
                cost = lat_at(gi, ups[0]) - lat_at(gi, plan[gi])
                gain = (prefix[gi][ups[0]] - prefix[gi][plan[gi]]) / max(cost, 1e-12)
                cands.append((-gain, gi, ups[0]))
        moved = set()
        for _, gi, up in sorted(cands):
            if lm.neighbours[gi] & moved or gi not in curve_cache:
                continue
            cost = lat_at(gi, up) - lat_at(gi, plan[gi])
            if total + cost <= budget_ms:
                total -= move(gi, up, "fill")
                moved.add(gi)
        if not moved:
            break
        total = lm.total(plan)
    # 3. Snap onto the stairs of the final neighbourhood.
    if snap_mode is not None:
        for it in range(2 * max_passes):
            changed = False
            warm(prunable)
            moved = set()
            for gi in prunable:
                if lm.neighbours[gi] & moved or gi not in curve_cache:
                    changed = True
                    continue
                fr = friendly(gi)
                if plan[gi] in fr:
                    continue
                mode = snap_mode if it < max_passes else "down"  # late passes only go down, so it ends
                choice = snap(plan[gi], fr, mode)
                if choice > cap[gi]:
                    choice = snap(plan[gi], fr, "down")
                if choice > cap[gi] or choice == plan[gi] or lat_at(gi, choice) > lat_at(gi, plan[gi]):
                    continue
                total -= move(gi, choice, f"snap {mode}")
                moved.add(gi)
                changed = True
            if not changed:
                break
    after = lm.total(plan)
    if after > before:
        log.warning(
            "plan would raise predicted latency %.4f -> %.4f ms; keeping the model as is", before, after
        )
        plan = dict(cap)
        after = before
    warm(prunable)
    decisions = []
    widths: dict[str, int] = {}
    removals: dict[str, list[int]] = {}
    for gi in prunable:
        g = gm.groups[gi]
        widths[g.root] = plan[gi]
        if plan[gi] < cap[gi]:
            drop = order[gi][plan[gi] :]
            removals[g.root] = sorted(int(i) for i in drop)
        decisions.append(
            GroupDecision(
                root=g.root,
                width_before=cap[gi],
                width_after=plan[gi],
                dense_width=dense[gi],
                friendly=tuple(friendly(gi)),
                latency_saved_ms=lat_at(gi, cap[gi]) - lat_at(gi, plan[gi]),
                importance_kept=float(prefix[gi][plan[gi]] / max(prefix[gi][-1], 1e-12)),
            )
        )
        if plan[gi] != cap[gi]:
            log.info(
                "group %-28s %4d -> %4d channels (dense %d), saves %.4f ms, keeps %.0f%% importance",
                g.root,
                cap[gi],
                plan[gi],
                dense[gi],
                decisions[-1].latency_saved_ms,
                100 * decisions[-1].importance_kept,
            )
    seconds = time.perf_counter() - t0
    before, after = max(before, floor), max(after, floor)
    feasible = after <= requested + 1e-12
    log.info(
        "plan: predicted %.4f -> %.4f ms (budget %.4f ms, %s) in %.2f s, %d predictor calls / %d rows",
        before,
        after,
        requested,
        "met" if feasible else "NOT met",
        seconds,
        lm.calls,
        lm.rows,
    )
    return Plan(widths, removals, before, after, requested, feasible, tuple(decisions), seconds)

"""The staircase-aware planner: per-group channel counts that meet a latency budget.

Each prunable group ``g`` has a current width ``w_g``. Its *curve* is the predicted latency of every conv
layer it touches (its producers' output channels, its consumers' input channels, its depthwise convs) as
its width varies, with every other group held at its planned width. The curve's friendly counts
(:func:`hwprune.staircase.friendly_from_curve`) are the only widths the planner picks.

The solver is a greedy multiple-choice knapsack with exact costs. :class:`Planner` holds one run's state
(the planned widths and the cached curves, priced by :class:`~hwprune.prune.model_latency.LatencyModel`)
and names its steps; :func:`plan_pruning` runs them in order:

1. **Descend** (:meth:`Planner.descend`). While the model is over budget, take the single step (one
   group, down to its next lower friendly count) that loses the least importance per ms saved. The step's
   saving is read off the group's curve, which is exact because the neighbours are held at their planned
   widths; after a step only the neighbours' curves are recomputed (lazily, through a heap).
2. **Fill** (:meth:`Planner.fill`). Spend any slack: step a group back up (never above its current width)
   where that buys the most importance per ms and the model stays within budget.
3. **Snap** (:meth:`Planner.snap_to_stairs`). A neighbour's move shifts a group's stairs, so every group is
   re-checked against its curve with the final neighbours and snapped (up: same or less latency, more
   channels; down: less latency) until nothing changes.

No step ever raises the predicted latency: a plan that would is discarded and the model is left as is.
Ties break on the group index, so planning is deterministic.
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections.abc import Mapping, Sequence

import numpy as np

from hwprune.contract import conv_layer_configs
from hwprune.options import DEFAULT_MIN_CHANNEL_RATIO, SNAP_MODES, SnapMode
from hwprune.prune.graph import ChannelGroup, GroupedModel
from hwprune.prune.importance import ImportanceLike, group_scores, make_importance
from hwprune.prune.model_latency import LatencyModel, floor_ms
from hwprune.prune.plan import GroupDecision, Plan
from hwprune.staircase import Predictor, friendly_from_curve
from hwprune.staircase import snap as snap_width

log = logging.getLogger(__name__)

__all__ = ["Planner", "plan_pruning"]


def _dense_width(g: ChannelGroup, dense_widths: Mapping[str, int] | None) -> int:
    if dense_widths:
        for name, side in g.layers:
            if side in ("out", "dw") and name in dense_widths:
                return max(int(dense_widths[name]), g.width)
    return g.width


def _check_settings(min_channel_ratio: float, min_channels: int, snap: SnapMode | None) -> None:
    if not (isinstance(min_channel_ratio, int | float) and 0.0 < min_channel_ratio <= 1.0):
        raise ValueError(f"`min_channel_ratio` must be a fraction in (0, 1], got {min_channel_ratio!r}")
    if isinstance(min_channels, bool) or not isinstance(min_channels, int) or min_channels < 1:
        raise ValueError(f"`min_channels` must be an int >= 1, got {min_channels!r}")
    if snap is not None and snap not in SNAP_MODES:
        raise ValueError(f"`snap` must be any of {(*SNAP_MODES, None)}, got {snap!r}")


class Planner:
    """One planning run over a grouped model: the plan being built, and the named steps that move it.

    The state is the planned width of every group (:attr:`plan`, group index -> width) and each group's
    latency curve under that plan (cached; a :meth:`move` drops its neighbours' curves, which it shifts).
    :meth:`run` takes the steps in order: :meth:`descend` to the budget, :meth:`fill` the slack,
    :meth:`snap_to_stairs`; :meth:`result` reads the plan out. Each step only ever lowers the latency or
    stays within the budget, and ties break on the group index, so a run is deterministic.

    Args:
        gm: The grouped model (see :func:`hwprune.prune.graph.build_groups`).
        predictor: Anything with ``predict(DataFrame) -> ndarray`` (ms per row).
        input_shape: Input shape including batch.
        importance: See :func:`plan_pruning`.
        snap: See :func:`plan_pruning`.
        dense_widths: See :func:`plan_pruning`.
        min_channel_ratio: See :func:`plan_pruning`.
        min_channels: See :func:`plan_pruning`.
        max_passes: See :func:`plan_pruning`.

    Raises:
        ValueError: If a setting is out of range (see :func:`plan_pruning`).
        TypeError: If ``importance`` is neither a name nor callable.

    Example:
        >>> shape = (1, 1, 28, 28)
        >>> planner = Planner(build_groups(model, shape), predictor, shape)  # doctest: +SKIP
        >>> planner.descend(0.5)  # doctest: +SKIP
        >>> planner.total() <= 0.5  # doctest: +SKIP
        True
    """

    def __init__(
        self,
        gm: GroupedModel,
        predictor: Predictor,
        input_shape: Sequence[int],
        *,
        importance: ImportanceLike = "l1",
        snap: SnapMode | None = "up",
        dense_widths: Mapping[str, int] | None = None,
        min_channel_ratio: float = DEFAULT_MIN_CHANNEL_RATIO,
        min_channels: int = 1,
        max_passes: int = 50,
    ) -> None:
        _check_settings(min_channel_ratio, min_channels, snap)
        imp = make_importance(importance)
        layers = {layer.name: layer.config for layer in conv_layer_configs(gm.model, tuple(input_shape))}
        self.gm = gm
        self.lm = LatencyModel(predictor, layers, gm.groups)
        self.snap_mode = snap
        self.max_passes = max_passes
        self.prunable = [g.index for g in gm.groups if g.prunable]
        self.cap = {g.index: g.width for g in gm.groups}
        self.dense = {g.index: _dense_width(g, dense_widths) for g in gm.groups}
        self.lo = {
            gi: min(self.cap[gi], max(min_channels, math.ceil(min_channel_ratio * self.dense[gi])))
            for gi in self.prunable
        }
        self.domain = {gi: list(range(self.lo[gi], self.dense[gi] + 1)) for gi in self.prunable}
        self.order: dict[int, np.ndarray] = {}  # channel indices, most important first
        self.prefix: dict[int, np.ndarray] = {}  # importance kept at each width
        for gi in self.prunable:
            s = group_scores(imp, gm.tp_groups[gi])
            self.order[gi] = np.argsort(-s, kind="stable")
            self.prefix[gi] = np.concatenate([[0.0], np.cumsum(s[self.order[gi]])])
        self.plan: dict[int, int] = dict(self.cap)
        self._curves: dict[int, np.ndarray] = {}

    # -- the curves under the current plan ------------------------------------------------------------

    def total(self) -> float:
        """Predicted work (ms) of the current plan: the convs' costs plus the overhead, before the floor."""
        return self.lm.total(self.plan)

    def warm(self) -> None:
        """Compute every stale curve of a prunable group, in one batched predictor call."""
        todo = [gi for gi in self.prunable if gi not in self._curves]
        if todo:
            self._curves.update(self.lm.curves(todo, self.domain, self.plan))

    def fresh(self, gi: int) -> bool:
        """Whether group ``gi``'s curve is exact for the current plan (no neighbour moved since made)."""
        return gi in self._curves

    def curve(self, gi: int) -> np.ndarray:
        """Group ``gi``'s curve: its layers' latency at each count of its domain, the others as planned."""
        if gi not in self._curves:
            self._curves.update(self.lm.curves([gi], self.domain, self.plan))
        return self._curves[gi]

    def latency(self, gi: int, width: int) -> float:
        """Predicted latency of group ``gi``'s layers at ``width``, the others at their planned widths."""
        return float(self.curve(gi)[width - self.lo[gi]])

    def friendly(self, gi: int) -> list[int]:
        """Group ``gi``'s friendly counts under the current plan, ascending."""
        return friendly_from_curve(self.domain[gi], self.curve(gi).tolist())

    def move(self, gi: int, width: int, why: str) -> float:
        """Set group ``gi`` to ``width``; return the latency saved (its curve, before the move)."""
        saved = self.latency(gi, self.plan[gi]) - self.latency(gi, width)
        log.debug(
            "group %s (%s): %d -> %d channels, %+.4f ms [%s]",
            gi,
            self.gm.groups[gi].root,
            self.plan[gi],
            width,
            -saved,
            why,
        )
        self.plan[gi] = width
        for nb in self.lm.neighbours[gi]:
            self._curves.pop(nb, None)
        return saved

    def next_down(self, gi: int) -> int | None:
        """The largest candidate below the planned width with strictly lower latency, if any.

        Candidates are the friendly counts, or every count when snapping is off.
        """
        cur = self.latency(gi, self.plan[gi])
        if self.snap_mode is None:
            cands: Sequence[int] = range(self.plan[gi] - 1, self.lo[gi] - 1, -1)
        else:
            cands = [c for c in reversed(self.friendly(gi)) if c < self.plan[gi]]
        return next((c for c in cands if self.latency(gi, c) < cur), None)

    def next_up(self, gi: int) -> int | None:
        """The smallest candidate above the planned width, never above the current width, if any."""
        if self.snap_mode is None:
            return self.plan[gi] + 1 if self.plan[gi] < self.cap[gi] else None
        return next((c for c in self.friendly(gi) if self.plan[gi] < c <= self.cap[gi]), None)

    def loss_per_ms(self, gi: int, width: int) -> float:
        """Importance lost per ms saved by moving group ``gi`` down to ``width``."""
        saved = self.latency(gi, self.plan[gi]) - self.latency(gi, width)
        lost = self.prefix[gi][self.plan[gi]] - self.prefix[gi][width]
        return lost / max(saved, 1e-12)

    def gain_per_ms(self, gi: int, width: int) -> float:
        """Importance regained per ms spent by moving group ``gi`` up to ``width``."""
        cost = self.latency(gi, width) - self.latency(gi, self.plan[gi])
        return (self.prefix[gi][width] - self.prefix[gi][self.plan[gi]]) / max(cost, 1e-12)

    # -- the steps ------------------------------------------------------------------------------------

    def descend(self, budget_ms: float) -> None:
        """Step groups down, cheapest importance per ms first, until the plan meets ``budget_ms``.

        Each pass refreshes every stale curve in one predictor call, then takes the cheapest steps. A
        group's own moves keep its curve exact; once a neighbour moved, its curve is stale until the next
        pass, so it waits. Stops when the budget is met, no group can step down, or after ``max_passes``.
        """
        total = self.total()
        for _ in range(self.max_passes):
            if total <= budget_ms:
                return
            self.warm()
            heap: list[tuple[float, int, int]] = []
            for gi in self.prunable:
                nd = self.next_down(gi)
                if nd is not None:
                    heapq.heappush(heap, (self.loss_per_ms(gi, nd), gi, nd))
            if not heap:
                return
            moved: set[int] = set()
            while heap and total > budget_ms:
                _, gi, nd = heapq.heappop(heap)
                if not self.fresh(gi) or self.lm.neighbours[gi] & moved:
                    continue
                total -= self.move(gi, nd, "descend")
                moved.add(gi)
                nxt = self.next_down(gi)
                if nxt is not None:
                    heapq.heappush(heap, (self.loss_per_ms(gi, nxt), gi, nxt))
            total = self.total()

    def fill(self, budget_ms: float) -> None:
        """Spend the slack under ``budget_ms``: step groups back up, best importance per ms first.

        A group never goes above its current width, and a step is taken only if the plan stays within the
        budget. Stops when a pass moves nothing, or after ``max_passes``.
        """
        total = self.total()
        for _ in range(self.max_passes):
            self.warm()
            cands: list[tuple[float, int, int]] = []
            for gi in self.prunable:
                up = self.next_up(gi)
                if up is not None:
                    cands.append((-self.gain_per_ms(gi, up), gi, up))
            moved: set[int] = set()
            for _, gi, up in sorted(cands):
                if self.lm.neighbours[gi] & moved or not self.fresh(gi):
                    continue
                cost = self.latency(gi, up) - self.latency(gi, self.plan[gi])
                if total + cost <= budget_ms:
                    total -= self.move(gi, up, "fill")
                    moved.add(gi)
            if not moved:
                return
            total = self.total()

    def snap_to_stairs(self) -> None:
        """Move every group onto a friendly count of its curve under the final neighbours.

        A neighbour's move shifts a group's stairs, so a width chosen earlier may sit mid-stair. Each pass
        snaps such widths (``"up"``: same or less latency, more channels; ``"down"``: less latency;
        ``"nearest"``), never above the current width and never to a higher latency, until a pass changes
        nothing. After ``max_passes`` passes only ``"down"`` is used, so it ends. A no-op when ``snap`` is
        None.
        """
        if self.snap_mode is None:
            return
        for it in range(2 * self.max_passes):
            mode = self.snap_mode if it < self.max_passes else "down"
            if not self._snap_pass(mode):
                return

    def _snap_pass(self, mode: SnapMode) -> bool:
        """One pass of :meth:`snap_to_stairs`; return whether anything is (or may still be) off its stairs."""
        changed = False
        self.warm()
        moved: set[int] = set()
        for gi in self.prunable:
            if self.lm.neighbours[gi] & moved or not self.fresh(gi):
                changed = True  # its curve moved under it: look again next pass
                continue
            fr = self.friendly(gi)
            if self.plan[gi] in fr:
                continue
            choice = snap_width(self.plan[gi], fr, mode)
            if choice > self.cap[gi]:
                choice = snap_width(self.plan[gi], fr, "down")
            if (
                choice > self.cap[gi]
                or choice == self.plan[gi]
                or self.latency(gi, choice) > self.latency(gi, self.plan[gi])
            ):
                continue
            self.move(gi, choice, f"snap {mode}")
            moved.add(gi)
            changed = True
        return changed

    def run(self, budget_ms: float) -> tuple[float, float]:
        """Run the steps: :meth:`descend` to ``budget_ms``, :meth:`fill` the slack, :meth:`snap_to_stairs`.

        A plan that would raise the predicted latency is undone (:meth:`reset`): no step may slow the model.

        Returns:
            The predicted work (ms, before the floor) of the current widths and of the plan.
        """
        before = self.total()
        self.descend(budget_ms)
        self.fill(budget_ms)
        self.snap_to_stairs()
        after = self.total()
        if after > before:
            log.warning(
                "plan would raise predicted latency %.4f -> %.4f ms; keeping the model as is", before, after
            )
            self.reset()
            after = before
        return before, after

    def reset(self) -> None:
        """Put every group back at its current width (the plan that changes nothing)."""
        for gi in self.prunable:
            if self.plan[gi] != self.cap[gi]:
                self.move(gi, self.cap[gi], "reset")

    def result(self) -> tuple[dict[str, int], dict[str, list[int]], tuple[GroupDecision, ...]]:
        """The plan as data: root -> width, root -> channels to remove, and one decision per group."""
        self.warm()
        widths: dict[str, int] = {}
        removals: dict[str, list[int]] = {}
        decisions: list[GroupDecision] = []
        for gi in self.prunable:
            g, cap, new = self.gm.groups[gi], self.cap[gi], self.plan[gi]
            widths[g.root] = new
            if new < cap:
                removals[g.root] = sorted(int(i) for i in self.order[gi][new:])
            d = GroupDecision(
                root=g.root,
                width_before=cap,
                width_after=new,
                dense_width=self.dense[gi],
                friendly=tuple(self.friendly(gi)),
                latency_saved_ms=self.latency(gi, cap) - self.latency(gi, new),
                importance_kept=float(self.prefix[gi][new] / max(self.prefix[gi][-1], 1e-12)),
            )
            decisions.append(d)
            if new != cap:
                log.info(
                    "group %-28s %4d -> %4d channels (dense %d), saves %.4f ms, keeps %.0f%% importance",
                    g.root,
                    cap,
                    new,
                    d.dense_width,
                    d.latency_saved_ms,
                    100 * d.importance_kept,
                )
        return widths, removals, tuple(decisions)


def plan_pruning(
    gm: GroupedModel,
    predictor: Predictor,
    input_shape: Sequence[int],
    budget_ms: float,
    *,
    importance: ImportanceLike = "l1",
    snap: SnapMode | None = "up",
    dense_widths: Mapping[str, int] | None = None,
    min_channel_ratio: float = DEFAULT_MIN_CHANNEL_RATIO,
    min_channels: int = 1,
    max_passes: int = 50,
) -> Plan:
    """Choose a friendly width for every prunable group so the model meets ``budget_ms``.

    Runs a :class:`Planner`: descend to the budget, fill the slack, snap onto the stairs. A plan that
    would raise the predicted latency is discarded (the model is left as is). A budget below the
    predictor's dispatch floor is planned to the floor (no cut buys latency below it) and reported as not
    met.

    Args:
        gm: The grouped model (see :func:`hwprune.prune.graph.build_groups`).
        predictor: Anything with ``predict(DataFrame) -> ndarray`` (ms per row).
        input_shape: Input shape including batch.
        budget_ms: Predicted latency to reach, in ms.
        importance: Channel importance: ``"l1"``, ``"l2"``, ``"bn_scale"``, ``"taylor"``, a Torch-Pruning
            ``Importance`` object or any callable ``(group) -> 1-D tensor`` (see
            :func:`hwprune.prune.importance.make_importance`).
        snap: How widths are moved onto friendly counts after the neighbours settle: ``"up"``,
            ``"down"``, ``"nearest"``, or ``None`` (no final snap; the descent still stops only on
            counts that lower the latency).
        dense_widths: Conv name -> output channels of the dense model: the top of each group's staircase.
            Defaults to the current widths.
        min_channel_ratio: No group goes below this share of its dense width, in (0, 1]; default
            :data:`hwprune.prune.DEFAULT_MIN_CHANNEL_RATIO` (the floor of the default measurement space).
        min_channels: No group goes below this many channels.
        max_passes: Cap on the solver's passes (each costs one batched predictor call).

    Returns:
        The plan; ``feasible`` is False when the floors stop it above the budget.

    Raises:
        ValueError: If ``budget_ms`` is not positive, ``min_channel_ratio``/``min_channels`` are out of
            range, ``snap`` is unknown, or ``importance`` is an unknown name or returns the wrong shape.
        TypeError: If ``importance`` is neither a name nor callable.

    Example:
        >>> gm = build_groups(model, (1, 1, 28, 28))  # doctest: +SKIP
        >>> plan = plan_pruning(gm, predictor, (1, 1, 28, 28), budget_ms=0.5)  # doctest: +SKIP
        >>> plan.latency_after_ms <= 0.5  # doctest: +SKIP
        True
    """
    if not (isinstance(budget_ms, int | float) and math.isfinite(budget_ms) and budget_ms > 0):
        raise ValueError(f"`budget_ms` must be a latency in ms (> 0), got {budget_ms!r}")
    t0 = time.perf_counter()
    planner = Planner(
        gm,
        predictor,
        input_shape,
        importance=importance,
        snap=snap,
        dense_widths=dense_widths,
        min_channel_ratio=min_channel_ratio,
        min_channels=min_channels,
        max_passes=max_passes,
    )
    requested = float(budget_ms)
    floor = floor_ms(predictor)
    if floor > requested:  # plan down to the floor, never past it: further cuts would buy nothing
        log.warning(
            "budget %.4g ms is below the target's dispatch floor %.4g ms: planning to the floor",
            requested,
            floor,
        )
    before, after = planner.run(max(requested, floor))
    widths, removals, decisions = planner.result()
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
        planner.lm.calls,
        planner.lm.rows,
    )
    return Plan(widths, removals, before, after, requested, feasible, decisions, seconds)

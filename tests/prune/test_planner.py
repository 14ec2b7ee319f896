"""The planner's named steps, each on the synthetic staircase predictor (tests/prune/conftest.py).

With that predictor a group's friendly counts are the multiples of 8 in its range plus its top width, so
what each step must leave behind is known exactly.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from hwprune.models import build_model
from hwprune.prune import (
    DEFAULT_MIN_CHANNEL_RATIO,
    build_groups,
    conv_widths,
    plan_pruning,
    predicted_latency,
    prune_to_budget,
)
from hwprune.prune.planner import Planner

SHAPE = (1, 1, 28, 28)


def _planner(pred: Any, model: nn.Module | None = None, **kwargs: Any) -> Planner:
    torch.manual_seed(0)
    gm = build_groups(model if model is not None else build_model("small_resnet"), SHAPE)
    return Planner(gm, pred, SHAPE, **kwargs)


def _on_stairs(p: Planner, pred: Any) -> list[str]:
    """Groups whose planned width is not a friendly count of the staircase."""
    return [
        f"{p.gm.groups[gi].root}={p.plan[gi]}"
        for gi in p.prunable
        if p.plan[gi] not in pred.friendly(p.lo[gi], p.dense[gi])
    ]


class _TwoConvs(nn.Module):
    """conv(1 -> 30) -> conv(30 -> 20) -> pool -> linear: a group (30) that is not on the 8-channel tiles."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 30, 3, padding=1)
        self.b = nn.Conv2d(30, 20, 3, padding=1)
        self.fc = nn.Linear(20, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.b(torch.relu(self.a(x))))
        return self.fc(x.mean((2, 3)))


def test_descend_meets_the_budget_on_friendly_widths(staircase: Any) -> None:
    p = _planner(staircase)
    before = p.total()
    p.descend(0.5 * before)
    assert p.total() <= 0.5 * before
    assert _on_stairs(p, staircase) == []
    assert all(p.lo[gi] <= p.plan[gi] <= p.cap[gi] for gi in p.prunable)
    assert sum(p.plan[gi] < p.cap[gi] for gi in p.prunable) >= 2


def test_descend_cuts_the_least_important_group_first(staircase: Any) -> None:
    """With one group's channels nearly worthless, a small cut comes out of that group alone."""
    model = build_model("small_resnet")
    cheap = model.get_submodule("layers.1.conv1")

    def importance(group: Any) -> torch.Tensor:
        worthless = group[0].dep.target.module is cheap  # the group rooted at layers.1.conv1
        return torch.full((len(group[0].idxs),), 1e-6 if worthless else 1.0)

    p = _planner(staircase, model, importance=importance)
    p.descend(0.98 * p.total())
    moved = [p.gm.groups[gi].root for gi in p.prunable if p.plan[gi] < p.cap[gi]]
    assert moved == ["layers.1.conv1"]


@pytest.mark.parametrize("snap", ["up", None])
def test_next_down_is_the_top_of_the_next_lower_stair(staircase: Any, snap: str | None) -> None:
    """Friendly counts (snap on) or every count (snap off): both land on the next stair's right edge."""
    p = _planner(staircase, snap=snap)
    for gi in p.prunable:
        cap = p.cap[gi]  # every width of small_resnet is a multiple of 8
        assert p.latency(gi, cap - 1) == p.latency(gi, cap) > p.latency(gi, cap - 8)
        assert p.next_down(gi) == cap - 8


def test_fill_spends_the_slack_and_stays_within_budget(staircase: Any) -> None:
    p = _planner(staircase)
    before = p.total()
    for gi in p.prunable:
        p.move(gi, p.lo[gi], "test: start at the floor")
    low = p.total()
    budget = 0.5 * (low + before)
    p.fill(budget)
    assert low < p.total() <= budget
    assert _on_stairs(p, staircase) == []
    # Everything fits again: fill goes back up to the current widths, never past them.
    p.fill(before)
    assert p.plan == p.cap


@pytest.mark.parametrize(
    ("mode", "start", "expected"),
    [("up", 60, 64), ("down", 60, 56), ("nearest", 59, 56), ("nearest", 61, 64)],
)
def test_snap_to_stairs_moves_mid_stair_widths_onto_friendly_counts(
    staircase: Any, mode: str, start: int, expected: int
) -> None:
    p = _planner(staircase, snap=mode)
    gi = next(gi for gi in p.prunable if p.cap[gi] == 64)
    p.move(gi, start, "test: mid-stair")
    total = p.total()
    p.snap_to_stairs()
    assert p.plan[gi] == expected
    assert p.total() <= total
    assert _on_stairs(p, staircase) == []


def test_snap_to_stairs_never_goes_above_the_current_width(staircase: Any) -> None:
    """A 30-wide group whose dense width is 64: its stair ends at 32, above 30, so it snaps down to 24."""
    model = _TwoConvs()
    gm = build_groups(model, SHAPE)
    p = Planner(gm, staircase, SHAPE, snap="up", dense_widths={"a": 64, "b": 20})
    (gi,) = [gi for gi in p.prunable if p.cap[gi] == 30]
    assert p.latency(gi, 32) == p.latency(gi, 30) > p.latency(gi, 24)
    p.snap_to_stairs()
    assert p.plan[gi] == 24


def test_snap_none_leaves_widths_where_they_are(staircase: Any) -> None:
    p = _planner(staircase, snap=None)
    gi = p.prunable[0]
    p.move(gi, p.cap[gi] - 3, "test: mid-stair")
    plan = dict(p.plan)
    p.snap_to_stairs()
    assert p.plan == plan and p.plan[gi] == p.cap[gi] - 3


def test_result_removes_the_least_important_channels(staircase: Any) -> None:
    def by_index(group: Any) -> torch.Tensor:  # channel i scores i: the low indices go first
        return torch.arange(len(group[0].idxs), dtype=torch.float64)

    p = _planner(staircase, importance=by_index)
    p.descend(0.6 * p.total())
    widths, removals, decisions = p.result()
    assert removals
    for d in decisions:
        assert widths[d.root] == d.width_after
        assert removals.get(d.root, []) == list(range(d.width_before - d.width_after))
        assert d.friendly == tuple(staircase.friendly(math.ceil(0.25 * d.dense_width), d.dense_width))


def test_plan_pruning_plans_to_the_dispatch_floor_not_past_it(make_staircase: Any) -> None:
    model = build_model("small_resnet")
    floor = 0.6 * predicted_latency(make_staircase(), model, SHAPE)
    pred = make_staircase(floor_ms=floor)
    tiny = plan_pruning(build_groups(model, SHAPE), pred, SHAPE, 1e-6)
    at_floor = plan_pruning(build_groups(model, SHAPE), pred, SHAPE, floor)
    assert not tiny.feasible and at_floor.feasible
    assert tiny.widths == at_floor.widths  # cuts below the floor would buy nothing
    assert tiny.latency_after_ms == pytest.approx(floor)


def test_prune_to_budget_applies_a_staircase_plan(staircase: Any) -> None:
    torch.manual_seed(0)
    model = build_model("small_resnet")
    dense = conv_widths(model)
    budget = 0.6 * predicted_latency(staircase, model, SHAPE)
    res = prune_to_budget(model, staircase, SHAPE, budget)
    assert res.plan.feasible and res.latency_after_ms <= budget
    assert res.latency_after_ms == pytest.approx(res.plan.latency_after_ms, rel=1e-9)
    widths = conv_widths(model)
    assert widths != dense and all(w % 8 == 0 for w in widths.values())
    assert model(torch.zeros(2, *SHAPE[1:])).shape == (2, 10)
    torch.manual_seed(0)
    again = build_model("small_resnet")
    assert prune_to_budget(again, staircase, SHAPE, budget).plan.removals == res.plan.removals


def test_min_channel_ratio_bounds_every_group(staircase: Any) -> None:
    gm = build_groups(build_model("small_resnet"), SHAPE)
    plan = plan_pruning(gm, staircase, SHAPE, 1e-6)
    assert not plan.feasible
    assert all(d.width_after >= math.ceil(DEFAULT_MIN_CHANNEL_RATIO * d.dense_width) for d in plan.decisions)
    assert any(d.width_after == math.ceil(DEFAULT_MIN_CHANNEL_RATIO * d.dense_width) for d in plan.decisions)
    half = plan_pruning(gm, staircase, SHAPE, 1e-6, min_channel_ratio=0.5)
    assert all(d.width_after >= d.dense_width // 2 for d in half.decisions)
    assert half.latency_after_ms > plan.latency_after_ms


def test_planner_settings_are_validated(staircase: Any) -> None:
    gm = build_groups(build_model("small_resnet"), SHAPE)
    with pytest.raises(ValueError, match="`budget_ms` must be a latency in ms"):
        plan_pruning(gm, staircase, SHAPE, -1.0)
    with pytest.raises(ValueError, match=r"`min_channel_ratio` must be a fraction in \(0, 1\], got 0.0"):
        plan_pruning(gm, staircase, SHAPE, 1.0, min_channel_ratio=0.0)
    with pytest.raises(ValueError, match="`min_channels` must be an int >= 1, got 0"):
        plan_pruning(gm, staircase, SHAPE, 1.0, min_channels=0)
    with pytest.raises(ValueError, match="`snap` must be any of"):
        plan_pruning(gm, staircase, SHAPE, 1.0, snap="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`ignored_layers` names 'nope'"):
        build_groups(build_model("small_resnet"), SHAPE, ["nope"])


def test_run_takes_the_steps_and_reset_undoes_every_move(staircase: Any) -> None:
    p = _planner(staircase)
    fresh = {gi: p.latency(gi, p.cap[gi]) for gi in p.prunable}
    before, after = p.run(0.6 * p.total())
    assert after <= 0.6 * before and after == p.total()
    assert _on_stairs(p, staircase) == []
    p.reset()
    assert p.plan == p.cap and p.total() == pytest.approx(before, rel=1e-12)
    assert {gi: p.latency(gi, p.cap[gi]) for gi in p.prunable} == pytest.approx(fresh, rel=1e-12)

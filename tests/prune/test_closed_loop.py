"""Whole-model calibration and the closed loop, on this CPU with the real harness."""

from __future__ import annotations

import copy

import pytest
import torch

from hwprune.measure import Target
from hwprune.models import build_model
from hwprune.prune import apply_removals, build_groups, plan_pruning, predicted_latency
from hwprune.verify.calibration import calibrate_on_target, calibration_variants, variant_configs
from hwprune.verify.loop import plan_and_verify
from hwprune.verify.stopwatch import time_against_dense

SHAPE = (1, 1, 28, 28)
# A board behind TVM RPC: its whole model cannot be timed from here.
BOARD = Target(name="board", backend="tvm", options={"rpc": {"host": "127.0.0.1", "port": 9, "key": "b"}})


def _planner(predictor: object):  # noqa: ANN202
    def plan(gm, budget):  # noqa: ANN001, ANN202
        return plan_pruning(gm, predictor, SHAPE, budget, min_channel_ratio=0.25)  # type: ignore[arg-type]

    return plan


def test_calibration_variants_are_pruned_copies_with_odd_widths() -> None:
    dense = build_model("small_resnet")
    widths = {n: m.out_channels for n, m in dense.named_modules() if isinstance(m, torch.nn.Conv2d)}
    variants = calibration_variants(dense, SHAPE, ratios=(0.8, 0.4), seed=3)
    assert {n: m.out_channels for n, m in dense.named_modules() if isinstance(m, torch.nn.Conv2d)} == widths
    sizes = [sum(p.numel() for p in v.parameters()) for v in variants]
    assert sizes[0] > sizes[1]  # deeper ratio, smaller network
    outs = {m.out_channels for v in variants for m in v.modules() if isinstance(m, torch.nn.Conv2d)}
    assert any(c % 2 for c in outs)  # not rounded to any multiple: odd widths are what must be priced
    for v in variants:
        v(torch.zeros(*SHAPE))  # each is a working network
    rows = variant_configs(variants, SHAPE)
    assert rows and all(r["layer"].startswith("variant") for r in rows)
    with pytest.raises(ValueError, match=r"`ratios` must be fractions in \(0, 1\], got \[1.5\]"):
        calibration_variants(dense, SHAPE, ratios=(1.5,))


def test_predicted_whole_model_latency_agrees_with_a_measurement(predictor: object) -> None:
    """Issue 11's CPU check: a small_resnet plan's predicted whole-model latency is within 20% of measured."""
    pred = copy.deepcopy(predictor)
    dense = build_model("small_resnet").eval()
    calibrate_on_target(pred, "cpu_torch", dense, SHAPE, rounds=3)
    model = copy.deepcopy(dense)
    gm = build_groups(model, SHAPE)
    budget = 0.6 * predicted_latency(pred, dense, SHAPE)  # type: ignore[arg-type]
    apply_removals(gm, plan_pruning(gm, pred, SHAPE, budget, min_channel_ratio=0.25).removals)  # type: ignore[arg-type]
    # The one stopwatch every check uses: a comparison timed through a burst of load (a shared VM's
    # neighbours) is timed again and the steadiest kept, as the closed loop and the report do.
    t_dense, (t_plan,) = time_against_dense("cpu_torch", dense, [model], SHAPE)
    for net, t in ((dense, t_dense), (model, t_plan)):
        predicted = predicted_latency(pred, net, SHAPE)  # type: ignore[arg-type]
        assert predicted == pytest.approx(t.median_ms, rel=0.20), (predicted, t)


def test_closed_loop_times_the_plan_and_learns(predictor: object) -> None:
    pred = copy.deepcopy(predictor)
    dense = build_model("small_resnet").eval()
    budget = 0.6 * predicted_latency(pred, dense, SHAPE)  # type: ignore[arg-type]
    vp = plan_and_verify(dense, pred, SHAPE, budget, _planner(pred), target="cpu_torch", max_rounds=1)
    assert 1 <= len(vp.rounds) <= 2
    # A plan to 60% of the predicted latency removes about half the conv work (small_resnet ran 1.4-2.1x
    # faster at 50-70% plans on this CPU, docs/MODEL_TRUE.md): the setup implies an accepted, faster step.
    # Whole-model rounds are interleaved, so load on a shared machine slows both models alike.
    assert vp.accepted, vp.reason
    assert vp.plan.removals and vp.measured_ms is not None and vp.current_ms is not None
    assert vp.measured_ms < vp.current_ms
    # Steady rounds are learnt from (calibration); noisy ones (a loaded machine) are not.
    assert pred.calibrated == any(not r.noisy for r in vp.rounds)  # type: ignore[attr-defined]


def test_closed_loop_refuses_a_step_that_measures_slower(predictor: object, monkeypatch) -> None:  # noqa: ANN001
    """The decision logic, with the timer pinned to a slower candidate (a real one cannot be forced)."""
    from hwprune.measure import model_timing
    from hwprune.measure.model_timing import ModelTiming

    def slower(target, models, shape, **kw):  # noqa: ANN001, ANN003, ANN202
        return [ModelTiming(1.0, 0.0, (1.0,) * 5), ModelTiming(1.2, 0.0, (1.2,) * 5)]

    monkeypatch.setattr(model_timing, "time_models", slower)
    pred = copy.deepcopy(predictor)
    dense = build_model("small_resnet").eval()
    budget = 0.6 * predicted_latency(pred, dense, SHAPE)  # type: ignore[arg-type]
    vp = plan_and_verify(dense, pred, SHAPE, budget, _planner(pred), target="cpu_torch", max_rounds=0)
    assert not vp.accepted and vp.plan.removals == {} and "refused" in vp.reason
    assert vp.plan.latency_after_ms == vp.plan.latency_before_ms


def test_closed_loop_is_open_where_the_target_cannot_be_timed(predictor: object) -> None:
    dense = build_model("small_resnet").eval()
    budget = 0.6 * predicted_latency(predictor, dense, SHAPE)  # type: ignore[arg-type]
    vp = plan_and_verify(dense, predictor, SHAPE, budget, _planner(predictor), target=BOARD)
    assert vp.accepted and vp.rounds == () and "cannot be timed here" in vp.reason and vp.plan.removals
    with pytest.raises(ValueError, match=r"`max_rounds` must be an int >= 0, got -1"):
        plan_and_verify(dense, predictor, SHAPE, budget, _planner(predictor), max_rounds=-1)


def test_planner_stops_at_the_dispatch_floor(predictor: object) -> None:
    """Below the floor no cut buys latency: the planner goes to the floor, not past it."""
    pred = copy.deepcopy(predictor)
    dense = build_model("small_resnet").eval()
    conv_sum = predicted_latency(pred, dense, SHAPE)  # type: ignore[arg-type]
    pred.calibration_ = [{"configs": [], "measured_ms": 1.0}]  # type: ignore[attr-defined]
    pred.floor_ms_ = 0.7 * conv_sum  # type: ignore[attr-defined]
    gm = build_groups(copy.deepcopy(dense), SHAPE)
    plan = plan_pruning(gm, pred, SHAPE, 0.3 * conv_sum, min_channel_ratio=0.1)  # type: ignore[arg-type]
    assert not plan.feasible and plan.latency_after_ms == pytest.approx(0.7 * conv_sum)
    deep = plan_pruning(
        build_groups(copy.deepcopy(dense), SHAPE), predictor, SHAPE, 0.3 * conv_sum, min_channel_ratio=0.1
    )  # type: ignore[arg-type]
    kept = sum(plan.widths.values())
    assert kept > sum(deep.widths.values())  # without the floor it would have cut far deeper

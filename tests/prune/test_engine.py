"""Every factory model prunes under a budget with the real predictor (live CPU timings), on friendly widths.

The planner's logic, step by step, is tested on an exact synthetic staircase in test_planner.py and
test_importance.py; these tests keep it honest on a predictor fitted on real timings.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hwprune.contract import conv_layer_configs
from hwprune.models.factory import MODEL_NAMES, build_model
from hwprune.prune import (
    build_groups,
    conv_widths,
    plan_pruning,
    predicted_latency,
    prune_to_budget,
    replay_history,
)
from hwprune.prune.model_latency import LatencyModel
from hwprune.staircase import friendly_from_curve

SHAPE = (1, 1, 28, 28)


def _group_friendly_ok(model: nn.Module, predictor: object, dense: dict[str, int]) -> list[str]:
    """Return the groups whose width is not on its friendly set (summed curve, final neighbours)."""
    gm = build_groups(model, SHAPE)
    layers = {layer.name: layer.config for layer in conv_layer_configs(model, SHAPE)}
    lm = LatencyModel(predictor, layers, gm.groups)  # type: ignore[arg-type]
    plan = {g.index: g.width for g in gm.groups}
    bad = []
    for g in gm.groups:
        if not g.prunable:
            continue
        top = max([dense[n] for n, side in g.layers if side in ("out", "dw") and n in dense] + [g.width])
        lo = min(g.width, max(1, -(-top // 10)))
        domain = list(range(lo, top + 1))
        curve = lm.curves([g.index], {g.index: domain}, plan)[g.index]
        if g.width not in friendly_from_curve(domain, curve.tolist()):
            bad.append(f"{g.root}={g.width}")
    return bad


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_prunes_to_budget(name: str, predictor: object) -> None:
    torch.manual_seed(0)
    model = build_model(name).eval()
    dense = conv_widths(model)
    before = predicted_latency(predictor, model, SHAPE)  # type: ignore[arg-type]
    budget = 0.7 * before
    result = prune_to_budget(model, predictor, SHAPE, budget, dense_widths=dense)  # type: ignore[arg-type]
    after = predicted_latency(predictor, model, SHAPE)  # type: ignore[arg-type]
    assert result.plan.feasible, f"{name}: plan missed the budget"
    assert after <= budget + 1e-9
    assert after == pytest.approx(result.plan.latency_after_ms, rel=1e-9)
    assert model(torch.zeros(2, *SHAPE[1:])).shape == (2, 10)
    assert sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)) < sum(dense.values())
    assert _group_friendly_ok(model, predictor, dense) == []


def test_replay_rebuilds_the_same_architecture(predictor: object) -> None:
    torch.manual_seed(0)
    model = build_model("resnet18")
    dense = conv_widths(model)
    history = []
    for ratio in (0.8, 0.6):
        budget = ratio * predicted_latency(predictor, build_model("resnet18"), SHAPE)  # type: ignore[arg-type]
        history.append(prune_to_budget(model, predictor, SHAPE, budget, dense_widths=dense).history)  # type: ignore[arg-type]
    fresh = replay_history(build_model("resnet18"), SHAPE, history)
    assert conv_widths(fresh) == conv_widths(model)
    fresh.load_state_dict(model.state_dict())  # same shapes everywhere


def test_planner_is_deterministic_and_never_raises_latency(predictor: object) -> None:
    plans = []
    for _ in range(2):
        torch.manual_seed(1)
        model = build_model("small_resnet")
        gm = build_groups(model, SHAPE)
        before = predicted_latency(predictor, model, SHAPE)  # type: ignore[arg-type]
        plan = plan_pruning(gm, predictor, SHAPE, 0.5 * before)  # type: ignore[arg-type]
        assert plan.latency_after_ms <= plan.latency_before_ms
        plans.append(plan)
    assert plans[0].widths == plans[1].widths and plans[0].removals == plans[1].removals

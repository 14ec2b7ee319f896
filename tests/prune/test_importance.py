"""The importance extension point: names, Torch-Pruning Importance objects and plain callables."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch_pruning as tp

from hwprune.models import build_model
from hwprune.prune import build_groups, plan_pruning, predicted_latency, prune_to_budget
from hwprune.prune.importance import group_scores, make_importance

SHAPE = (1, 1, 28, 28)


def test_a_torch_pruning_importance_decides_which_channels_go(staircase: Any) -> None:
    """A real tp Importance on a real model: each group loses exactly its lowest-scored channels."""
    torch.manual_seed(0)
    imp = tp.importance.GroupMagnitudeImportance(p=2)
    gm = build_groups(build_model("small_resnet"), SHAPE)
    scores = {g.root: group_scores(imp, gm.tp_groups[g.index]) for g in gm.groups if g.prunable}
    plan = plan_pruning(
        gm, staircase, SHAPE, 0.6 * predicted_latency(staircase, gm.model, SHAPE), importance=imp
    )
    assert plan.feasible and plan.removals
    for root, removed in plan.removals.items():
        keep = plan.widths[root]
        expected = np.argsort(-scores[root], kind="stable")[keep:]
        assert removed == sorted(int(i) for i in expected)
        assert scores[root][removed].max() <= np.delete(scores[root], removed).min()


def test_a_plain_callable_is_an_importance(staircase: Any) -> None:
    def last_channels_first(group: Any) -> torch.Tensor:  # channel i scores i: the low indices go
        return torch.arange(len(group[0].idxs), dtype=torch.float32)

    model = build_model("small_resnet")
    res = prune_to_budget(
        model,
        staircase,
        SHAPE,
        0.6 * predicted_latency(staircase, model, SHAPE),
        importance=last_channels_first,
    )
    assert res.plan.removals
    for d in res.plan.decisions:
        assert res.plan.removals.get(d.root, []) == list(range(d.width_before - d.width_after))


def test_a_named_importance_is_a_normalised_torch_pruning_one() -> None:
    imp = make_importance("l2")
    assert isinstance(imp, tp.importance.GroupMagnitudeImportance) and imp.p == 2
    own = tp.importance.GroupMagnitudeImportance(p=1)
    assert make_importance(own) is own


def test_bad_importances_say_what_is_wrong(staircase: Any) -> None:
    gm = build_groups(build_model("small_resnet"), SHAPE)
    with pytest.raises(ValueError, match=r"`importance` must be one of \('l1', 'l2', 'bn_scale', 'taylor'\)"):
        plan_pruning(gm, staircase, SHAPE, 1.0, importance="l3")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`importance` must be one of .* or a callable .*got int 3"):
        plan_pruning(gm, staircase, SHAPE, 1.0, importance=3)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"`importance` .*must return a 1-D tensor of \d+ scores.*got shape \(2,\)"
    ):
        plan_pruning(gm, staircase, SHAPE, 1.0, importance=lambda group: torch.ones(2))


@pytest.mark.parametrize("kind", ["l2", "bn_scale", "taylor"])
def test_importance_kinds(kind: str, staircase: Any) -> None:
    torch.manual_seed(0)
    model = build_model("small_resnet")
    if kind == "taylor":
        model(torch.randn(4, *SHAPE[1:])).logsumexp(1).mean().backward()
    before = predicted_latency(staircase, model, SHAPE)
    res = prune_to_budget(model, staircase, SHAPE, 0.7 * before, importance=kind)  # type: ignore[arg-type]
    assert res.plan.removals and res.latency_after_ms <= 0.7 * before


def test_gradient_importances_need_a_backward_pass(staircase: Any) -> None:
    model = build_model("small_resnet")
    with pytest.raises(RuntimeError, match="needs gradients"):
        prune_to_budget(model, staircase, SHAPE, 0.1, importance="taylor")
    with pytest.raises(RuntimeError, match="GroupTaylorImportance.*needs gradients"):
        prune_to_budget(model, staircase, SHAPE, 0.1, importance=tp.importance.GroupTaylorImportance())

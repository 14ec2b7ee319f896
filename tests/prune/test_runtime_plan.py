"""Planning in a deploy runtime on this CPU: an `inductor` target (torch.compile) end to end, for real.

The layer table is measured in the runtime's layer timing (oneDNN convs, as inductor calls them), the
whole-model terms are calibrated on compiled networks, and the plan is checked against the compiled model.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from hwprune.callbacks.predictor_factory import ensure_predictor
from hwprune.measure import EvaluatorConfig, read_table
from hwprune.models import build_model
from hwprune.prune import apply_removals, build_groups, plan_pruning
from hwprune.verify.stopwatch import time_against_dense

SHAPE = (1, 1, 28, 28)
TARGET = "cpu_torch_inductor"


@pytest.mark.slow
def test_an_inductor_target_plans_small_resnet_and_predicts_the_compiled_model(tmp_path: Path) -> None:
    dense = build_model("small_resnet").eval()
    ev = EvaluatorConfig(warmup=2, number=1, repeat=5, min_repeat_ms=5.0)
    pred = ensure_predictor(TARGET, dense, SHAPE, tmp_path, step=8, pairs=8, evaluator=ev)
    table = read_table(pred.source_table_)
    assert (table["target"] == TARGET).all()
    assert table["settings"].str.contains('"runtime": "inductor"').all()
    assert pred.calibrated  # whole-model terms from compiled networks
    dense_pred = pred.predict_model(dense, SHAPE)
    pruned = copy.deepcopy(dense)
    gm = build_groups(pruned, SHAPE)
    plan = plan_pruning(gm, pred, SHAPE, 0.5 * dense_pred, min_channel_ratio=0.25)
    assert plan.removals
    apply_removals(gm, plan.removals)
    # The one stopwatch the checks use: a comparison timed through a burst of load is timed again.
    t_dense, (t_pruned,) = time_against_dense(TARGET, dense, [pruned], SHAPE)
    assert t_dense.build_s > 0 and t_pruned.build_s > 0  # both really compiled
    for model, t in ((dense, t_dense), (pruned, t_pruned)):
        p = pred.predict_model(model, SHAPE)
        assert abs(p / t.median_ms - 1) <= 0.20, (p, t.median_ms)  # DESIGN: within 20% in CI
    speedup, _ = t_pruned.speedup_over(t_dense)
    assert speedup > 1.2  # a 50% plan is measurably faster in the runtime it was planned for


class _Branchy(torch.nn.Module):
    """small_resnet behind data-dependent control flow: torch.compile(fullgraph=True) cannot capture it."""

    def __init__(self) -> None:
        super().__init__()
        self.net = build_model("small_resnet")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)
        if y.sum() > 0:
            return y
        return -y


def test_a_candidate_that_cannot_compile_is_refused_with_the_error(predictor: object) -> None:
    from hwprune.verify.loop import plan_and_verify

    model = _Branchy().eval()
    budget = 0.6 * pred_model(predictor, model)

    def planner(gm, b):  # noqa: ANN001, ANN202
        return plan_pruning(gm, predictor, SHAPE, b, min_channel_ratio=0.25)  # type: ignore[arg-type]

    vp = plan_and_verify(model, predictor, SHAPE, budget, planner, target=TARGET)
    assert not vp.accepted and not vp.plan.removals
    assert "refused: the candidate could not be timed" in vp.reason
    assert "runtime 'inductor'" in vp.reason and "compile failed" in vp.reason


def pred_model(predictor: object, model: torch.nn.Module) -> float:
    return float(predictor.predict_model(model, SHAPE))  # type: ignore[attr-defined]

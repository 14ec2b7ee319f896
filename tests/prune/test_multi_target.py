"""One plan for several targets (issue 14, part 2): the planner's fold of per-target costs and budgets.

The predictors here are exact synthetic staircases, so each assertion is about the planner's logic, not
about timing noise: target "a8" steps every 8 channels, target "b12" every 12, and b12 also pays for the
batch it is priced at (which checks that each target is asked at its own batch).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hwprune.models import build_model
from hwprune.prune import build_groups
from hwprune.prune.model_latency import predicted_latency
from hwprune.prune.multi_target import AtBatch, plan_for_targets
from hwprune.prune.planner import plan_pruning

SHAPE = (1, 1, 28, 28)


class Stairs:
    """Exact staircase cost: ``ms_per_tile * ceil(in/q) * ceil(out/q) * H * W * k^2 * batch / 1e4``."""

    def __init__(self, q: int, ms_per_tile: float = 1.0) -> None:
        self.q, self.ms = q, ms_per_tile

    def predict(self, configs: pd.DataFrame) -> np.ndarray:
        c = configs
        tiles = np.ceil(c.in_channels / c.groups / self.q) * np.ceil(c.out_channels / self.q)
        return self.ms * tiles.to_numpy() * (c.height * c.width * c.kernel_size**2 * c.batch).to_numpy() / 1e4


def _gm():
    return build_groups(build_model("small_resnet"), SHAPE)


def _latency(pred, gm, plan_widths, batch: int) -> float:
    import copy

    from hwprune.prune import apply_removals

    g2 = build_groups(copy.deepcopy(gm.model), SHAPE)
    cap = {g.root: g.width for g in g2.groups}
    apply_removals(g2, {r: list(range(cap[r] - w)) for r, w in plan_widths.items() if w < cap[r]})
    return predicted_latency(pred, g2.model, (batch, *SHAPE[1:]))


def test_at_batch_prices_each_target_at_its_own_batch() -> None:
    frame = pd.DataFrame(
        [
            dict(
                batch=1,
                in_channels=16,
                out_channels=16,
                height=8,
                width=8,
                kernel_size=3,
                stride=1,
                padding=1,
                groups=1,
            )
        ]
    )
    p = Stairs(8)
    assert AtBatch(p, 32).layer_costs(frame)[0] == pytest.approx(32 * p.predict(frame)[0])


def test_joint_plan_meets_every_budget_and_each_target_is_priced_alone_right() -> None:
    preds = {"a8": Stairs(8), "b12": Stairs(12, 0.5)}
    batches = {"a8": 1, "b12": 4}
    gm = _gm()
    dense = {t: predicted_latency(p, gm.model, (batches[t], *SHAPE[1:])) for t, p in preds.items()}
    budgets = {"a8": 0.6 * dense["a8"], "b12": 0.7 * dense["b12"]}
    mp = plan_for_targets(gm, preds, SHAPE, budgets, batches)
    assert mp.feasible
    for t, r in mp.targets.items():
        assert r.latency_before_ms == pytest.approx(dense[t])
        assert r.met and r.latency_after_ms <= budgets[t]
        # The per-target figure is the predictor's own whole-model latency of the pruned model.
        assert r.latency_after_ms == pytest.approx(_latency(preds[t], gm, mp.widths, batches[t]), rel=1e-9)
    assert sum(r.weight for r in mp.targets.values()) == pytest.approx(1.0)


def test_a_target_left_over_budget_gets_more_weight_until_it_is_met() -> None:
    """b12's budget is much tighter than a8's: equal weights miss it, re-weighting meets both."""
    preds = {"a8": Stairs(8), "b12": Stairs(12)}
    batches = {"a8": 1, "b12": 1}
    gm = _gm()
    dense = {t: predicted_latency(p, gm.model, SHAPE) for t, p in preds.items()}
    budgets = {"a8": 0.95 * dense["a8"], "b12": 0.45 * dense["b12"]}
    one = plan_for_targets(gm, preds, SHAPE, budgets, batches, rounds=1)
    many = plan_for_targets(gm, preds, SHAPE, budgets, batches, rounds=8)
    assert many.feasible and many.rounds >= 1
    assert many.targets["b12"].latency_after_ms <= budgets["b12"]
    if not one.feasible:  # the fold's average hid b12's overrun: re-weighting had to move it
        assert many.rounds > 1 and many.targets["b12"].weight > 0.5


def test_conflicts_name_the_target_that_gave_way() -> None:
    """Counts friendly on a8 (multiples of 8) are not on b12 (multiples of 12) unless multiples of 24."""
    preds = {"a8": Stairs(8), "b12": Stairs(12)}
    gm = _gm()
    dense = {t: predicted_latency(p, gm.model, SHAPE) for t, p in preds.items()}
    mp = plan_for_targets(gm, preds, SHAPE, {t: 0.5 * d for t, d in dense.items()}, {"a8": 1, "b12": 1})
    changed = {d.root: d.width_after for d in mp.plan.decisions if d.width_after != d.width_before}
    assert changed
    for c in mp.conflicts:
        assert c.extra_ms >= 0 and c.width == changed[c.root]
        if c.friendly_below is not None:
            assert c.friendly_below < c.width
    for t, r in mp.targets.items():
        assert r.gave_way_ms == pytest.approx(sum(c.extra_ms for c in mp.conflicts if c.target == t))


def test_single_target_fold_is_the_plain_plan() -> None:
    p = Stairs(8)
    gm = _gm()
    dense = predicted_latency(p, gm.model, SHAPE)
    mp = plan_for_targets(gm, {"a8": p}, SHAPE, {"a8": 0.6 * dense}, {"a8": 1})
    plain = plan_pruning(gm, p, SHAPE, 0.6 * dense)
    assert mp.widths == plain.widths and mp.rounds == 1
    assert mp.targets["a8"].latency_after_ms == pytest.approx(plain.latency_after_ms)
    assert not math.isnan(mp.targets["a8"].gave_way_ms) and mp.conflicts == ()


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        (dict(predictors={}), ValueError, "non-empty mapping"),
        (
            dict(budgets_ms={"a8": 1.0}),
            ValueError,
            r"`budgets_ms` must name the same targets.*missing \['b12'\]",
        ),
        (dict(budgets_ms={"a8": 1.0, "b12": 0.0}), ValueError, r"`budgets_ms\['b12'\]` must be a latency"),
        (dict(batches={"a8": 1, "b12": 0}), ValueError, r"`batches\['b12'\]` must be an int >= 1"),
        (
            dict(predictors={"a8": Stairs(8), "b12": object()}),
            TypeError,
            r"`predictors\['b12'\]` must have predict",
        ),
        (dict(rounds=0), ValueError, "`rounds` must be an int >= 1"),
    ],
)
def test_bad_input_is_refused_by_name(kwargs, err, match) -> None:  # noqa: ANN001
    args = dict(
        predictors={"a8": Stairs(8), "b12": Stairs(12)},
        budgets_ms={"a8": 1.0, "b12": 1.0},
        batches={"a8": 1, "b12": 1},
    )
    extra = {k: kwargs.pop(k) for k in list(kwargs) if k not in args}
    args.update(kwargs)
    with pytest.raises(err, match=match):
        plan_for_targets(_gm(), args["predictors"], SHAPE, args["budgets_ms"], args["batches"], **extra)

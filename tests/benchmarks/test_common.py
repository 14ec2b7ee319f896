"""benchmarks.common: configs, the matched uninstructed baseline and timing through hwprune.measure."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmarks.common import (
    changed_convs,
    load_config,
    matched_uninstructed,
    n_params,
    time_rounds,
    uninstructed,
)
from hwprune.measure import EvaluatorConfig
from hwprune.models import build_model

SHAPE = (1, 1, 28, 28)


def test_config_quick_section_replaces_and_overrides_apply() -> None:
    full = load_config("zoo")
    quick = load_config("zoo", quick=True)
    assert "quick" not in full and set(full["models"]) == {"resnet18", "mobilenet_v2"}
    assert quick["models"] == {
        "resnet18": {"cpu_torch": {"table": "tables/cpu_torch/resnet18_224.csv", "budgets": [0.5]}}
    }
    assert quick["plan_batch"] == full["plan_batch"]  # keys the quick section does not name are kept
    over = load_config(
        "zoo", quick=True, overrides=["match_iters=3", "models.resnet18.cpu_torch.budgets=[0.3]"]
    )
    assert over["match_iters"] == 3 and over["models"]["resnet18"]["cpu_torch"]["budgets"] == [0.3]
    with pytest.raises(ValueError, match=r"`name` must be a YAML file or one of \[.*'zoo'"):
        load_config("nope")
    with pytest.raises(ValueError, match="`overrides` must be key=value"):
        load_config("zoo", overrides=["match_iters"])


def test_every_benchmark_config_loads(tmp_path: Path) -> None:
    conf = Path(__file__).resolve().parents[2] / "benchmarks" / "conf"
    names = sorted(p.stem for p in conf.glob("*.yaml"))
    assert {"e2e", "gpu_time", "model_true", "paper_sweep", "predictor", "zoo"} <= set(names)
    for name in names:
        for quick in (False, True):
            assert "quick" not in load_config(name, quick=quick)


@pytest.mark.parametrize(("round_to", "global_pruning"), [(None, False), (8, False)])
def test_matched_uninstructed_hits_the_parameter_count(round_to: int | None, global_pruning: bool) -> None:
    dense = build_model("small_resnet")
    p0 = n_params(dense)
    target = int(0.4 * p0)
    m, ratio = matched_uninstructed(dense, target, SHAPE, round_to=round_to, global_pruning=global_pruning)
    assert 0 < ratio < 0.95 and n_params(dense) == p0
    tol = 0.01 if round_to is None else 0.15  # round_to=8 moves widths in coarse steps
    assert abs(n_params(m) - target) / target < tol
    with pytest.raises(ValueError, match="`params` must be in"):
        matched_uninstructed(dense, p0 + 1, SHAPE)


def test_uninstructed_keeps_the_classifier_and_counts_changed_convs() -> None:
    dense = build_model("small_resnet").eval()
    pruned = uninstructed(dense, SHAPE, 0.5, round_to=8)
    assert pruned(torch.zeros(SHAPE)).shape == (1, 10)  # Linear outputs (the classes) kept
    decisions = changed_convs(dense, {"half": pruned}, SHAPE)
    convs = {n: m for n, m in pruned.named_modules() if isinstance(m, torch.nn.Conv2d)}
    dense_convs = {n: m for n, m in dense.named_modules() if isinstance(m, torch.nn.Conv2d)}
    changed = {
        n
        for n in convs
        if (convs[n].in_channels, convs[n].out_channels)
        != (dense_convs[n].in_channels, dense_convs[n].out_channels)
    }
    assert {d.layer for d in decisions} == changed and changed
    for d in decisions:
        assert d.model == "half"
        assert d.pruned["in_channels"] <= d.dense["in_channels"]
        assert d.pruned["out_channels"] <= d.dense["out_channels"]


def test_time_rounds_pairs_rounds_and_sees_a_much_smaller_model_faster() -> None:
    dense = build_model("small_resnet").eval()
    small = uninstructed(dense, SHAPE, 0.75)  # ~1/16 of the MACs
    ev = EvaluatorConfig(warmup=1, number=1, repeat=3, min_repeat_ms=5.0)
    t = time_rounds("cpu_torch", {"dense": dense, "small": small}, SHAPE, rounds=3, evaluator=ev)
    assert list(t) == ["dense", "small"] and all(len(v) == 3 for v in t.values())
    ratios = sorted(d / s for d, s in zip(t["dense"], t["small"], strict=True))
    assert ratios[1] > 1.0  # the median round: the pruned model is faster

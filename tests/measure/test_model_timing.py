"""Whole-network timing on a target (hwprune.measure.model_timing), for real on this CPU."""

from __future__ import annotations

import pytest
import torch

from hwprune.measure import Backend, Target, can_time_models, load_target, time_models
from hwprune.measure.model_timing import ModelTiming
from hwprune.models import build_model

SHAPE = (1, 1, 28, 28)


def test_time_models_uses_the_target_settings_and_leaves_models_alone() -> None:
    dense = build_model("small_resnet").train()
    first_param = next(dense.parameters())
    threads = torch.get_num_threads()
    (t,) = time_models("cpu_torch", [dense], SHAPE, rounds=3)
    assert t.median_ms > 0 and len(t.rounds_ms) == 3 and t.iqr_ms >= 0
    assert dense.training and next(dense.parameters()) is first_param  # timed on a private copy
    assert torch.get_num_threads() == threads  # the target's 1 thread was given back


def test_a_much_smaller_network_times_faster() -> None:
    # A ratio on one machine, not an absolute time: holds on any CPU, loaded or not.
    from hwprune.models.factory import SmallResNet

    big, small = build_model("small_resnet"), SmallResNet(widths=(8, 8, 8), in_channels=1)
    t_big, t_small = time_models("cpu_torch", [big, small], SHAPE, rounds=3)
    assert t_small.median_ms < t_big.median_ms
    speedup, _ = t_small.speedup_over(t_big)
    assert speedup > 1.0


def test_speedup_over_pairs_rounds() -> None:
    a = ModelTiming(2.0, 0.0, (2.0, 4.0, 2.0))
    b = ModelTiming(1.0, 0.0, (1.0, 2.0, 1.0))
    assert b.speedup_over(a) == (2.0, 0.0)  # a slow round slows both; the paired ratio ignores it


def test_time_models_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"`rounds` must be an int >= 1, got 0"):
        time_models("cpu_torch", [build_model("small_resnet")], SHAPE, rounds=0)
    with pytest.raises(ValueError, match="`models` must hold at least one network"):
        time_models("cpu_torch", [], SHAPE)


BOARD = Target(name="board", backend="tvm", options={"rpc": {"host": "127.0.0.1", "port": 9, "key": "b"}})


def test_a_local_tvm_target_times_whole_models() -> None:
    from hwprune.models.factory import SmallResNet

    big, small = build_model("small_resnet"), SmallResNet(widths=(8, 8, 8), in_channels=1)
    t_big, t_small = time_models("cpu_tvm_llvm_untuned", [big, small], SHAPE, rounds=2)
    assert 0 < t_small.median_ms < t_big.median_ms  # built and run through Relax with default schedules


def test_backends_without_whole_model_timing_say_so() -> None:
    assert can_time_models("cpu_torch") and can_time_models("cpu_tvm_llvm_untuned")
    assert not can_time_models(BOARD)  # a board behind TVM RPC: single layers only, for now
    with pytest.raises(NotImplementedError, match="reached over TVM RPC"):
        Backend.create("tvm", BOARD).model_runner(build_model("small_resnet"), SHAPE)
    assert can_time_models("cuda_cudnn_tf32") == torch.cuda.is_available()
    with pytest.raises(NotImplementedError, match="times single conv layers only"):
        Backend.create("imported", load_target("cpu_torch")).model_runner(build_model("small_resnet"), SHAPE)

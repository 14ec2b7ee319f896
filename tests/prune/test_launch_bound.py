"""Launch-bound detection: a calibrated floor or overhead that is most of the dense model's time is named."""

from __future__ import annotations

import copy
import logging

import pytest

from hwprune.models import build_model
from hwprune.verify.calibration import calibrate_on_target, launch_bound_warning


def test_a_dispatch_floor_over_half_the_model_warns_with_the_numbers(predictor: object) -> None:
    p = copy.deepcopy(predictor)
    p.floor_ms_, p.overhead_ms_ = 4.42, 0.1  # the H200's eager ResNet-50 b32 (DESIGN.md)
    msg = launch_bound_warning(p, "cuda_cudnn_tf32", 5.25)
    assert "target cuda_cudnn_tf32 (runtime eager) is launch-bound" in msg
    assert "dispatch floor is 4.42 ms of the dense model's measured 5.25 ms (84%)" in msg
    assert "`runtime: cuda_graph or inductor`" in msg  # the launch-free runtimes of its backend
    assert "inductor" in launch_bound_warning(p, "cpu_torch", 5.25)
    # In a launch-free runtime the floor is no dispatch: it is what pruning to the channel floor leaves.
    free = launch_bound_warning(p, "cpu_torch_inductor", 5.25)
    assert "(runtime inductor, launch-free) is floor-bound: the calibrated floor is 4.42 ms" in free
    assert "launch-bound" not in free and "`min_channel_ratio`" in free
    assert "floor-bound" in launch_bound_warning(p, "cuda_cudnn_fp16_cl_graph", 5.25)
    p.floor_ms_, p.overhead_ms_ = 0.0, 2.0
    assert launch_bound_warning(p, "cuda_cudnn_tf32", 5.25) == ""  # 38%: not launch-bound
    assert "fixed overhead is 3 ms of the dense model's measured 5 ms (60%)" in launch_bound_warning(
        _with(p, 0.0, 3.0), "cuda_cudnn_tf32", 5.0
    )


def _with(p: object, floor: float, overhead: float) -> object:
    q = copy.deepcopy(p)
    q.floor_ms_, q.overhead_ms_ = floor, overhead  # type: ignore[attr-defined]
    return q


def test_calibration_on_this_cpu_logs_no_launch_bound_warning_for_small_resnet(
    predictor: object, caplog: pytest.LogCaptureFixture
) -> None:
    """small_resnet at batch 1 on 1 thread is compute-bound (floor 0 / overhead << dense): no false alarm."""
    caplog.set_level(logging.WARNING, logger="hwprune.verify.calibration")
    p = copy.deepcopy(predictor)
    pairs = calibrate_on_target(p, "cpu_torch", build_model("small_resnet"), (1, 1, 28, 28), rounds=3)
    assert pairs[0][1] > 0
    assert "launch-bound" not in caplog.text

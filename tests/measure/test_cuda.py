"""cuDNN backend on a real CUDA GPU (runs on the lent GPU only; skipped elsewhere)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hwprune.measure import EvaluatorConfig, Target, measure, read_table

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("dtype", ["float32", "float16", "tf32"])
def test_cudnn_events(tmp_path: Path, make_conv, dtype: str) -> None:
    tgt = Target(name=f"cuda_{dtype}", backend="cudnn", dtype=dtype, options={"benchmark": True})
    space = [make_conv(64, 64, hw=56), make_conv(64, 256, hw=56)]
    ev = EvaluatorConfig(warmup=3, number=1, repeat=5, min_repeat_ms=2.0)
    s = measure(tgt, space, tmp_path / "c.csv", evaluator=ev, progress=False)
    df = read_table(tmp_path / "c.csv")
    assert s.measured == 2
    assert (df["latency_ms"] > 0).all() and (df["latency_spread_ms"] >= 0).all()
    assert df["settings"].str.contains('"cudnn_benchmark": true').all()
    assert '"cudnn": "' in df["versions"].iloc[0]
    assert df["latency_ms"].iloc[1] > 0.8 * df["latency_ms"].iloc[0]  # 4x the MACs is not faster


def test_whole_model_timing_hands_back_the_cudnn_flags() -> None:
    """The closed loop times inside a training run: the target's TF32/benchmark must not leak into it."""
    from hwprune.measure import time_models
    from hwprune.models import build_model

    torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32 = True, False
    (t,) = time_models("cuda_cudnn_tf32", [build_model("small_resnet")], (2, 1, 28, 28), rounds=1)
    assert t.median_ms > 0
    assert torch.backends.cudnn.benchmark is True and torch.backends.cudnn.allow_tf32 is False

"""ACL backend through the PyArmNN worker on ArmNN's CpuRef backend.

This exercises the plumbing (system python3 worker, INetwork with one Convolution2d, Optimize, LoadNetwork,
EnqueueWorkload timing, JSON protocol, error rows), not ACL: CpuRef is ArmNN's reference C++ code, and
ACL's GpuAcc/CpuAcc exist only on Arm boards.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hwprune.measure import EvaluatorConfig, Target, measure, read_table
from hwprune.measure.backends.acl_backend import armnn_available

pytestmark = [
    pytest.mark.armnn,
    pytest.mark.skipif(not armnn_available(), reason="python3-pyarmnn is not importable by /usr/bin/python3"),
]


def test_cpuref_worker_times_convs_and_records_errors(
    tmp_path: Path, make_conv, fast_eval: EvaluatorConfig
) -> None:
    tgt = Target(name="armnn_cpuref", backend="acl", options={"compute": ["CpuRef"]})
    space = [
        make_conv(4, 4, hw=8),
        make_conv(4, 16, hw=8),
        make_conv(8, 8, hw=8, g=8),
        make_conv(8, 8, hw=8, g=2),
    ]
    s = measure(tgt, space, tmp_path / "acl.csv", evaluator=fast_eval, progress=False)
    assert (s.measured, s.failed) == (3, 1)  # grouped (non-depthwise) convs are not supported by the worker
    df = read_table(tmp_path / "acl.csv")
    assert (df["latency_ms"] > 0).all() and (df["latency_spread_ms"] >= 0).all()
    assert df["device"].iloc[0].startswith("ArmNN 22") and " on " in df["device"].iloc[0]
    assert '"armnn": "' in df["versions"].iloc[0]
    err = read_table(tmp_path / "acl.csv", keep_errors=True)["error"].iloc[3]
    assert "`groups` must be 1 or in = out = groups" in err


def test_unavailable_compute_is_recorded(tmp_path: Path, make_conv, fast_eval: EvaluatorConfig) -> None:
    tgt = Target(name="armnn_gpu", backend="acl", options={"compute": ["GpuAcc"]})
    s = measure(tgt, [make_conv()], tmp_path / "g.csv", evaluator=fast_eval, progress=False)
    assert s.failed == 1
    assert "GpuAcc" in read_table(tmp_path / "g.csv", keep_errors=True)["error"].iloc[0]


def test_records_the_backend_armnn_assigned_not_the_one_requested(
    tmp_path: Path, make_conv, fast_eval: EvaluatorConfig
) -> None:
    """Issue 12, item 14: asking for [GpuAcc, CpuRef] where only CpuRef exists records CpuRef."""
    import json

    tgt = Target(name="armnn_pref", backend="acl", options={"compute": ["GpuAcc", "CpuRef"]})
    s = measure(tgt, [make_conv(4, 4, hw=8)], tmp_path / "p.csv", evaluator=fast_eval, progress=False)
    assert s.measured == 1
    settings = json.loads(read_table(tmp_path / "p.csv")["settings"].iloc[0])
    assert settings["compute"] == ["CpuRef"] and settings["requested"] == ["GpuAcc", "CpuRef"]

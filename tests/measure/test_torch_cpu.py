"""torch-cpu timing (ratio and sanity checks only: this box is shared), measure() plumbing, errors as data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwprune.measure import Backend, EvaluatorConfig, Target, measure, read_table
from hwprune.measure.evaluator import time_callable


@pytest.fixture
def cpu_target() -> Target:
    return Target(name="cpu_test", backend="torch_cpu", options={"threads": 1})


def test_bigger_conv_is_not_faster(cpu_target: Target, make_conv) -> None:
    ev = EvaluatorConfig(warmup=2, number=1, repeat=7, min_repeat_ms=10.0)
    small_cfg, big_cfg = make_conv(64, 64, hw=28), make_conv(64, 64, hw=56)  # 4x the MACs
    small, big = [], []
    with Backend.create("torch_cpu", cpu_target, ev) as b:
        for _ in range(3):  # interleaved, so a burst of load on this shared box hits both
            small.append(b.measure_one(small_cfg))
            big.append(b.measure_one(big_cfg))
    for r in small + big:
        assert r.error is None
        assert r.latency_ms > 0 and r.spread_ms >= 0
        assert r.settings["threads"] == 1
    # Loose: 4x the work must not come out faster (best of 3 of each, 10% slack for noise).
    assert min(r.latency_ms for r in big) > 0.9 * min(r.latency_ms for r in small)


def test_evaluator_counts_runs() -> None:
    calls = []
    t = time_callable(lambda: calls.append(1), EvaluatorConfig(warmup=2, number=3, repeat=4, min_repeat_ms=0))
    assert t.repeats == 4 and t.number == 3
    assert len(calls) == 2 + 1 + 4 * 3  # warmup + calibration + repeat * number, as the docstring says
    assert t.median_ms > 0 and t.iqr_ms >= 0


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"repeat": 2}, "`repeat` must be >= 3"),
        ({"number": 0}, "`number` must be >= 1"),
        ({"warmup": -1}, "`warmup` must be >= 0"),
        ({"min_repeat_ms": -1.0}, "`min_repeat_ms` must be >= 0"),
    ],
)
def test_evaluator_validation(kwargs: dict, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        EvaluatorConfig(**kwargs)


def test_measure_writes_skips_and_records_errors(
    tmp_path: Path, cpu_target: Target, make_conv, fast_eval: EvaluatorConfig
) -> None:
    space = [make_conv(8, c) for c in (4, 8, 12)] + [make_conv(8, 6, g=4)]  # groups 4 does not divide 6
    out = tmp_path / "t.csv"
    s1 = measure(cpu_target, space, out, evaluator=fast_eval, progress=False)
    assert (s1.measured, s1.failed, s1.skipped) == (3, 1, 0)
    df = read_table(out)
    assert df["out_channels"].tolist() == [4, 8, 12]
    assert (df["latency_ms"] > 0).all() and (df["latency_spread_ms"] >= 0).all()
    assert set(df["device"]) == {df["device"].iloc[0]} and df["device"].iloc[0]
    errs = read_table(out, keep_errors=True)
    assert "`groups` must divide" in errs["error"].iloc[3]
    s2 = measure(cpu_target, space, out, evaluator=fast_eval, progress=False)
    assert (s2.measured, s2.failed, s2.skipped) == (0, 0, 4)
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["target"] == "cpu_test" and side["cpu"]["model"]
    assert side["runs"][0]["measured"] == 3


def test_batch_override_and_dedup(tmp_path: Path, make_conv, fast_eval: EvaluatorConfig) -> None:
    tgt = Target(name="b4", backend="torch_cpu", batch=4, options={"threads": 1})
    space = [{**make_conv(4, 4), "layer": "a"}, {**make_conv(4, 4), "layer": "b"}]
    s = measure(tgt, space, tmp_path / "b.csv", evaluator=fast_eval, progress=False)
    df = read_table(tmp_path / "b.csv")
    assert s.measured == 1 and df["batch"].tolist() == [4] and df["layer"].tolist() == ["a;b"]


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match="Unknown backend: nope"):
        Backend.create("nope")


def test_imported_backend_records_error(tmp_path: Path, make_conv, fast_eval: EvaluatorConfig) -> None:
    s = measure(
        Target(name="imp", backend="imported"),
        [make_conv()],
        tmp_path / "i.csv",
        evaluator=fast_eval,
        progress=False,
    )
    assert s.failed == 1
    assert "import_table" in read_table(tmp_path / "i.csv", keep_errors=True)["error"].iloc[0]


def test_shuffled_order_measures_everything_once(tmp_path: Path, cpu_target: Target, make_conv) -> None:
    space = [make_conv(4, c, hw=4) for c in range(1, 13)]
    ev = EvaluatorConfig(warmup=0, number=1, repeat=3, min_repeat_ms=0.0)
    s = measure(cpu_target, space, tmp_path / "s.csv", evaluator=ev, progress=False, shuffle_seed=0)
    order = read_table(tmp_path / "s.csv")["out_channels"].tolist()
    assert s.measured == 12 and sorted(order) == list(range(1, 13))
    assert order != list(range(1, 13))  # timed out of sweep order


def test_device_name_comes_from_the_hardware_and_a_mismatch_warns(
    tmp_path: Path, make_conv, fast_eval: EvaluatorConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 12, item 14: the config's `device` is what was expected; the table records the hardware."""
    import json
    import logging

    from hwprune.measure.device_info import cpu_model

    tgt = Target(
        name="expects_a_board", backend="torch_cpu", device="NVIDIA Jetson Nano", options={"threads": 1}
    )
    with caplog.at_level(logging.WARNING, logger="hwprune"):
        measure(tgt, [make_conv()], tmp_path / "d.csv", evaluator=fast_eval, progress=False)
    assert read_table(tmp_path / "d.csv")["device"].iloc[0] == cpu_model()
    assert any(
        "expects device 'NVIDIA Jetson Nano', but the hardware reports" in r.getMessage()
        for r in caplog.records
    )
    assert json.loads((tmp_path / "d.json").read_text())["runs"][-1]["device"] == cpu_model()

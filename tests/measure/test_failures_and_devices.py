"""Failures say why, and a table keeps one device (issue 18, items 4 and 5), on the real torch-CPU harness.

A backend that fails every configuration (as ACL did with "None of the preferred backends [CpuAcc ] are
supported") and a second machine are stood in for by patching the CPU backend's ``run`` and
``hardware_name``: a real second CPU or a broken board cannot be summoned in a test.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from hwprune.cli import main
from hwprune.measure import EvaluatorConfig, Target, measure
from hwprune.measure.backends.torch_backend import TorchCPUBackend

FAST = EvaluatorConfig(warmup=1, number=1, repeat=3, min_repeat_ms=1.0)
CPU = Target(name="cpu_torch", backend="torch_cpu", options={"threads": 1})
ACL_ERROR = (
    "ERROR: None of the preferred backends [CpuAcc ] are supported. Current platform provides [CpuRef ]"
)
SPACE = [
    dict(
        batch=1,
        in_channels=8,
        out_channels=c,
        height=8,
        width=8,
        kernel_size=3,
        stride=1,
        padding=1,
        groups=1,
    )
    for c in (4, 8, 12)
]


def _broken(monkeypatch: pytest.MonkeyPatch) -> None:
    def run(self, config):  # noqa: ANN001, ANN202
        raise RuntimeError(ACL_ERROR)

    monkeypatch.setattr(TorchCPUBackend, "run", run)


def test_a_sweep_where_every_config_fails_exits_1_and_prints_the_first_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _broken(monkeypatch)
    out = tmp_path / "t.csv"
    rc = main(["measure", "--target", "cpu_torch", "--layers", "stem", "--limit", "3", "--out", str(out)])
    assert rc == 1
    err = capsys.readouterr().err
    assert "every one of the 3 configs failed on target cpu_torch" in err and ACL_ERROR in err
    summary = measure(CPU, SPACE, tmp_path / "lib.csv", evaluator=FAST, progress=False)
    assert (summary.measured, summary.failed) == (0, 3) and ACL_ERROR in (summary.first_error or "")


def test_failed_configs_are_not_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "t.csv"
    with monkeypatch.context() as m:
        _broken(m)
        measure(CPU, SPACE, out, evaluator=FAST, progress=False)
    # A plain rerun says they failed and how to time them again ...
    with caplog.at_level(logging.WARNING, logger="hwprune.measure.sweep"):
        again = measure(CPU, SPACE, out, evaluator=FAST, progress=False)
    assert (again.measured, again.skipped, again.skipped_failed) == (0, 3, 3)
    assert "3 configs recorded an error" in caplog.text and "--retry-errors" in caplog.text
    assert ACL_ERROR in caplog.text
    # ... and retrying times them; once timed they count as done, not failed.
    fixed = measure(CPU, SPACE, out, evaluator=FAST, progress=False, retry_errors=True)
    assert (fixed.measured, fixed.failed) == (3, 0)
    assert measure(CPU, SPACE, out, evaluator=FAST, progress=False).skipped_failed == 0


def test_the_training_path_reports_the_backend_error_and_retries_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Hydra path (a PredictorFactory) used to say "`table` must have at least 2 rows to fit", and
    every rerun failed the same way because the failed rows counted as cached."""
    from hwprune.callbacks.predictor_factory import ensure_predictor
    from hwprune.models.factory import SmallResNet

    model, shape = SmallResNet(widths=(8, 8, 8), in_channels=1), (1, 1, 8, 8)
    with monkeypatch.context() as m:
        _broken(m)
        with pytest.raises(
            RuntimeError, match=r"no configuration of SmallResNet's layer space could be timed"
        ):
            ensure_predictor(
                "cpu_torch", model, shape, tmp_path, calibrate=False, evaluator=FAST, progress=False
            )
        with pytest.raises(
            RuntimeError, match=r"the backend said: RuntimeError: ERROR: None of the preferred"
        ):
            ensure_predictor(
                "cpu_torch", model, shape, tmp_path, calibrate=False, evaluator=FAST, progress=False
            )
    pred = ensure_predictor(
        "cpu_torch", model, shape, tmp_path, calibrate=False, evaluator=FAST, progress=False
    )
    assert pred.n_train_rows_ >= 2  # the backend works again: the failed configs were timed, not skipped


def test_appending_from_another_device_is_refused_and_the_sidecar_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "t.csv"
    monkeypatch.setattr(TorchCPUBackend, "hardware_name", lambda self: "Intel(R) Xeon(R) Platinum 8375C")
    measure(CPU, SPACE[:2], out, evaluator=FAST, progress=False)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    rows_before = out.read_text()
    monkeypatch.setattr(TorchCPUBackend, "hardware_name", lambda self: "AMD EPYC 7B13")
    with pytest.raises(
        ValueError, match=r"`out_path` .* must hold one device's rows of target 'cpu_torch'.*Xeon"
    ):
        measure(CPU, SPACE, out, evaluator=FAST, progress=False)
    assert out.read_text() == rows_before  # nothing appended
    assert json.loads(out.with_suffix(".json").read_text()) == sidecar  # nor the sidecar rewritten
    rc = main(["measure", "--target", "cpu_torch", "--layers", "stem", "--limit", "1", "--out", str(out)])
    assert rc == 2  # the CLI's error exit, with the message above
    # Opted in: appended, and the sidecar still records the machine that measured the table first.
    summary = measure(CPU, SPACE, out, evaluator=FAST, progress=False, allow_mixed_devices=True)
    assert summary.measured == 1
    after = json.loads(out.with_suffix(".json").read_text())
    assert {k: v for k, v in after.items() if k != "runs"} == {
        k: v for k, v in sidecar.items() if k != "runs"
    }
    assert after["runs"][-1]["device"] == "AMD EPYC 7B13" and "inventory" in after["runs"][-1]

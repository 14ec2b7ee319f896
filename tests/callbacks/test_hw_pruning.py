"""HardwareAwarePruning in real Lightning runs (tiny random data, the real CPU predictor)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hwprune.callbacks import HardwareAwarePruning, load_pruned
from hwprune.models.factory import build_model
from hwprune.module import ClassificationModule
from hwprune.prune import conv_widths, predicted_latency
from hwprune.verify.sides import warn_on_mismatch

SHAPE = (1, 1, 28, 28)
SCRIPT = Path(__file__).with_name("train_script.py")
REPO = Path(__file__).resolve().parents[2]


def _data(seed: int, n: int = 64) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    return DataLoader(
        TensorDataset(torch.randn(n, *SHAPE[1:], generator=g), torch.randint(0, 10, (n,), generator=g)),
        batch_size=16,
    )


def _module() -> ClassificationModule:
    return ClassificationModule(
        build_model("small_resnet"),
        partial(torch.optim.SGD, lr=0.05, momentum=0.9),
        partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.9),
    )


def _trainer(tmp_path: Path, callbacks: list[Callback], epochs: int = 3) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )


class _Probe(Callback):
    """Record conv weights right after the prune and at the end of that epoch, and the optimizer."""

    def __init__(self) -> None:
        self.after_prune: dict[str, torch.Tensor] = {}
        self.end: dict[str, torch.Tensor] = {}
        self.momentum_shapes_ok = False

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == 1:
            self.after_prune = {n: p.detach().clone() for n, p in pl_module.model.named_parameters()}
            opt = trainer.optimizers[0]
            states = [opt.state[p] for p in pl_module.parameters() if p in opt.state]
            self.momentum_shapes_ok = bool(states) and all(
                s["momentum_buffer"].shape == p.shape
                for p, s in ((p, opt.state[p]) for p in pl_module.parameters() if p in opt.state)
            )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == 1:
            self.end = {n: p.detach().clone() for n, p in pl_module.model.named_parameters()}


def test_prunes_during_fit_keeps_training_and_reports(tmp_path: Path, predictor: object) -> None:
    pl.seed_everything(0)
    module = _module()
    dense = predicted_latency(predictor, module.model, SHAPE)  # type: ignore[arg-type]
    probe = _Probe()
    cb = HardwareAwarePruning(
        predictor,
        SHAPE,
        latency_ratio=0.6,
        start_epoch=1,
        num_steps=2,  # type: ignore[arg-type]
        report_dir=tmp_path / "report",
        verify=False,  # open loop: this test is about the pruning mechanics; the closed loop has its own
    )
    _trainer(tmp_path, [probe, cb]).fit(module, _data(0), _data(1))
    after = predicted_latency(predictor, module.model, SHAPE)  # type: ignore[arg-type]
    assert after <= 0.6 * dense + 1e-9
    assert [s.outcome for s in cb.steps] == ["pruned", "pruned"]
    assert all(s.latency_after_ms <= s.latency_before_ms for s in cb.steps)
    # The pruned layers keep training: weights move after the prune, and momentum was carried over.
    assert probe.momentum_shapes_ok
    pruned_convs = [n for n in probe.after_prune if n.endswith("conv1.weight")]
    assert pruned_convs and any(not torch.equal(probe.after_prune[n], probe.end[n]) for n in pruned_convs)
    report = json.loads((tmp_path / "report" / "pruning_report.json").read_text())
    assert report["predicted_ms"]["after"] < report["predicted_ms"]["before"]
    assert report["measured_ms"]["note"] == "verify=False" and report["accuracy"]["after"] is not None
    assert (tmp_path / "report" / "pruning_report.md").read_text().startswith("# hwprune pruning report")
    # Export: the torch.export program and the replayable bundle both rebuild the pruned model.
    x = torch.randn(*SHAPE)  # the export is traced at the target's batch
    module.model.eval()
    ref = module.model(x)
    rebuilt = load_pruned(tmp_path / "report" / "pruned.pt", build_model("small_resnet")).eval()
    assert conv_widths(rebuilt) == conv_widths(module.model)
    torch.testing.assert_close(rebuilt(x), ref)
    torch.testing.assert_close(load_pruned(tmp_path / "report" / "pruned.pt2")(x), ref)


def test_closed_loop_times_each_step_on_the_target(tmp_path: Path, predictor: object) -> None:
    """verify=True on a CPU target: every step is timed before it is applied; never a slower step."""
    pl.seed_everything(0)
    module = _module()
    calibration_before = list(getattr(predictor, "calibration_", []))
    cb = HardwareAwarePruning(
        predictor,
        SHAPE,
        latency_ratio=0.6,
        start_epoch=1,
        num_steps=1,  # type: ignore[arg-type]
        report_dir=tmp_path / "report",
        export=None,
    )
    _trainer(tmp_path, [cb]).fit(module, _data(0), _data(1))
    (step,) = cb.steps
    assert step.closed_loop, "the step was not timed on the target"
    assert step.measured_before_ms is not None and step.measured_before_ms > 0
    # One step to 60% of the predicted latency cuts about half the conv work: the setup implies a pruned,
    # faster step (timed in interleaved rounds, so a loaded machine slows both models alike).
    assert step.outcome == "pruned", step.closed_loop_note
    assert step.measured_after_ms is not None and step.measured_after_ms < step.measured_before_ms
    assert cb.predictor is not predictor  # the callback learns on its own copy ...
    assert list(getattr(predictor, "calibration_", [])) == calibration_before  # ... the user's is untouched
    assert len(cb.predictor.calibration_) >= 2  # type: ignore[union-attr]
    report = json.loads((tmp_path / "report" / "pruning_report.json").read_text())
    assert report["measured_ms"]["before_ms"] > 0 and report["measured_ms"]["after_ms"] > 0
    assert "cpu_torch" in report["measured_ms"]["note"] and "threads=1" in report["measured_ms"]["note"]
    # Timed on the target, a ratio budget is judged on the measured share of dense (same rounds), as the
    # closed loop judges a step.
    within = report["measured_ms"]["share"] <= 0.6 * 1.05
    assert report["budget"]["met"] is within and "of dense" in report["budget"]["summary"]


class _Collapse(Callback):
    """Log a monitored score that collapses once the model is pruned, so the rollback must fire."""

    def __init__(self, dense_params: int) -> None:
        self.dense_params = dense_params

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pruned = sum(p.numel() for p in pl_module.model.parameters()) < self.dense_params
        pl_module.log("probe/score", 0.2 if pruned else 0.9)


@pytest.mark.parametrize("rollback", ["stop", "shrink"])
def test_rollback_restores_last_good_architecture(tmp_path: Path, predictor: object, rollback: str) -> None:
    pl.seed_everything(0)
    module = _module()
    dense_widths = conv_widths(module.model)
    cb = HardwareAwarePruning(
        predictor,
        SHAPE,
        latency_ratio=0.5,
        start_epoch=1,
        num_steps=2,  # type: ignore[arg-type]
        monitor="probe/score",
        max_accuracy_drop=0.05,
        rollback=rollback,  # type: ignore[arg-type]
        verify=False,
        export=None,
        report_dir=tmp_path,
    )
    dense_params = sum(p.numel() for p in module.model.parameters())
    _trainer(tmp_path, [_Collapse(dense_params), cb], epochs=3).fit(module, _data(0), _data(1))
    assert cb.baseline == pytest.approx(0.9)
    assert cb.steps[0].outcome == "rolled back"
    if rollback == "stop":
        assert cb.stopped and len(cb.steps) == 1 and cb.history == []
        assert conv_widths(module.model) == dense_widths
    else:
        # Every pruned step collapses the score: each is rolled back and the step halves, so the model
        # ends dense with a smaller step queued.
        assert all(s.outcome == "rolled back" for s in cb.steps) and len(cb.steps) == 2
        assert cb.step_fraction == pytest.approx(0.125)
        assert conv_widths(module.model) == dense_widths
    module.model(torch.zeros(1, *SHAPE[1:]))


def test_resume_after_kill_restores_architecture_and_schedule(tmp_path: Path, predictor: object) -> None:
    pred_path = tmp_path / "pred.skops"
    predictor.save(pred_path)  # type: ignore[attr-defined]
    out = tmp_path / "run"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(pred_path), str(out), "--hang-at-epoch", "3"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 180
        while not (out / "hung").exists():
            assert proc.poll() is None, "training process died before reaching epoch 3"
            assert time.time() < deadline, "training did not reach epoch 3 in time"
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    ckpt = out / "ckpt" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert len(state["hwprune_architecture"]["history"]) == 2  # killed after 2 of 3 steps
    saved_shapes = {k: v.shape for k, v in state["state_dict"].items()}
    res = subprocess.run(
        [sys.executable, str(SCRIPT), str(pred_path), str(out), "--resume", str(ckpt)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads((out / "result_rank0.json").read_text())
    assert result["steps_attempted"] == 3 and result["history_len"] == 3
    assert result["epochs"] == [1, 2, 3]  # the schedule went on where it stopped
    fresh = build_model("small_resnet")
    # The architecture was rebuilt from the checkpoint before training went on...
    assert result["start_widths"] == {n: saved_shapes[f"model.{n}.weight"][0] for n in result["start_widths"]}
    assert result["start_widths"] != conv_widths(fresh)
    # ...and the third step pruned it further.
    assert all(result["widths"][n] <= saved_shapes[f"model.{n}.weight"][0] for n in result["widths"])
    assert all(
        result["widths"][n] <= m.out_channels for n, m in fresh.named_modules() if isinstance(m, nn.Conv2d)
    )


@pytest.mark.parametrize("package", ["pytorch_lightning", "lightning.pytorch"])
def test_ddp_ranks_hold_identical_architectures(tmp_path: Path, predictor: object, package: str) -> None:
    """2-process DDP under each Lightning package (with lightning.pytorch: a module written the docs' way)."""
    pred_path = tmp_path / "pred.skops"
    predictor.save(pred_path)  # type: ignore[attr-defined]
    out = tmp_path / "ddp"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            str(pred_path),
            str(out),
            "--ddp",
            "--max-epochs",
            "3",
            "--num-steps",
            "2",
            "--package",
            package,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    r0 = json.loads((out / "result_rank0.json").read_text())
    r1 = json.loads((out / "result_rank1.json").read_text())
    assert r0["world"] == r1["world"] == 2
    assert r0["package"] == r1["package"] == package
    # Logged through the Trainer's package's rank-zero utilities: once, not once per rank.
    assert res.stderr.count("prune step 0 (epoch 1)") == 1, res.stderr[-3000:]
    assert r0["widths"] == r1["widths"] and r0["history_len"] == r1["history_len"] == 2
    # Identical after every step, not only at the end: one architecture per epoch, the same on both ranks.
    assert len(r0["widths_per_epoch"]) == len(r1["widths_per_epoch"]) == 3
    assert r0["widths_per_epoch"] == r1["widths_per_epoch"]
    assert r0["widths_per_epoch"][0] == conv_widths(build_model("small_resnet"))  # epoch 0: dense baseline
    distinct = {json.dumps(w, sort_keys=True) for w in r0["widths_per_epoch"]}
    assert len(distinct) == 3  # dense, then one new architecture after each of the 2 prune steps
    assert r0["widths"] != conv_widths(build_model("small_resnet"))
    assert r0["weights_sum"] == pytest.approx(r1["weights_sum"], rel=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one of `latency_ratio` and `latency_ms`"),
        ({"latency_ratio": 0.5, "latency_ms": 1.0}, "exactly one of `latency_ratio` and `latency_ms`"),
        ({"latency_ratio": 1.5}, r"`latency_ratio` must be a fraction in \(0, 1\), got 1.5"),
        ({"latency_ms": -2.0}, r"`latency_ms` must be a latency in ms \(> 0\)"),
        ({"latency_ratio": 0.5, "start_epoch": -1}, "`start_epoch` must be an int >= 0"),
        ({"latency_ratio": 0.5, "prune_every_n_epochs": 0}, "`prune_every_n_epochs` must be an int >= 1"),
        ({"latency_ratio": 0.5, "num_steps": 0}, "`num_steps` must be an int >= 1"),
        ({"latency_ratio": 0.5, "importance": "l3"}, "`importance` must be any of"),
        ({"latency_ratio": 0.5, "snap": "left"}, "`snap` must be any of"),
        ({"latency_ratio": 0.5, "mode": "best"}, "`mode` must be any of"),
        ({"latency_ratio": 0.5, "monitor": ""}, "`monitor` must be a non-empty metric name"),
        ({"latency_ratio": 0.5, "max_accuracy_drop": -0.1}, "`max_accuracy_drop` must be a number >= 0"),
        ({"latency_ratio": 0.5, "rollback": "undo", "max_accuracy_drop": 0.1}, "`rollback` must be any of"),
        ({"latency_ratio": 0.5, "rollback": "stop"}, "needs `max_accuracy_drop`"),
        (
            {"latency_ratio": 0.5, "ignored_layers": "fc"},
            "`ignored_layers` must be a sequence of module names",
        ),
        (
            {"latency_ratio": 0.5, "min_channel_ratio": 0.0},
            r"`min_channel_ratio` must be a fraction in \(0, 1\]",
        ),
        ({"latency_ratio": 0.5, "export": "tflite"}, "`export` must be any of"),
    ],
)
def test_arguments_are_validated(kwargs: dict, match: str, predictor: object) -> None:
    with pytest.raises(ValueError, match=match):
        HardwareAwarePruning(predictor, SHAPE, **kwargs)  # type: ignore[arg-type]


def test_predictor_and_shape_are_validated(tmp_path: Path, predictor: object) -> None:
    with pytest.raises(FileNotFoundError, match="`predictor` path .* does not exist"):
        HardwareAwarePruning(str(tmp_path / "missing.skops"), SHAPE, latency_ratio=0.5)
    with pytest.raises(ValueError, match="`predictor` must be a fitted predictor"):
        HardwareAwarePruning(42, SHAPE, latency_ratio=0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`input_shape` must be 4 positive ints"):
        HardwareAwarePruning(predictor, (1, 28, 28), latency_ratio=0.5)  # type: ignore[arg-type]


def test_warns_when_the_predictor_was_fitted_for_another_batch(predictor: object) -> None:
    with pytest.warns(UserWarning, match=r"fitted on batch \[1\], but this run plans for batch 4"):
        warn_on_mismatch(predictor, None, (4, 1, 28, 28))

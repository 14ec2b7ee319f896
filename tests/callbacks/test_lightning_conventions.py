"""Lightning's conventions (issue 12, items 1-5): both packages, finding the network, a strict monitor, a
schedule that fits in ``max_epochs``, and the input shape checked against the data; and (issue 13) resume
and rollback without touching the user's module's methods.

Modules here are written the way Lightning's docs write them: ``import lightning as L``, the network under
``self.net`` or the layers on the module itself, ``self.log("val_acc", ...)``.
"""

from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hwprune.callbacks import HardwareAwarePruning, UninstructedPruning
from hwprune.callbacks._lightning import package_of
from hwprune.callbacks._network import find_network
from hwprune.models.factory import build_model
from hwprune.prune import conv_widths

SHAPE = (1, 1, 28, 28)
PACKAGES = ["lightning.pytorch", "pytorch_lightning"]


def _data(seed: int, n: int = 32, hw: int = 28) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, hw, hw, generator=g)
    return DataLoader(TensorDataset(x, torch.randint(0, 10, (n,), generator=g)), batch_size=16)


class _Steps:
    """The training and validation steps of a Lightning-docs classifier (logs ``val_acc``)."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)  # type: ignore[operator]
        self.log("train_loss", loss)  # type: ignore[attr-defined]
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_acc", (self(x).argmax(1) == y).float().mean())  # type: ignore[attr-defined,operator]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)  # type: ignore[attr-defined]


def lit_net(L: ModuleType) -> Any:
    """The network under ``self.net``, as in Lightning's docs."""

    class LitClassifier(_Steps, L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = build_model("small_resnet")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

    return LitClassifier()


def lit_layers(L: ModuleType) -> Any:
    """The layers defined on the module itself."""

    class LitLayers(_Steps, L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
            self.bn1 = nn.BatchNorm2d(32)
            self.conv2 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
            self.bn2 = nn.BatchNorm2d(64)
            self.fc = nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = F.relu(self.bn1(self.conv1(x)))
            x = F.relu(self.bn2(self.conv2(x)))
            return self.fc(x.mean((2, 3)))

    return LitLayers()


def lit_teacher_student(L: ModuleType) -> Any:
    """Two complete networks: which one to prune is the user's call."""

    class LitDistill(_Steps, L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.teacher = build_model("small_resnet")
            self.student = build_model("small_resnet")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.student(x)

    return LitDistill()


def _trainer(L: ModuleType, tmp_path: Path, callbacks: list[Any], epochs: int = 2, **kw: Any) -> Any:
    args: dict[str, Any] = {
        "max_epochs": epochs,
        "accelerator": "cpu",
        "devices": 1,
        "callbacks": callbacks,
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "default_root_dir": tmp_path,
        "num_sanity_val_steps": 0,
    }
    return L.Trainer(**{**args, **kw})


def _cb(predictor: object, tmp_path: Path, **kw: Any) -> HardwareAwarePruning:
    args: dict[str, Any] = {
        "latency_ratio": 0.6,
        "start_epoch": 1,
        "num_steps": 1,
        "monitor": "val_acc",
        "verify": False,
        "export": None,
        "report_dir": tmp_path / "report",
    }
    return HardwareAwarePruning(predictor, SHAPE, **{**args, **kw})  # type: ignore[arg-type]


# ------------------------------------------------------------------ item 1: both packages
@pytest.mark.parametrize("package", PACKAGES)
def test_readme_snippet_runs_under_each_package(tmp_path: Path, predictor: object, package: str) -> None:
    """The README's snippet with a docs-style module: no model_attr, ``val_acc`` monitored."""
    L = importlib.import_module(package)
    L.seed_everything(0)
    module = lit_net(L)
    dense = conv_widths(module.net)
    cb = _cb(predictor, tmp_path, max_accuracy_drop=1.0, rollback="stop")
    trainer = _trainer(L, tmp_path, [cb])
    trainer.fit(module, _data(0), _data(1))
    assert package_of(trainer).name == package
    assert cb._attr == "net" and [s.outcome for s in cb.steps] == ["pruned"]
    assert sum(conv_widths(module.net).values()) < sum(dense.values())
    assert cb.last_score is not None and cb.baseline is not None  # the accuracy guard saw val_acc
    report = json.loads((tmp_path / "report" / "pruning_report.json").read_text())
    assert report["budget"]["met"] is True and report["budget"]["summary"].startswith("budget met")
    md = (tmp_path / "report" / "pruning_report.md").read_text()
    assert "**budget met: predicted" in md


def test_uninstructed_runs_under_lightning(tmp_path: Path) -> None:
    L = importlib.import_module("lightning.pytorch")
    module = lit_layers(L)
    cb = UninstructedPruning(SHAPE, pruning_ratio=0.5, epoch=1, round_to=8)
    _trainer(L, tmp_path, [cb], limit_val_batches=0).fit(module, _data(0))
    assert cb.done and module.conv1.out_channels == 16 and module.conv2.out_channels == 32


# ------------------------------------------------------------------ item 2: finding the network
def test_layers_on_the_module_itself_prune_and_roll_back(tmp_path: Path, predictor: object) -> None:
    """No child holds the network: the module itself is pruned, and a rollback restores it."""
    L = importlib.import_module("lightning.pytorch")
    L.seed_everything(0)
    module = lit_layers(L)

    class Collapse(L.Callback):
        def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            pruned = (pl_module.conv1.out_channels, pl_module.conv2.out_channels) != (32, 64)
            pl_module.log("probe", 0.2 if pruned else 0.9)

    cb = _cb(predictor, tmp_path, monitor="probe", max_accuracy_drop=0.05, rollback="stop", latency_ratio=0.5)
    _trainer(L, tmp_path, [Collapse(), cb], epochs=3).fit(module, _data(0), _data(1))
    assert cb._attr == ""
    assert cb.steps[0].outcome == "rolled back" and cb.stopped
    assert (module.conv1.out_channels, module.conv2.out_channels) == (32, 64)  # dense again
    assert module.fc.in_features == 64 and module(torch.zeros(2, *SHAPE[1:])).shape == (2, 10)


@pytest.mark.parametrize(
    ("make", "model_attr", "match"),
    [
        (
            lit_net,
            "model",
            r"`model_attr` must name the nn.Module attribute of LitClassifier .* got 'model'; "
            r"candidates: 'net'",
        ),
        (
            lit_teacher_student,
            None,
            r"`model_attr` must be set: LitDistill .*candidates: 'teacher', 'student'",
        ),
        (lit_layers, "fc", r"`model_attr` must name a network with Conv2d layers to prune, got 'fc'"),
    ],
)
def test_network_errors_name_model_attr(make: Any, model_attr: str | None, match: str) -> None:
    module = make(importlib.import_module("lightning.pytorch"))
    with pytest.raises(ValueError, match=match):
        find_network(module, model_attr)


def test_network_error_surfaces_in_fit(tmp_path: Path, predictor: object) -> None:
    L = importlib.import_module("lightning.pytorch")
    cb = _cb(predictor, tmp_path, model_attr="model")
    with pytest.raises(ValueError, match=r"`model_attr` must name .*got 'model'; candidates: 'net'"):
        _trainer(L, tmp_path, [cb]).fit(lit_net(L), _data(0), _data(1))


def test_network_without_forward_is_ambiguous() -> None:
    class NoForward(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU())
            self.head = nn.Linear(8, 2)

    assert find_network(NoForward(), "backbone")[0] == "backbone"
    with pytest.raises(
        ValueError, match=r"`model_attr` must be set: .*no forward\(\) to trace; candidates: "
    ):
        find_network(NoForward(), None)


# ------------------------------------------------------------------ item 3: the monitored metric
def test_unlogged_monitor_raises_with_logged_keys(tmp_path: Path, predictor: object) -> None:
    L = importlib.import_module("lightning.pytorch")
    cb = _cb(predictor, tmp_path, monitor="val/acc", max_accuracy_drop=0.01, rollback="stop")
    with pytest.raises(
        RuntimeError,
        match=r"`monitor` must be a metric the module logs, got 'val/acc'; "
        r"logged metrics: \[.*'val_acc'.*\]",
    ):
        _trainer(L, tmp_path, [cb]).fit(lit_net(L), _data(0), _data(1))


def test_unlogged_monitor_warns_when_not_strict(
    tmp_path: Path, predictor: object, caplog: pytest.LogCaptureFixture
) -> None:
    L = importlib.import_module("lightning.pytorch")
    cb = _cb(predictor, tmp_path, monitor="val/acc", strict=False)
    with caplog.at_level(logging.WARNING, logger="hwprune"):
        _trainer(L, tmp_path, [cb]).fit(lit_net(L), _data(0), _data(1))
    warned = [r.getMessage() for r in caplog.records if "`monitor` must be a metric" in r.getMessage()]
    assert len(warned) == 1 and "strict=False" in warned[0]
    assert cb.last_score is None and [s.outcome for s in cb.steps] == ["pruned"]


# ------------------------------------------------------------------ item 4: a schedule that cannot finish
def test_schedule_past_max_epochs_raises_with_numbers(tmp_path: Path, predictor: object) -> None:
    L = importlib.import_module("lightning.pytorch")
    cb = _cb(predictor, tmp_path, num_steps=3, start_epoch=1)
    with pytest.raises(
        ValueError,
        match=r"`max_epochs` must be >= 4 for the pruning schedule .*epochs \[1, 2, 3\]"
        r"\), got 3: 1 of 3 step\(s\) would never run",
    ):
        _trainer(L, tmp_path, [cb], epochs=3).fit(lit_net(L), _data(0), _data(1))


def test_schedule_warn_runs_and_reports_budget_not_met(
    tmp_path: Path, predictor: object, caplog: pytest.LogCaptureFixture
) -> None:
    L = importlib.import_module("lightning.pytorch")
    L.seed_everything(0)
    cb = _cb(predictor, tmp_path, num_steps=3, start_epoch=1, latency_ratio=0.4, schedule_check="warn")
    with caplog.at_level(logging.INFO, logger="hwprune"):
        _trainer(L, tmp_path, [cb], epochs=2).fit(lit_net(L), _data(0), _data(1))
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("hwprune")]
    assert any("`max_epochs` must be >= 4" in m for m in messages)
    assert len(cb.steps) == 1
    report = json.loads((tmp_path / "report" / "pruning_report.json").read_text())
    assert report["budget"]["met"] is False
    assert "budget NOT met" in (tmp_path / "report" / "pruning_report.md").read_text()
    assert messages[-1].startswith("hwprune: budget NOT met: predicted")  # the final log line


# ------------------------------------------------------------------ item 5: the input shape
def test_input_shape_is_checked_on_the_first_batch(
    tmp_path: Path, predictor: object, caplog: pytest.LogCaptureFixture
) -> None:
    L = importlib.import_module("lightning.pytorch")
    cb = HardwareAwarePruning(
        predictor,  # type: ignore[arg-type]
        (1, 1, 32, 32),
        latency_ratio=0.6,
        num_steps=1,
        monitor="val_acc",
        coverage_check="warn",  # the predictor never measured 32x32 (refused in setup otherwise)
    )
    with pytest.raises(
        ValueError,
        match=r"`input_shape` must match the data's C, H, W: the plan is for "
        r"\(1, 32, 32\) .* first training batch is \(1, 28, 28\)",
    ):
        _trainer(L, tmp_path, [cb]).fit(lit_net(L), _data(0), _data(1))
    cb = _cb(predictor, tmp_path, shape_check="warn", start_epoch=0)
    with caplog.at_level(logging.WARNING, logger="hwprune"):
        _trainer(L, tmp_path, [cb], epochs=1, limit_val_batches=0).fit(lit_net(L), _data(0, hw=24))
    assert any("first training batch is (1, 24, 24)" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"strict": "yes"}, "`strict` must be a bool, got 'yes'"),
        ({"schedule_check": "ignore"}, r"`schedule_check` must be any of \('raise', 'warn'\), got 'ignore'"),
        ({"shape_check": None}, r"`shape_check` must be any of \('raise', 'warn'\), got None"),
        ({"model_attr": 3}, r"`model_attr` must be an attribute name, '' or None, got 3"),
    ],
)
def test_new_arguments_are_validated(kwargs: dict[str, Any], match: str, predictor: object) -> None:
    with pytest.raises(ValueError, match=match):
        HardwareAwarePruning(predictor, SHAPE, latency_ratio=0.5, **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------ issue 13: rollback and resume
def _widths(net: nn.Module) -> dict[str, int]:
    return {n: m.out_channels for n, m in net.named_modules() if isinstance(m, nn.Conv2d)}


def test_module_itself_rolls_back_to_a_pruned_step(tmp_path: Path, predictor: object) -> None:
    """``model_attr=""``: a rollback to a pruned (not dense) step swaps the layers of that step back in."""
    L = importlib.import_module("lightning.pytorch")
    L.seed_everything(0)
    module = lit_layers(L)
    cb = _cb(
        predictor,
        tmp_path,
        model_attr="",
        monitor="probe",
        max_accuracy_drop=0.05,
        rollback="stop",
        latency_ratio=0.5,
        num_steps=2,
    )

    class Collapse(L.Callback):
        """The score collapses once the second step is applied; the first step is good."""

        def __init__(self) -> None:
            self.after_first: dict[str, int] = {}

        def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            if len(cb.history) == 1 and not self.after_first:
                self.after_first = _widths(pl_module)
            pl_module.log("probe", 0.2 if len(cb.history) >= 2 else 0.9)

    probe = Collapse()
    _trainer(L, tmp_path, [probe, cb], epochs=3).fit(module, _data(0), _data(1))
    assert [s.outcome for s in cb.steps] == ["pruned", "rolled back"] and cb.stopped
    assert len(cb.history) == 1
    assert _widths(module) == probe.after_first != {"conv1": 32, "conv2": 64}
    assert cb.good_state is not None
    for k, v in module.state_dict().items():  # the weights committed after the first step, in its shapes
        torch.testing.assert_close(v.cpu(), cb.good_state[k])
    assert module(torch.zeros(2, *SHAPE[1:])).shape == (2, 10)


def test_uninstructed_resumes_the_pruned_architecture(tmp_path: Path) -> None:
    L = importlib.import_module("lightning.pytorch")
    L.seed_everything(0)
    ckpt = tmp_path / "ckpt"

    class AtStart(L.Callback):
        """The weights training goes on from (after any restore)."""

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            self.state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

    def run(module: Any, epochs: int, **fit: Any) -> tuple[UninstructedPruning, AtStart]:
        cb, start = UninstructedPruning(SHAPE, pruning_ratio=0.5, epoch=1, round_to=8), AtStart()
        saver = L.callbacks.ModelCheckpoint(dirpath=ckpt, save_last=True)
        trainer = _trainer(L, tmp_path, [start, cb, saver], epochs=epochs, enable_checkpointing=True)
        trainer.fit(module, _data(0), **fit)
        return cb, start

    run(lit_layers(L), 2)
    saved = torch.load(ckpt / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert saved["conv1.weight"].shape[0] == 16 and saved["conv2.weight"].shape[0] == 32
    resumed = lit_layers(L)
    cb, start = run(resumed, 3, ckpt_path=ckpt / "last.ckpt")
    assert cb.done and cb.history
    for k, v in saved.items():  # the checkpoint's pruned weights loaded into the rebuilt architecture
        torch.testing.assert_close(start.state[k], v)
    assert (resumed.conv1.out_channels, resumed.conv2.out_channels) == (16, 32)  # not pruned a second time
    assert (resumed.fc.in_features, resumed.fc.out_features) == (32, 10)


def test_two_callbacks_resume_their_own_networks(tmp_path: Path, predictor: object) -> None:
    """Two callbacks on one module (teacher and student), each restoring its own history on resume."""
    L = importlib.import_module("lightning.pytorch")
    L.seed_everything(0)
    ckpt = tmp_path / "ckpt"
    dense = _widths(build_model("small_resnet"))

    def run(module: Any, epochs: int, **fit: Any) -> tuple[HardwareAwarePruning, HardwareAwarePruning]:
        teacher = _cb(predictor, tmp_path, model_attr="teacher", latency_ratio=0.7, report_dir=tmp_path / "t")
        student = _cb(predictor, tmp_path, model_attr="student", latency_ratio=0.4, report_dir=tmp_path / "s")
        saver = L.callbacks.ModelCheckpoint(dirpath=ckpt, save_last=True)
        callbacks = [teacher, student, saver]
        _trainer(L, tmp_path, callbacks, epochs=epochs, enable_checkpointing=True).fit(
            module, _data(0), **fit
        )
        return teacher, student

    first = lit_teacher_student(L)
    run(first, 2)
    pruned = {"teacher": _widths(first.teacher), "student": _widths(first.student)}
    assert dense != pruned["teacher"] != pruned["student"] != dense
    resumed = lit_teacher_student(L)
    # max_epochs as before: Lightning restores the checkpoint, then finds nothing left to train.
    teacher, student = run(resumed, 2, ckpt_path=ckpt / "last.ckpt")
    assert {"teacher": _widths(resumed.teacher), "student": _widths(resumed.student)} == pruned
    assert len(teacher.history) == len(student.history) == 1 and len(teacher.steps) == 1
    assert type(resumed).on_load_checkpoint is L.LightningModule.on_load_checkpoint
    assert "on_load_checkpoint" not in vars(resumed)  # the user's module is not patched
    assert not resumed._load_state_dict_pre_hooks  # the restore hooks are gone after the fit


def test_restore_hook_names_a_lightning_that_hides_the_checkpoint() -> None:
    """The workaround's one private read fails loudly, and its handle takes the hook away again."""
    from hwprune.callbacks._trainer import restore_before_weights

    class NoConnector:
        """A Trainer of a Lightning version without ``_checkpoint_connector``."""

    trainer, net, calls = NoConnector(), nn.Conv2d(1, 2, 1), []
    handle = restore_before_weights(trainer, net, lambda module, ckpt: calls.append(ckpt))  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match=r"cannot read the checkpoint being restored .*_loaded_checkpoint"):
        net.load_state_dict(net.state_dict())
    handle.remove()
    net.load_state_dict(net.state_dict())
    assert calls == []

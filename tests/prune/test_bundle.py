"""`hwprune prune --out` writes the bundle that `load_pruned` reads back (one writer for CLI and callback)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from hwprune.cli import main
from hwprune.models.factory import build_model
from hwprune.prune import conv_widths, predicted_latency
from hwprune.prune.bundle import BUNDLE_FORMAT, export_model, load_pruned, write_bundle


def test_cli_bundle_loads_back(tmp_path: Path, predictor: object, capsys: pytest.CaptureFixture[str]) -> None:
    pred = tmp_path / "p.skops"
    predictor.save(pred)  # type: ignore[attr-defined]
    out = tmp_path / "pruned.pt"
    args = ["prune", "--predictor", str(pred), "--model", "small_resnet", "--input", "1,1,28,28"]
    assert main([*args, "--latency-ratio", "0.6", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    dense_sum, pruned_sum = (int(x) for x in re.search(r"\((\d+) -> (\d+) conv channels\)", printed).groups())
    bundle = torch.load(out, map_location="cpu", weights_only=True)
    assert bundle["format"] == BUNDLE_FORMAT and bundle["input_shape"] == [1, 1, 28, 28]
    assert bundle["model_spec"]["_target_"] == "hwprune.models.build_model"
    # Without a model, the bundle's Hydra spec builds the dense one; the history and weights then load.
    rebuilt = load_pruned(out)
    assert sum(conv_widths(rebuilt).values()) == pruned_sum < dense_sum
    for k, v in rebuilt.state_dict().items():
        torch.testing.assert_close(v, bundle["state_dict"][k])
    dense = build_model("small_resnet")
    assert predicted_latency(predictor, rebuilt, (1, 1, 28, 28)) < predicted_latency(
        predictor, dense, (1, 1, 28, 28)
    )  # type: ignore[arg-type]
    # With a dense model given, the same architecture.
    assert conv_widths(load_pruned(out, dense)) == conv_widths(rebuilt)


def test_bundle_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"`path` .*missing\.pt does not exist"):
        load_pruned(tmp_path / "missing.pt")
    other = tmp_path / "other.pt"
    torch.save({"format": "something-else"}, other)
    with pytest.raises(ValueError, match=r"is not a hwprune pruned-model bundle \(hwprune-pruned/1\)"):
        load_pruned(other)
    plain = tmp_path / "plain.pt"
    write_bundle(plain, build_model("small_resnet"), (1, 1, 28, 28), [])
    with pytest.raises(ValueError, match="`model` is required: the bundle holds no `model_spec`"):
        load_pruned(plain)
    bad_fmt = r"`fmt` must be any of \('torch_export', 'aoti', 'onnx'\), got .tflite."
    with pytest.raises(ValueError, match=bad_fmt):
        export_model(build_model("small_resnet"), (1, 1, 28, 28), tmp_path, "tflite")  # type: ignore[arg-type]


def test_a_hydra_model_spec_is_stored_as_plain_data(tmp_path: Path) -> None:
    """A nested Hydra spec (DictConfig, ListConfig) loads with ``weights_only=True`` and builds the model."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    conv = {"_target_": "torch.nn.Conv2d", "in_channels": 1, "out_channels": 4, "kernel_size": 3}
    spec = OmegaConf.create({"_target_": "torch.nn.Sequential", "_args_": [conv]})
    model = instantiate(spec)
    path = write_bundle(tmp_path / "b.pt", model, (1, 1, 8, 8), [], model_spec=spec)
    assert torch.load(path, weights_only=True)["model_spec"] == {
        "_target_": "torch.nn.Sequential",
        "_args_": [conv],
    }
    torch.testing.assert_close(load_pruned(path)[0].weight, model[0].weight)


def _pruned_small_resnet() -> torch.nn.Module:
    from hwprune.verify.calibration import calibration_variants

    (m,) = calibration_variants(build_model("small_resnet"), (1, 1, 28, 28), ratios=(0.5,))
    return m.eval()


def test_a_torch_export_program_runs_in_eval_mode_at_any_batch(tmp_path: Path) -> None:
    """Issue 18: `load_pruned("pruned.pt2")` raised on `.eval()` and accepted batch 1 only."""
    from hwprune.prune.bundle import check_export

    model = _pruned_small_resnet()
    path = export_model(model, (1, 1, 28, 28), tmp_path, "torch_export")
    assert path is not None and path.name == "pruned.pt2"
    prog = load_pruned(path).eval()  # no NotImplementedError
    assert prog(torch.randn(5, 1, 28, 28)).shape == (5, 10)
    chk = check_export(path, model, (1, 1, 28, 28), rounds=1)
    assert chk.ok and chk.batches == (1, 4), chk
    assert chk.max_rel_err < 1e-4 and chk.artifact_ms > 0 and chk.module_ms > 0


@pytest.mark.slow
def test_an_aoti_package_for_the_inductor_runtime_loads_and_matches(tmp_path: Path) -> None:
    from hwprune.prune.bundle import check_export

    model = _pruned_small_resnet()
    path = export_model(model, (2, 1, 28, 28), tmp_path, "aoti")
    assert path is not None and path.name == "pruned_aoti.pt2"
    chk = check_export(path, model, (2, 1, 28, 28), rounds=1)
    assert chk.ok, chk
    assert load_pruned(path).eval()(torch.randn(3, 1, 28, 28)).shape == (3, 10)


def test_an_onnx_export_with_a_dynamic_batch_matches(tmp_path: Path) -> None:
    pytest.importorskip("onnx", reason="the `export` extra (onnx, onnxruntime) is not installed")
    pytest.importorskip("onnxruntime", reason="the `export` extra (onnx, onnxruntime) is not installed")
    from hwprune.prune.bundle import check_export

    model = _pruned_small_resnet()
    path = export_model(model, (1, 1, 28, 28), tmp_path, "onnx")
    assert path is not None and path.suffix == ".onnx"
    chk = check_export(path, model, (1, 1, 28, 28), rounds=1)
    assert chk.ok, chk


def test_a_broken_artifact_is_a_failed_check_not_an_exception(tmp_path: Path) -> None:
    from hwprune.prune.bundle import check_export, load_artifact

    bad = tmp_path / "pruned.pt2"
    bad.write_bytes(b"not a program")
    chk = check_export(bad, _pruned_small_resnet(), (1, 1, 28, 28))
    assert not chk.ok and chk.error and chk.max_rel_err is None
    with pytest.raises(ValueError, match=r"`path` must end in .pt2, _aoti.pt2 or .onnx, got 'x.tflite'"):
        load_artifact(tmp_path / "x.tflite")

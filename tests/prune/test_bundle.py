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
    with pytest.raises(ValueError, match=r"`fmt` must be any of \('torch_export', 'onnx'\), got 'tflite'"):
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

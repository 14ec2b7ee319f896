"""Every factory model builds, adapts to 1- and 3-channel small inputs, and runs a forward pass."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hwprune.contract import conv_layer_configs
from hwprune.models import MODEL_NAMES, SmallResNet, build_model


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize(("in_channels", "size"), [(1, 28), (3, 32)])
def test_every_model_builds_and_runs(name: str, in_channels: int, size: int) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=7, in_channels=in_channels, input_size=size).eval()
    with torch.no_grad():
        out = model(torch.randn(2, in_channels, size, size))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == in_channels


def test_small_inputs_keep_spatial_resolution() -> None:
    # The stride-1 stem must keep 28x28 from collapsing to 1x1 before the last stage.
    convs = conv_layer_configs(build_model("resnet18", input_size=28), (1, 1, 28, 28))
    assert convs[0].config["stride"] == 1
    assert min(c.config["height"] for c in convs) >= 4


def test_large_inputs_keep_the_published_stem() -> None:
    convs = conv_layer_configs(build_model("resnet18", in_channels=3, input_size=224), (1, 3, 224, 224))
    assert (convs[0].config["kernel_size"], convs[0].config["stride"]) == (7, 2)
    assert convs[0].config["height"] == 224
    assert len(convs) == 20  # 17 3x3/7x7 convs + 3 downsample 1x1 convs


def test_default_model_has_residual_blocks() -> None:
    model = SmallResNet()
    projections = [m for m in model.modules() if isinstance(m, nn.Sequential) and len(m) == 2]
    assert len(projections) == 3  # one 1x1 projection shortcut per stage: coupled channels to prune


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "resnet9000"}, r"`name` must be one of .*got 'resnet9000'"),
        ({"num_classes": 1}, r"`num_classes` must be an int >= 2, got 1"),
        ({"in_channels": 4}, r"`in_channels` must be 1 or 3, got 4"),
        ({"input_size": 4}, r"`input_size` must be an int >= 8, got 4"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_model(**kwargs)

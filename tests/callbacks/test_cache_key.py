"""The cached table's key tells architectures apart (issue 19, item 6)."""

from __future__ import annotations

from pathlib import Path

from hwprune.callbacks.predictor_factory import cache_table_path, layer_space_digest
from hwprune.measure import load_target
from hwprune.models import build_model

SHAPE = (32, 3, 224, 224)


def test_resnet18_and_resnet50_do_not_share_a_table(tmp_path: Path) -> None:
    """Both are torchvision ``ResNet``: keyed by class name alone they shared ``resnet_224_b32.csv``."""
    target = load_target("cpu_torch")
    r18 = build_model("resnet18", num_classes=1000, in_channels=3, input_size=224)
    r50 = build_model("resnet50", num_classes=1000, in_channels=3, input_size=224)
    assert type(r18) is type(r50)
    a, b = cache_table_path(target, r18, SHAPE, tmp_path), cache_table_path(target, r50, SHAPE, tmp_path)
    assert a != b and a.parent == b.parent
    assert a.name.startswith("resnet_224_b32_") and a.name.endswith(
        f"_{layer_space_digest(r18, (1, 3, 224, 224))}.csv"
    )
    again = build_model("resnet18", num_classes=1000, in_channels=3, input_size=224)
    assert cache_table_path(target, again, SHAPE, tmp_path) == a  # same architecture, same table


def test_digest_follows_the_conv_layer_space() -> None:
    shape = (1, 1, 28, 28)
    dense = build_model("small_resnet")
    assert layer_space_digest(dense, shape) == layer_space_digest(build_model("small_resnet"), shape)
    assert layer_space_digest(dense, shape) != layer_space_digest(dense, (1, 1, 32, 32))
    vgg11, vgg16 = build_model("vgg11_bn"), build_model("vgg16")  # one class (torchvision VGG), two depths
    assert type(vgg11) is type(vgg16)
    assert layer_space_digest(vgg11, shape) != layer_space_digest(vgg16, shape)

"""Build classifiers for small 1- or 3-channel inputs.

torchvision's ImageNet models downsample by 32 before the classifier, which leaves a 28x28 Fashion-MNIST
image at 1x1 after the stem. :func:`build_model` therefore swaps each model's stem for a stride-1 3x3 conv
(no max-pool) when ``input_size < 64``, sets the input channels, and replaces the classifier for
``num_classes``. At ``input_size >= 64`` the original stem is kept (stride and all), so the layer shapes
match the published network at 224x224: this is what the measurement harness sweeps.

No weights are downloaded: every model starts from its random init (``weights=None``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torchvision
from torch import nn

log = logging.getLogger(__name__)

__all__ = ["MODEL_NAMES", "SmallResNet", "build_model"]


class _BasicBlock(nn.Module):
    """Two 3x3 convs with BatchNorm and an identity or 1x1 projection shortcut."""

    def __init__(self, in_c: int, out_c: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_c, out_c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_c)
        self.conv2 = nn.Conv2d(out_c, out_c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_c)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_c != out_c:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_c, out_c, 1, stride, bias=False), nn.BatchNorm2d(out_c)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """The default model: a small residual CNN that fine-tunes in minutes on 2 CPU cores.

    Three stages of :class:`_BasicBlock` (the residual adds couple the channels of each stage, so pruning
    must go through a dependency graph), global average pooling and a linear classifier.

    Args:
        in_channels: Image channels (1 for Fashion-MNIST, 3 for CIFAR-10).
        num_classes: Number of output classes.
        widths: Channels of the three stages.
        blocks: Residual blocks per stage.
        strides: Stride of each stage's first block. The default runs the stages at 14x14, 7x7 and 4x4 for
            a 28x28 input: most of the accuracy at a quarter of the cost of a full-resolution first stage.

    Example:
        >>> m = SmallResNet(1, 10)
        >>> m(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        widths: tuple[int, int, int] = (32, 64, 128),
        blocks: tuple[int, int, int] = (1, 1, 1),
        strides: tuple[int, int, int] = (2, 2, 2),
    ) -> None:
        super().__init__()
        c0 = widths[0]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c0, 3, 1, 1, bias=False), nn.BatchNorm2d(c0), nn.ReLU(inplace=True)
        )
        layers: list[nn.Module] = []
        prev = c0
        for w, n, s in zip(widths, blocks, strides, strict=True):
            for j in range(n):
                layers.append(_BasicBlock(prev, w, stride=s if j == 0 else 1))
                prev = w
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def _conv_like(old: nn.Conv2d, in_channels: int, small: bool) -> nn.Conv2d:
    if small:
        return nn.Conv2d(in_channels, old.out_channels, 3, 1, 1, bias=old.bias is not None)
    return nn.Conv2d(
        in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=old.bias is not None
    )


def _resnet(fn: Callable[..., nn.Module]) -> Callable[[int, int, bool], nn.Module]:
    def build(in_channels: int, num_classes: int, small: bool) -> nn.Module:
        m = fn(weights=None, num_classes=num_classes)
        m.conv1 = _conv_like(m.conv1, in_channels, small)
        if small:
            m.maxpool = nn.Identity()
        return m

    return build


def _vgg(fn: Callable[..., nn.Module]) -> Callable[[int, int, bool], nn.Module]:
    def build(in_channels: int, num_classes: int, small: bool) -> nn.Module:
        return _vgg_adapt(fn(weights=None, num_classes=num_classes), in_channels, num_classes, small)

    return build


def _vgg_adapt(m: nn.Module, in_channels: int, num_classes: int, small: bool) -> nn.Module:
    m.features[0] = _conv_like(m.features[0], in_channels, small=False)
    if small:
        # Four 2x2 pools instead of five keep a 28x28 input at 1x1+; a small head replaces the 4096-wide one.
        feats = list(m.features)
        last_pool = max(i for i, layer in enumerate(feats) if isinstance(layer, nn.MaxPool2d))
        m.features = nn.Sequential(*feats[:last_pool])
        m.avgpool = nn.AdaptiveAvgPool2d(1)
        m.classifier = nn.Sequential(nn.Dropout(0.3), nn.Linear(512, num_classes))
    return m


def _mobilenet_v2(in_channels: int, num_classes: int, small: bool) -> nn.Module:
    m = torchvision.models.mobilenet_v2(weights=None, num_classes=num_classes)
    first = m.features[0][0]
    m.features[0][0] = nn.Conv2d(in_channels, first.out_channels, 3, 1 if small else 2, 1, bias=False)
    return m


def _mobilenet_v3_small(in_channels: int, num_classes: int, small: bool) -> nn.Module:
    m = torchvision.models.mobilenet_v3_small(weights=None, num_classes=num_classes)
    first = m.features[0][0]
    m.features[0][0] = nn.Conv2d(in_channels, first.out_channels, 3, 1 if small else 2, 1, bias=False)
    return m


def _efficientnet_b0(in_channels: int, num_classes: int, small: bool) -> nn.Module:
    m = torchvision.models.efficientnet_b0(weights=None, num_classes=num_classes)
    first = m.features[0][0]
    m.features[0][0] = nn.Conv2d(in_channels, first.out_channels, 3, 1 if small else 2, 1, bias=False)
    return m


def _regnet_x_400mf(in_channels: int, num_classes: int, small: bool) -> nn.Module:
    m = torchvision.models.regnet_x_400mf(weights=None, num_classes=num_classes)
    first = m.stem[0]
    m.stem[0] = nn.Conv2d(in_channels, first.out_channels, 3, 1 if small else 2, 1, bias=False)
    return m


def _shufflenet_v2_x0_5(in_channels: int, num_classes: int, small: bool) -> nn.Module:
    m = torchvision.models.shufflenet_v2_x0_5(weights=None, num_classes=num_classes)
    first = m.conv1[0]
    m.conv1[0] = nn.Conv2d(in_channels, first.out_channels, 3, 1 if small else 2, 1, bias=False)
    if small:
        m.maxpool = nn.Identity()
    return m


def _small_resnet(in_channels: int, num_classes: int, small: bool) -> nn.Module:
    return SmallResNet(in_channels, num_classes)


_FACTORIES: dict[str, Callable[[int, int, bool], nn.Module]] = {
    "small_resnet": _small_resnet,
    "resnet18": _resnet(torchvision.models.resnet18),
    "resnet50": _resnet(torchvision.models.resnet50),
    "vgg11_bn": _vgg(torchvision.models.vgg11_bn),
    "vgg16": _vgg(torchvision.models.vgg16),  # the seed paper's VGG-16 (no batch norm)
    "mobilenet_v2": _mobilenet_v2,
    "mobilenet_v3_small": _mobilenet_v3_small,
    "efficientnet_b0": _efficientnet_b0,
    "regnet_x_400mf": _regnet_x_400mf,
    "shufflenet_v2_x0_5": _shufflenet_v2_x0_5,
}

MODEL_NAMES: tuple[str, ...] = tuple(_FACTORIES)


def build_model(
    name: str = "small_resnet", num_classes: int = 10, in_channels: int = 1, input_size: int = 28
) -> nn.Module:
    """Build a classifier by name, adapted to the input.

    Args:
        name: One of :data:`MODEL_NAMES`.
        num_classes: Number of output classes (>= 2).
        in_channels: Image channels, 1 or 3.
        input_size: Side of the square input. Below 64 the stem is made stride-1 for small images;
            at 64 and above the published stem is kept, so layer shapes match the original network.

    Returns:
        An ``nn.Module`` in training mode with random weights.

    Raises:
        ValueError: If ``name`` is unknown, or ``num_classes``, ``in_channels`` or ``input_size`` is out
            of range.

    Example:
        >>> net = build_model("resnet18", num_classes=10, in_channels=1, input_size=28)
        >>> net(torch.zeros(1, 1, 28, 28)).shape
        torch.Size([1, 10])
    """
    if name not in _FACTORIES:
        raise ValueError(f"`name` must be one of {MODEL_NAMES}, got {name!r}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"`num_classes` must be an int >= 2, got {num_classes!r}")
    if in_channels not in (1, 3):
        raise ValueError(f"`in_channels` must be 1 or 3, got {in_channels!r}")
    if not isinstance(input_size, int) or input_size < 8:
        raise ValueError(f"`input_size` must be an int >= 8, got {input_size!r}")
    return _FACTORIES[name](in_channels, num_classes, input_size < 64)

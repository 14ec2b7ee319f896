"""Pruned architectures as plain data, rebuilt with torch + torchvision alone.

The benchmarks prune on this machine (hwprune, Torch-Pruning) and time the results elsewhere (the lent
GPU). Latency does not depend on the weights' values, so an architecture travels as its per-module shapes
(a few KB in ``zoo.json`` or a raw benchmark JSON), not as a state dict (47 MB for ResNet-18), and is
rebuilt there with fresh weights.

Example:
    >>> spec = arch_spec(torchvision.models.resnet18())  # doctest: +SKIP
    >>> model = rebuild("resnet18", spec)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torchvision
from torch import nn

__all__ = ["BASES", "arch_spec", "conv_from_spec", "fmnist_base", "rebuild"]

# Dense ImageNet models at 224x224, as hwprune.models.build_model(name, 1000, 3, 224) builds them (at
# input_size >= 64 that factory keeps torchvision's stems and module names).
BASES: dict[str, Callable[[], nn.Module]] = {
    "resnet18": lambda: torchvision.models.resnet18(weights=None, num_classes=1000),
    "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(weights=None, num_classes=1000),
}


def arch_spec(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Return the shapes of every Conv2d, BatchNorm2d and Linear, keyed by module name.

    Args:
        model: A (pruned) model.

    Returns:
        ``{name: {"type": ..., shape fields}}``, JSON-serialisable.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            out[name] = {
                "type": "conv",
                "in": m.in_channels,
                "out": m.out_channels,
                "k": list(m.kernel_size),
                "s": list(m.stride),
                "p": list(m.padding),
                "d": list(m.dilation),
                "g": m.groups,
                "bias": m.bias is not None,
            }
        elif isinstance(m, nn.BatchNorm2d):
            out[name] = {"type": "bn", "n": m.num_features}
        elif isinstance(m, nn.Linear):
            out[name] = {
                "type": "linear",
                "in": m.in_features,
                "out": m.out_features,
                "bias": m.bias is not None,
            }
    return out


def conv_from_spec(s: dict[str, Any]) -> nn.Conv2d:
    """A fresh ``nn.Conv2d`` of the shape an :func:`arch_spec` conv entry records."""
    return nn.Conv2d(
        s["in"], s["out"], tuple(s["k"]), tuple(s["s"]), tuple(s["p"]), tuple(s["d"]), s["g"], bias=s["bias"]
    )


def fmnist_base(raw: dict[str, Any]) -> Callable[[], nn.Module]:
    """Builder of the dense model of a ``bench_raw_fmnist*.json`` (hwprune's factory, 10 classes, 1x28x28)."""
    from hwprune.models import build_model

    name = raw.get("model", "small_resnet")
    return lambda: build_model(name, 10, 1, 28)


def rebuild(base: str | Callable[[], nn.Module], spec: dict[str, dict[str, Any]]) -> nn.Module:
    """Build ``BASES[base]`` and replace every module named in ``spec`` by a fresh one of that shape.

    Args:
        base: A key of :data:`BASES`, or a callable that builds the dense model (e.g. a
            ``functools.partial`` of ``hwprune.models.build_model`` for the Fashion-MNIST models).
        spec: Output of :func:`arch_spec` on a pruned model of that base.

    Returns:
        The model in eval mode, with freshly initialised weights.

    Raises:
        ValueError: If ``base`` is unknown or ``spec`` names a module the base lacks.
    """
    if callable(base):
        model = base()
    elif base in BASES:
        model = BASES[base]()
    else:
        raise ValueError(f"`base` must be any of {tuple(BASES)} or a builder, got {base!r}")
    names = dict(model.named_modules())
    for name, s in spec.items():
        if name not in names:
            raise ValueError(f"`spec` names {name!r}, which is not a module of {base}")
        if s["type"] == "conv":
            new: nn.Module = conv_from_spec(s)
        elif s["type"] == "bn":
            new = nn.BatchNorm2d(s["n"])
        else:
            new = nn.Linear(s["in"], s["out"], bias=s["bias"])
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, new)
    return model.eval()

"""Layer spaces: which conv2d configurations to time.

:func:`conv_layer_configs` is the single place that turns a model into per-layer configurations keyed by
the measurement table's column names. The planner uses it too, so a layer is described the same way when
it is measured and when it is predicted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["ConvLayer", "conv_layer_configs"]


@dataclass(frozen=True)
class ConvLayer:
    """One Conv2d of a model, as the measurement table describes it.

    Attributes:
        name: Qualified module name in the model (``model.get_submodule(name)``).
        config: Mapping keyed by table columns: batch, in_channels, out_channels, height, width
            (the layer's *input* size), kernel_size, stride, padding, groups.
    """

    name: str
    config: dict[str, int]


def conv_layer_configs(model: nn.Module, input_shape: tuple[int, ...]) -> list[ConvLayer]:
    """Describe every ``nn.Conv2d`` of ``model`` at a given input shape.

    Runs one forward pass on zeros in eval mode (no grad) with hooks that record each conv's input size.
    Convs that the forward pass never reaches are left out.

    Args:
        model: Any module.
        input_shape: Full input shape including batch, e.g. ``(1, 3, 224, 224)``.

    Returns:
        The convs in execution order.

    Raises:
        ValueError: If ``input_shape`` is not 4-D, a conv is not square/symmetric (unsupported by the
            table contract), or the model has no Conv2d.
    """
    if len(input_shape) != 4 or any(int(s) <= 0 for s in input_shape):
        raise ValueError(f"`input_shape` must be 4-D (batch, channels, height, width), got {tuple(input_shape)}")
    found: list[ConvLayer] = []
    names = {m: n for n, m in model.named_modules()}
    hooks = []

    def hook(mod: nn.Conv2d, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0]
        k, s, p = mod.kernel_size, mod.stride, mod.padding
        if isinstance(p, str) or k[0] != k[1] or s[0] != s[1] or p[0] != p[1] or mod.dilation != (1, 1):
            raise ValueError(
                f"conv `{names[mod]}` has kernel {k}, stride {s}, padding {p}, dilation {mod.dilation}: "
                "only square kernels, equal strides, symmetric int padding and dilation 1 are supported"
            )
        found.append(
            ConvLayer(
                names[mod],
                {
                    "batch": int(x.shape[0]),
                    "in_channels": int(mod.in_channels),
                    "out_channels": int(mod.out_channels),
                    "height": int(x.shape[2]),
                    "width": int(x.shape[3]),
                    "kernel_size": int(k[0]),
                    "stride": int(s[0]),
                    "padding": int(p[0]),
                    "groups": int(mod.groups),
                },
            )
        )

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_pre_hook(hook))
    if not hooks:
        raise ValueError(f"model {type(model).__name__} has no nn.Conv2d layer to prune or measure")
    was_training = model.training
    try:
        model.eval()
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        with torch.no_grad():
            model(torch.zeros(*input_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return found

"""The layer contract: how a conv2d layer is described, the same way when it is measured and predicted.

This module is the bottom of the data flow. The measuring stage writes these columns into its tables, the
predicting stage regresses on them, and the pruning stage describes a model's layers with them; so it
imports nothing from the package, and nothing heavier than the standard library at import time (torch is
imported inside :func:`conv_layer_configs`, which is handed a torch model anyway). That keeps
``hwprune.predict`` usable on a table without torch.

Example:
    >>> CONFIG_COLUMNS[:3]
    ('batch', 'in_channels', 'out_channels')
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

__all__ = ["CONFIG_COLUMNS", "ConvLayer", "check_input_shape", "conv_layer_configs"]

#: The layer-describing integer columns. ``height``/``width`` are the layer's *input* size.
CONFIG_COLUMNS: tuple[str, ...] = (
    "batch",
    "in_channels",
    "out_channels",
    "height",
    "width",
    "kernel_size",
    "stride",
    "padding",
    "groups",
)


@dataclass(frozen=True)
class ConvLayer:
    """One Conv2d of a model, as the measurement table describes it.

    Attributes:
        name: Qualified module name in the model (``model.get_submodule(name)``).
        config: Mapping keyed by :data:`CONFIG_COLUMNS`: batch, in_channels, out_channels, height, width
            (the layer's *input* size), kernel_size, stride, padding, groups.
    """

    name: str
    config: dict[str, int]


def check_input_shape(input_shape: Sequence[int]) -> tuple[int, int, int, int]:
    """Validate an (N, C, H, W) input shape and return it as a tuple of ints.

    Raises:
        ValueError: If it is not 4 positive ints (a float with a fraction, such as 64.5, is refused, not
            truncated).

    Example:
        >>> check_input_shape([1, 3, 32, 32])
        (1, 3, 32, 32)
    """
    try:
        # 64.5 is not a size: refuse it rather than truncate it to 64 (an int() alone would).
        shape = tuple(int(s) for s in input_shape if not isinstance(s, bool) and int(s) == s)
        if len(shape) != len(input_shape):
            shape = ()
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 4 or any(s <= 0 for s in shape):
        raise ValueError(
            f"`input_shape` must be 4 positive ints (batch, channels, height, width), got {input_shape!r}"
        )
    return shape  # type: ignore[return-value]


def conv_layer_configs(model: nn.Module, input_shape: tuple[int, ...]) -> list[ConvLayer]:
    """Describe every ``nn.Conv2d`` of ``model`` at a given input shape.

    Runs one forward pass on zeros in eval mode (no grad) with hooks that record each conv's input size.
    Convs that the forward pass never reaches are left out. Convs the table contract cannot describe
    (non-square kernels, unequal strides, string padding, dilation) and custom layers that hold their own
    parameters (anything outside ``torch.nn`` with weights, e.g. a hand-written conv) are skipped with one
    :class:`UserWarning` listing them: their latency is not predicted.

    Args:
        model: Any module.
        input_shape: Full input shape including batch, e.g. ``(1, 3, 224, 224)``.

    Returns:
        The convs in execution order.

    Raises:
        ValueError: If ``input_shape`` is not 4 positive ints or the model cannot run on it (wrong
            channel count, too small for its kernels), or the model has no Conv2d the contract describes.

    Example:
        >>> from torch import nn
        >>> [c.name for c in conv_layer_configs(nn.Sequential(nn.Conv2d(1, 4, 3)), (1, 1, 8, 8))]
        ['0']
    """
    import torch
    from torch import nn

    input_shape = check_input_shape(input_shape)
    found: list[ConvLayer] = []
    skipped: list[str] = []
    names = {m: n for n, m in model.named_modules()}
    hooks = []

    def hook(mod: nn.Conv2d, args: tuple[torch.Tensor, ...]) -> None:
        found.append(ConvLayer(names[mod], _describe(mod, args[0].shape)))

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            if _unsupported(m):
                skipped.append(
                    f"`{names[m]}` (kernel {m.kernel_size}, stride {m.stride}, padding {m.padding}, "
                    f"dilation {m.dilation})"
                )
            else:
                hooks.append(m.register_forward_pre_hook(hook))
        elif _is_custom_layer(m):
            skipped.append(f"`{names[m]}` ({type(m).__name__}: a custom layer with its own parameters)")
    if not hooks:
        raise ValueError(
            f"model {type(model).__name__} has no nn.Conv2d layer to prune or measure"
            + (f"; unsupported: {', '.join(skipped)}" if skipped else "")
            + ": hwprune prunes the channels of square, dilation-1 nn.Conv2d layers"
        )
    was_training = model.training
    try:
        model.eval()
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        with torch.no_grad():
            model(torch.zeros(*input_shape, device=device))
    except RuntimeError as err:
        first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        want = f" (its first conv takes {first.in_channels} channels)" if first is not None else ""
        raise ValueError(
            f"`input_shape` {input_shape} does not fit model {type(model).__name__}{want}: {err}; pass "
            "the (batch, channels, height, width) the model is trained on, e.g. the data config's "
            "`input_shape`"
        ) from err
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    if skipped:
        _warn_skipped(type(model).__name__, skipped)
    return found


def _unsupported(mod: nn.Conv2d) -> bool:
    """Whether the table contract cannot describe this conv (one int per kernel, stride and padding)."""
    k, s, p = mod.kernel_size, mod.stride, mod.padding
    return isinstance(p, str) or k[0] != k[1] or s[0] != s[1] or p[0] != p[1] or mod.dilation != (1, 1)


def _describe(mod: nn.Conv2d, x_shape: Sequence[int]) -> dict[str, int]:
    """The conv's config row for an input of shape ``x_shape`` (N, C, H, W)."""
    return {
        "batch": int(x_shape[0]),
        "in_channels": int(mod.in_channels),
        "out_channels": int(mod.out_channels),
        "height": int(x_shape[2]),
        "width": int(x_shape[3]),
        "kernel_size": int(mod.kernel_size[0]),
        "stride": int(mod.stride[0]),
        "padding": int(mod.padding[0]),
        "groups": int(mod.groups),
    }


_WARNED: set[str] = set()


def _warn_skipped(model_name: str, skipped: list[str]) -> None:
    msg = (
        f"{len(skipped)} layer(s) of {model_name} are skipped (their latency is not predicted "
        f"and not measured): {', '.join(skipped)}"
    )
    if msg not in _WARNED:  # the planner calls this at every step: log once, warn (filtered) each time
        _WARNED.add(msg)
        log.warning(msg)
    warnings.warn(msg, UserWarning, stacklevel=3)


def _is_custom_layer(m: nn.Module) -> bool:
    """A module outside ``torch.nn``/torchvision that owns parameters itself (not through children)."""
    mod = type(m).__module__
    if mod.startswith(("torch.", "torchvision.")) or not any(True for _ in m.parameters(recurse=False)):
        return False
    return any(p.dim() >= 2 for p in m.parameters(recurse=False))

"""Which part of a LightningModule is the network to prune.

Lightning's docs keep the network under any name (``self.model``, ``self.net``, ``self.backbone``, an
encoder/decoder pair) or define the layers on the module itself. :func:`find_network` takes an explicit
``model_attr`` when the user gives one, and otherwise picks the one child that holds every conv and every
trainable parameter, or the module itself when it defines ``forward``; anything else is ambiguous and
raises, naming ``model_attr`` and the candidates.

Example:
    >>> from torch import nn
    >>> class M(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    ...         self.loss = nn.CrossEntropyLoss()
    >>> find_network(M(), None)[0]
    'net'
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["copy_network", "find_network", "network_candidates", "rebuild_network", "set_network"]


def _has_conv(m: nn.Module) -> bool:
    return any(isinstance(x, nn.Conv2d) for x in m.modules())


def _param_ids(m: nn.Module) -> set[int]:
    return {id(p) for p in m.parameters() if p.requires_grad}


def _defines_forward(module: nn.Module) -> bool:
    """Whether ``forward`` is the user's own (not ``nn.Module``'s or a Lightning base class's)."""
    for cls in type(module).__mro__:
        if "forward" in vars(cls):
            return not cls.__module__.startswith(("torch.", "lightning.", "pytorch_lightning."))
    return False


def network_candidates(module: nn.Module) -> list[str]:
    """Return the names of the direct children of ``module`` that hold a ``Conv2d``.

    Args:
        module: Usually the LightningModule.

    Returns:
        Child attribute names, in registration order.

    Example:
        >>> network_candidates(nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU()))
        ['0']
    """
    return [name for name, child in module.named_children() if _has_conv(child)]


def find_network(module: nn.Module, model_attr: str | None) -> tuple[str, nn.Module]:
    """Find the network to prune inside a LightningModule.

    Args:
        module: The LightningModule.
        model_attr: The attribute that holds the network, ``""`` for the module itself, or ``None`` to
            find it: the one child that holds the convs and all trainable parameters (``self.net``,
            ``self.model``, ``self.backbone`` ...), else the module itself if it defines ``forward``.

    Returns:
        ``(attr, network)``; ``attr`` is ``""`` when the network is the module itself.

    Raises:
        ValueError: If ``model_attr`` names no ``nn.Module`` attribute, if the network holds no
            ``Conv2d``, or if ``model_attr`` is ``None`` and the choice is ambiguous (the message names
            ``model_attr`` and the candidates).

    Example:
        >>> find_network(nn.Sequential(nn.Conv2d(1, 2, 1)), "")[0]
        ''
    """
    kind = type(module).__name__
    candidates = network_candidates(module)
    hint = f"; candidates: {', '.join(repr(c) for c in candidates) or 'none'} (or '' for the module itself)"
    if model_attr is not None:
        if not isinstance(model_attr, str):
            raise ValueError(f"`model_attr` must be an attribute name, '' or None, got {model_attr!r}")
        net = module if model_attr == "" else getattr(module, model_attr, None)
        if not isinstance(net, nn.Module):
            raise ValueError(
                f"`model_attr` must name the nn.Module attribute of {kind} that holds the network, "
                f"got {model_attr!r}{hint}"
            )
        if not _has_conv(net):
            raise ValueError(
                f"`model_attr` must name a network with Conv2d layers to prune, got {model_attr!r} "
                f"({type(net).__name__} has none){hint}"
            )
        return model_attr, net
    if not _has_conv(module):
        raise ValueError(
            f"`model_attr` could not be found: {kind} holds no Conv2d layer, so there is nothing to prune"
        )
    params = _param_ids(module)
    if len(candidates) == 1:
        child = getattr(module, candidates[0])
        if _param_ids(child) >= params and not isinstance(child, nn.Conv2d):
            return candidates[0], child
    if _defines_forward(module):
        if len(candidates) <= 1 or not _several_networks(module, candidates):
            return "", module
    raise ValueError(
        f"`model_attr` must be set: {kind} has no single child that holds its convs and parameters"
        f"{' and no forward() to trace' if not _defines_forward(module) else ''}{hint}"
    )


def _several_networks(module: nn.Module, candidates: list[str]) -> bool:
    """Two or more children that each end in a classifier look like separate networks (teacher/student)."""

    def looks_complete(m: nn.Module) -> bool:
        return _has_conv(m) and any(isinstance(x, nn.Linear) for x in m.modules())

    return sum(looks_complete(getattr(module, c)) for c in candidates) >= 2


def set_network(module: nn.Module, attr: str, net: nn.Module) -> None:
    """Put ``net`` (a rebuilt copy of the network) in place of the network of ``module``.

    Args:
        module: The LightningModule.
        attr: The network's attribute (:func:`find_network`), ``""`` for the module itself.
        net: The new network; for ``attr=""``, a copy of the module itself.

    Example:
        >>> m = nn.Sequential(nn.Conv2d(1, 2, 1))
        >>> set_network(m, "", nn.Sequential(nn.Conv2d(1, 3, 1)))
        >>> m[0].out_channels
        3
    """
    if attr:
        setattr(module, attr, net)
        return
    # The network is the module itself: the copy's shapes may differ from the live module's, so the parts
    # that hold weights are swapped in, instead of loading a state dict across shapes.
    for name, child in net.named_children():
        if any(True for _ in child.parameters()) or any(True for _ in child.buffers()):
            setattr(module, name, child)
    for name, p in net.named_parameters(recurse=False):
        setattr(module, name, p)


def copy_network(module: nn.Module, attr: str, leave_behind: Sequence[object] = ()) -> nn.Module:
    """A CPU copy of the network of ``module``.

    Args:
        module: The LightningModule.
        attr: The network's attribute (:func:`find_network`), ``""`` for the module itself.
        leave_behind: Objects the copy must not duplicate (the Trainer, when the network is the module
            itself); they become None in the copy.

    Returns:
        The copy, on the CPU.
    """
    net = getattr(module, attr) if attr else module
    memo: dict[int, Any] = {id(o): None for o in leave_behind} if not attr else {}
    return copy.deepcopy(net, memo).cpu()


def rebuild_network(
    template: nn.Module,
    input_shape: Sequence[int],
    history: Sequence[Any],
    state: dict[str, torch.Tensor],
    ignored_layers: Sequence[str],
) -> nn.Module:
    """A copy of the dense ``template`` with ``history``'s prune steps replayed and ``state`` loaded.

    Args:
        template: The dense network (not changed).
        input_shape: The input shape the steps were planned at.
        history: Prune steps (:data:`hwprune.prune.PruneRecord` lists), oldest first.
        state: A state dict of the network after exactly those steps.
        ignored_layers: Layers whose output channels stayed.

    Returns:
        The rebuilt network, on the template's device.
    """
    from hwprune.prune import replay_history

    net = copy.deepcopy(template)
    replay_history(net, input_shape, list(history), ignored_layers)
    net.load_state_dict(state)  # same shapes: the dense copy after the same steps
    return net

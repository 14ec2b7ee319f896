"""Torch-Pruning glue: coupled channel groups, physical pruning, and replay of a pruning history.

A *channel group* is a set of channels that must be pruned together: a conv's output channels plus every
BatchNorm, residual add, depthwise conv and consumer input they feed. Torch-Pruning's
:class:`~torch_pruning.DependencyGraph` finds them; this module turns each one into a
:class:`ChannelGroup`, which names the conv layers it touches and on which side, so the planner can price
the group with the latency predictor.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch_pruning as tp
from torch import nn

log = logging.getLogger(__name__)

__all__ = [
    "ChannelGroup",
    "GroupedModel",
    "PruneRecord",
    "apply_removals",
    "build_groups",
    "count_macs",
    "replay_history",
    "resolve_ignored",
]

Side = Literal["out", "in", "dw"]
PruneRecord = tuple[str, bool, list[int]]
"""One Torch-Pruning history entry: (root module name, is out-channel pruning, removed root indices)."""


@dataclass(frozen=True)
class ChannelGroup:
    """A set of coupled channels, described by the conv layers it touches.

    Attributes:
        index: Position in :attr:`GroupedModel.groups` (stable for a given architecture).
        root: Name of the conv whose output channels root the group.
        width: Current number of channels.
        layers: ``(conv name, side)`` pairs: ``"out"`` (output channels), ``"in"`` (input channels) or
            ``"dw"`` (a depthwise conv: in, out and groups change together).
        prunable: False when the group is frozen (ignored layer, grouped conv, channel shuffle).
        reason: Why a group is frozen; empty when prunable.
    """

    index: int
    root: str
    width: int
    layers: tuple[tuple[str, Side], ...]
    prunable: bool
    reason: str = ""


@dataclass
class GroupedModel:
    """A model with its dependency graph and channel groups (valid until the model is pruned).

    Attributes:
        model: The module.
        graph: Torch-Pruning's dependency graph of ``model``.
        groups: Channel groups, in the graph's order.
        tp_groups: The matching Torch-Pruning groups (for importance scoring).
    """

    model: nn.Module
    graph: tp.DependencyGraph
    groups: list[ChannelGroup]
    tp_groups: list[tp.dependency.Group]


def _is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels


def _is_grouped(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups > 1 and not _is_depthwise(m)


@contextlib.contextmanager
def _traceable_channel_shuffle() -> Iterator[list[bool]]:
    """Trace torchvision's ShuffleNet ``channel_shuffle`` as the identity.

    Torch-Pruning cannot map indices through its 5-D view/transpose (it divides by zero). Traced as the
    identity, the graph builds; groups that cross a concat or split are then frozen, so the permutation
    is never pruned through.
    """
    used = [False]
    try:
        import torchvision.models.shufflenetv2 as sn
    except ImportError:  # pragma: no cover - torchvision is a dependency
        yield used
        return
    original = sn.channel_shuffle

    def identity(x: torch.Tensor, groups: int) -> torch.Tensor:
        used[0] = True
        return x

    sn.channel_shuffle = identity
    try:
        yield used
    finally:
        sn.channel_shuffle = original


def resolve_ignored(model: nn.Module, ignored_layers: Sequence[str | nn.Module] = ()) -> list[nn.Module]:
    """Return the modules whose output channels must never be pruned.

    Every ``nn.Linear`` (the classifier's outputs are the classes) is always ignored.

    Args:
        model: The model.
        ignored_layers: Extra module names or modules.

    Returns:
        The modules to pass to Torch-Pruning as ``ignored_layers``.

    Raises:
        ValueError: If a name does not exist in ``model``.
    """
    out: list[nn.Module] = [m for m in model.modules() if isinstance(m, nn.Linear)]
    names = dict(model.named_modules())
    for item in ignored_layers:
        if isinstance(item, str):
            if item not in names:
                raise ValueError(f"`ignored_layers` names {item!r}, which is not a module of the model")
            out.append(names[item])
        else:
            out.append(item)
    return out


def _all_groups(graph: tp.DependencyGraph, ignored: Sequence[nn.Module]) -> Iterator[tp.dependency.Group]:
    """Torch-Pruning's ``get_all_groups`` for conv roots, skipping roots whose group cannot be built.

    Torch-Pruning fails on some index mappings (ShuffleNet's split after a traced-away shuffle); such a
    root's channels then simply stay.
    """
    visited: set[nn.Module] = set()
    ignored_ids = {id(m) for m in [*ignored, *graph.IGNORED_LAYERS_IN_TRACING]}
    for m in list(graph.module2node):
        if id(m) in ignored_ids or not isinstance(m, nn.Conv2d) or m in visited:
            continue
        pruner = graph.get_pruner_of_module(m)
        if pruner is None or pruner.get_out_channels(m) is None:
            continue
        try:
            group = graph.get_pruning_group(
                m, pruner.prune_out_channels, list(range(pruner.get_out_channels(m)))
            )
        except (IndexError, ValueError, RuntimeError) as err:
            log.info(
                "conv `%s` stays unpruned: Torch-Pruning cannot build its group (%s)",
                graph._module2name.get(m, m),
                err,
            )
            continue
        ok = True
        for dep, _ in group:
            if graph.is_out_channel_pruning_fn(dep.handler):
                visited.add(dep.target.module)
                if id(dep.target.module) in ignored_ids:
                    ok = False
        if ok:
            yield group


def build_groups(
    model: nn.Module, input_shape: Sequence[int], ignored_layers: Sequence[str | nn.Module] = ()
) -> GroupedModel:
    """Build the dependency graph of ``model`` and describe its channel groups.

    Args:
        model: The model (on any device; traced with zeros in eval mode, no grad for parameters kept).
        input_shape: Input shape including batch, e.g. ``(1, 1, 28, 28)``.
        ignored_layers: Module names or modules whose output channels stay.

    Returns:
        The grouped model.

    Raises:
        ValueError: If a name in ``ignored_layers`` is not a module of ``model``.

    Example:
        >>> gm = build_groups(build_model("small_resnet"), (1, 1, 28, 28))
        >>> [g.width for g in gm.groups if g.prunable]
        [128, 64, 32, 32, 64, 128]
    """
    ignored = resolve_ignored(model, ignored_layers)
    names = {m: n for n, m in model.named_modules()}
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with _traceable_channel_shuffle() as shuffled:
            graph = tp.DependencyGraph().build_dependency(
                model, example_inputs=torch.zeros(*[int(s) for s in input_shape], device=device)
            )
    finally:
        model.train(was_training)
    groups: list[ChannelGroup] = []
    tp_groups: list[tp.dependency.Group] = []
    for tg in _all_groups(graph, ignored):
        root_mod = tg[0].dep.target.module
        layers: dict[str, Side] = {}
        reason = ""
        for dep, _idxs in tg:
            mod = dep.target.module
            node_type = getattr(dep.target, "type", None)
            if shuffled[0] and node_type in (tp.ops.OPTYPE.CONCAT, tp.ops.OPTYPE.SPLIT):
                reason = "crosses a ShuffleNet concat/split (channel shuffle)"
            if not isinstance(mod, nn.Conv2d):
                continue
            name = names[mod]
            if _is_grouped(mod):
                reason = f"touches grouped conv `{name}` (groups={mod.groups})"
            if _is_depthwise(mod):
                layers[name] = "dw"
            elif graph.is_out_channel_pruning_fn(dep.handler):
                layers[name] = "out"
            else:
                layers.setdefault(name, "in")
        groups.append(
            ChannelGroup(
                index=len(groups),
                root=names[root_mod],
                width=len(tg[0].idxs),
                layers=tuple(layers.items()),
                prunable=not reason,
                reason=reason,
            )
        )
        tp_groups.append(tg)
    return GroupedModel(model, graph, groups, tp_groups)


def apply_removals(gm: GroupedModel, removals: dict[str, list[int]]) -> list[PruneRecord]:
    """Physically remove channels, group by group, through the dependency graph.

    Args:
        gm: The grouped model (its graph must be current).
        removals: Root conv name -> channel indices to remove from that group (indices into the group's
            current channels).

    Returns:
        The Torch-Pruning history records of this call, for :func:`replay_history`.

    Raises:
        ValueError: If a root is not a group root, or a removal would empty a group.
    """
    modules = dict(gm.model.named_modules())
    by_root = {g.root: g for g in gm.groups}
    before = len(gm.graph.pruning_history())
    for root in sorted(removals, key=lambda r: by_root[r].index if r in by_root else -1):
        idxs = sorted({int(i) for i in removals[root]})
        if not idxs:
            continue
        if root not in by_root:
            raise ValueError(f"`removals` names {root!r}, which roots no channel group")
        if len(idxs) >= by_root[root].width:
            raise ValueError(f"cannot remove all {by_root[root].width} channels of group `{root}`")
        mod = modules[root]
        fn = gm.graph.get_pruner_of_module(mod).prune_out_channels
        group = gm.graph.get_pruning_group(mod, fn, idxs)
        group.prune()
    return [(str(n), bool(o), [int(i) for i in ix]) for n, o, ix in gm.graph.pruning_history()[before:]]


def replay_history(
    model: nn.Module,
    input_shape: Sequence[int],
    history: Sequence[Sequence[PruneRecord]],
    ignored_layers: Sequence[str | nn.Module] = (),
) -> nn.Module:
    """Re-apply a pruning history, step by step, to a fresh copy of the dense model (in place).

    Args:
        model: The dense model (same architecture as the one that was pruned).
        input_shape: Input shape including batch.
        history: One list of records per prune step, as returned by :func:`apply_removals`.
        ignored_layers: As for :func:`build_groups`.

    Returns:
        ``model``, pruned.

    Example:
        >>> fresh = build_model("small_resnet")
        >>> replay_history(fresh, (1, 1, 28, 28), callback.history)  # doctest: +SKIP
    """
    for step in history:
        if not step:
            continue
        gm = build_groups(model, input_shape, ignored_layers)
        modules = dict(model.named_modules())
        for name, is_out, idxs in step:
            mod = modules[name]
            pruner = gm.graph.get_pruner_of_module(mod)
            fn = pruner.prune_out_channels if is_out else pruner.prune_in_channels
            gm.graph.get_pruning_group(mod, fn, list(idxs)).prune(record_history=False)
    return model


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates per input sample at ``input_shape``: the one definition in hwprune.

    Torch-Pruning's ``count_ops_and_params`` (convs, grouped convs, linears and the cheap ops it knows),
    on a zero input of the model's device and dtype, in eval mode; the model's mode is restored.
    """
    p = next(model.parameters())
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            ops, _ = tp.utils.count_ops_and_params(
                model, torch.zeros(*input_shape, device=p.device, dtype=p.dtype)
            )
    finally:
        model.train(was)
    return int(ops)

"""Optimizer state across a prune: which channels each parameter kept, and its momentum cut to match.

Torch-Pruning replaces the pruned parameters with smaller ones, so an optimizer built before the prune holds
state (SGD momentum, Adam moments) for tensors that no longer exist. :func:`prune_tracking_kept` runs a prune
on parameters overwritten with an index code, so the surviving codes say which rows and columns each
parameter kept, whatever group pruned it; :func:`remap_optimizer_state` then cuts the old state to those
channels, and :func:`carry_optimizer_state` moves it into the rebuilt optimizers.

Example:
    >>> import torch
    >>> state = {"w": {"momentum_buffer": torch.arange(6.0).view(3, 2)}}
    >>> out = remap_optimizer_state(state, {"w": ([0, 2], [1])}, {"w": torch.Size([3, 2])})
    >>> out["w"]["momentum_buffer"].tolist()
    [[1.0], [5.0]]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch import nn

__all__ = [
    "KeptChannels",
    "carry_optimizer_state",
    "optimizer_states_by_name",
    "prune_tracking_kept",
    "remap_optimizer_state",
]

T = TypeVar("T")

KeptChannels = dict[str, tuple[list[int], list[int] | None]]
"""Parameter name -> indices kept along dim 0 and along dim 1 (``None`` for a 1-D parameter)."""

_CODE_BASE = 4096  # channel codes stay exact in float32 while dim0 * 4096 + dim1 < 2**24


def _taggable(p: torch.Tensor) -> bool:
    return (
        p.dim() >= 1
        and p.shape[0] < _CODE_BASE
        and (p.dim() < 2 or p.shape[1] < _CODE_BASE)
        and (p.dtype in (torch.float32, torch.float64))
    )


def _tag_parameters(module: nn.Module) -> dict[str, torch.Tensor]:
    """Overwrite parameters with an index code (dim0 * 4096 + dim1); return their real values.

    Parameters too large to code exactly are left alone (their optimizer state is then not carried over).
    """
    saved: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, p in module.named_parameters():
            if not _taggable(p):
                continue
            saved[name] = p.detach().clone()
            code = torch.arange(p.shape[0], dtype=torch.float64).mul_(_CODE_BASE)
            code = code.view(-1, *([1] * (p.dim() - 1)))
            if p.dim() > 1:
                code = code + torch.arange(p.shape[1], dtype=torch.float64).view(
                    1, -1, *([1] * (p.dim() - 2))
                )
            p.copy_(code.expand_as(p).to(p.dtype))
    return saved


def _kept_indices(p: torch.Tensor) -> tuple[list[int], list[int] | None]:
    if p.dim() > 1:
        flat = p.detach().double().reshape(p.shape[0], p.shape[1], -1)[..., 0]
    else:
        flat = p.detach().double().view(-1, 1)
    rows = (flat[:, 0] // _CODE_BASE).round().long().tolist()
    cols = (flat[0, :] % _CODE_BASE).round().long().tolist() if p.dim() > 1 else None
    return rows, cols


def _select(t: torch.Tensor, rows: Sequence[int], cols: Sequence[int] | None) -> torch.Tensor:
    out = t.index_select(0, torch.tensor(list(rows), dtype=torch.long, device=t.device))
    if cols is not None and t.dim() > 1:
        out = out.index_select(1, torch.tensor(list(cols), dtype=torch.long, device=t.device))
    return out


def prune_tracking_kept(module: nn.Module, prune: Callable[[], T]) -> tuple[T, KeptChannels]:
    """Run ``prune`` (which cuts ``module``'s parameters in place) and say which channels each kept.

    The parameters hold an index code while ``prune`` runs and their real values, cut to the kept
    channels, afterwards; their ``.grad`` is dropped. If ``prune`` raises, the parameters it did not
    reshape get their real values back before the error propagates.

    Args:
        module: The module whose parameters are pruned (e.g. the LightningModule, so names match the
            optimizer's view).
        prune: A function that prunes ``module`` (e.g. ``lambda: apply_removals(gm, removals)``).

    Returns:
        ``(what prune returned, kept channels per parameter name)``; parameters too large to code
        (>= 4096 along dim 0 or 1) or not float32/float64 are not listed.

    Example:
        >>> conv = nn.Conv2d(1, 4, 1)
        >>> def cut() -> None:
        ...     conv.weight = nn.Parameter(conv.weight.data[[1, 3]])
        >>> _, kept = prune_tracking_kept(conv, cut)
        >>> kept["weight"][0]
        [1, 3]
    """
    saved = _tag_parameters(module)
    try:
        result = prune()
    except BaseException:
        with torch.no_grad():
            for name, p in module.named_parameters():
                if name in saved and p.shape == saved[name].shape:
                    p.copy_(saved[name])
        raise
    kept: KeptChannels = {}
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name not in saved:
                continue
            rows, cols = _kept_indices(p)
            kept[name] = (rows, cols)
            p.copy_(_select(saved[name], rows, cols))
            p.grad = None
    return result, kept


def remap_optimizer_state(
    old_state: Mapping[str, Mapping[str, Any]],
    kept: Mapping[str, tuple[Sequence[int], Sequence[int] | None]],
    shapes_before: Mapping[str, torch.Size],
) -> dict[str, dict[str, Any]]:
    """Cut per-parameter optimizer state (momentum, Adam moments) down to the kept channels.

    Args:
        old_state: Parameter name -> its optimizer state before pruning.
        kept: Parameter name -> kept indices along dim 0 and dim 1 (``None`` for 1-D parameters).
        shapes_before: Parameter name -> shape before pruning.

    Returns:
        Parameter name -> remapped state; tensors shaped like the old parameter are index-selected,
        anything else (step counters) is copied. Parameters absent from ``kept`` are left out.

    Example:
        >>> st = {"b": {"exp_avg": torch.tensor([1.0, 2.0, 3.0]), "step": torch.tensor(7.0)}}
        >>> new = remap_optimizer_state(st, {"b": ([0, 2], None)}, {"b": torch.Size([3])})
        >>> new["b"]["exp_avg"].tolist(), float(new["b"]["step"])
        ([1.0, 3.0], 7.0)
    """
    out: dict[str, dict[str, Any]] = {}
    for name, st in old_state.items():
        if name not in kept:
            continue
        rows, cols = kept[name]
        new: dict[str, Any] = {}
        for k, v in st.items():
            if isinstance(v, torch.Tensor) and v.shape == shapes_before[name]:
                new[k] = _select(v, rows, cols).clone()
            else:
                new[k] = v
        out[name] = new
    return out


def optimizer_states_by_name(
    module: nn.Module, optimizers: Sequence[torch.optim.Optimizer]
) -> list[dict[str, dict[str, Any]]]:
    """Each optimizer's per-parameter state, keyed by the parameter's name in ``module``.

    Args:
        module: The module whose ``named_parameters`` name the optimizers' parameters.
        optimizers: The optimizers.

    Returns:
        One ``{parameter name: state}`` per optimizer (shallow copies of the state dicts).
    """
    named = dict(module.named_parameters())
    return [{n: dict(opt.state[p]) for n, p in named.items() if p in opt.state} for opt in optimizers]


def carry_optimizer_state(
    module: nn.Module,
    old: Sequence[torch.optim.Optimizer],
    new: Sequence[torch.optim.Optimizer],
    states: Sequence[Mapping[str, Mapping[str, Any]]],
    kept: KeptChannels,
    shapes_before: Mapping[str, torch.Size],
) -> None:
    """Move hyper-parameters and the kept channels' state from the old optimizers into rebuilt ones.

    Args:
        module: The pruned module (its ``named_parameters`` are the new optimizers' parameters).
        old: The optimizers from before the prune (their param groups' settings, e.g. a scheduled lr).
        new: The optimizers rebuilt on the pruned parameters, in the same order.
        states: :func:`optimizer_states_by_name` of the old optimizers, taken before the prune.
        kept: :func:`prune_tracking_kept`'s kept channels.
        shapes_before: Parameter name -> shape before the prune.
    """
    params = dict(module.named_parameters())
    for old_opt, new_opt, st in zip(old, new, states, strict=False):
        if len(old_opt.param_groups) == len(new_opt.param_groups):
            for og, ng in zip(old_opt.param_groups, new_opt.param_groups, strict=True):
                ng.update({k: v for k, v in og.items() if k != "params"})
        for name, remapped in remap_optimizer_state(st, kept, shapes_before).items():
            if name in params:
                new_opt.state[params[name]] = remapped

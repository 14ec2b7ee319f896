"""Optimizer state across a real Torch-Pruning prune: which channels were kept, and momentum cut to match."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hwprune.prune import apply_removals, build_groups
from hwprune.prune.optim import (
    carry_optimizer_state,
    optimizer_states_by_name,
    prune_tracking_kept,
    remap_optimizer_state,
)

SHAPE = (2, 1, 8, 8)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Conv2d(6, 5, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(5, 3),
    )


def _trained(opt_cls: type[torch.optim.Optimizer], **kw: float) -> tuple[nn.Module, torch.optim.Optimizer]:
    """Two real optimizer steps, so that every parameter holds distinct per-element state."""
    net = _net()
    opt = opt_cls(net.parameters(), **kw)
    for seed in (1, 2):
        g = torch.Generator().manual_seed(seed)
        loss = F.cross_entropy(net(torch.randn(*SHAPE, generator=g)), torch.tensor([0, 2]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net, opt


def test_kept_channels_and_remapped_momentum_follow_the_prune() -> None:
    net, opt = _trained(torch.optim.SGD, lr=0.1, momentum=0.9)
    weights = {n: p.detach().clone() for n, p in net.named_parameters()}
    shapes = {n: p.shape for n, p in net.named_parameters()}
    (states,) = optimizer_states_by_name(net, [opt])
    gm = build_groups(net, SHAPE)
    removed = [1, 4]
    history, kept = prune_tracking_kept(net, lambda: apply_removals(gm, {"0": removed}))
    assert history and history[0][0] == "0"
    survivors = [i for i in range(6) if i not in removed]
    # The first conv lost output channels 1 and 4; the consumer conv lost the same input channels.
    assert kept["0.weight"] == (survivors, [0])
    assert kept["1.weight"] == (survivors, None)
    assert kept["3.weight"] == (list(range(5)), survivors)
    assert kept["7.weight"] == (list(range(3)), list(range(5)))  # the classifier is untouched
    # The pruned parameters hold their real values (not the index code), cut to the kept channels.
    torch.testing.assert_close(net[0].weight, weights["0.weight"][survivors])
    torch.testing.assert_close(net[3].weight, weights["3.weight"][:, survivors])
    assert net(torch.zeros(*SHAPE)).shape == (2, 3)
    remapped = remap_optimizer_state(states, kept, shapes)
    momentum = {n: st["momentum_buffer"] for n, st in states.items()}
    torch.testing.assert_close(remapped["0.weight"]["momentum_buffer"], momentum["0.weight"][survivors])
    torch.testing.assert_close(remapped["1.bias"]["momentum_buffer"], momentum["1.bias"][survivors])
    torch.testing.assert_close(remapped["3.weight"]["momentum_buffer"], momentum["3.weight"][:, survivors])
    for name, p in net.named_parameters():
        assert remapped[name]["momentum_buffer"].shape == p.shape


def test_adam_moments_are_cut_and_step_counters_copied_into_a_rebuilt_optimizer() -> None:
    net, opt = _trained(torch.optim.Adam, lr=0.01)
    shapes = {n: p.shape for n, p in net.named_parameters()}
    states = optimizer_states_by_name(net, [opt])
    gm = build_groups(net, SHAPE)
    _, kept = prune_tracking_kept(net, lambda: apply_removals(gm, {"0": [0, 5]}))
    new = torch.optim.Adam(net.parameters(), lr=0.5)
    carry_optimizer_state(net, [opt], [new], states, kept, shapes)
    assert new.param_groups[0]["lr"] == pytest.approx(0.01)  # the old settings (a scheduled lr) carry over
    st = new.state[net[0].weight]
    torch.testing.assert_close(st["exp_avg"], states[0]["0.weight"]["exp_avg"][1:5])
    torch.testing.assert_close(st["exp_avg_sq"], states[0]["0.weight"]["exp_avg_sq"][1:5])
    assert float(st["step"]) == 2.0
    loss = F.cross_entropy(net(torch.randn(*SHAPE)), torch.tensor([0, 1]))
    loss.backward()
    new.step()  # the carried state has the pruned shapes, so the next step runs


def test_a_failed_prune_leaves_the_real_weights() -> None:
    net = _net()
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    gm = build_groups(net, SHAPE)
    with pytest.raises(ValueError, match="cannot remove all 6 channels of group `0`"):
        prune_tracking_kept(net, lambda: apply_removals(gm, {"0": list(range(6))}))
    for n, p in net.named_parameters():
        torch.testing.assert_close(p, before[n])


def test_state_of_parameters_not_kept_is_left_out() -> None:
    st = {"a": {"momentum_buffer": torch.ones(4)}, "b": {"momentum_buffer": torch.ones(2)}}
    out = remap_optimizer_state(st, {"a": ([0, 3], None)}, {"a": torch.Size([4]), "b": torch.Size([2])})
    assert list(out) == ["a"] and out["a"]["momentum_buffer"].shape == (2,)

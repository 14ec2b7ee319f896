"""``count_macs``: the one MAC count (Torch-Pruning's), checked against hand counts."""

from __future__ import annotations

from torch import nn

from hwprune.prune.graph import count_macs


def test_count_macs_matches_hand_count_and_keeps_mode() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),  # 8*8 outputs * 8 channels * 3*9 = 13,824
        nn.Conv2d(8, 8, 3, padding=1, groups=4, bias=False),  # 8*8 * 8 * 2*9 = 9,216
        nn.Flatten(),
        nn.Linear(8 * 8 * 8, 10, bias=False),  # 512 * 10 = 5,120
    )
    net.train()
    assert count_macs(net, (1, 3, 8, 8)) == 13_824 + 9_216 + 5_120
    assert net.training
    assert count_macs(net, (2, 3, 8, 8)) == 13_824 + 9_216 + 5_120  # per sample, whatever the batch

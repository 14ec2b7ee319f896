"""Recorded prune plans: the scenarios, a deterministic predictor, and the recorder.

The recording (``recorded_plans.json`` beside this file) pins what the prune step decides, removal index
by removal index, for single- and multi-target scenarios. It was first written by the step functions of
commit 3ce09b3 (``callbacks._step.decide_step`` for one target, ``callbacks._multi.decide`` for several),
before the two were merged into :func:`hwprune.verify.decide`; ``test_replay.py`` replays every scenario
through today's decision path and compares the JSON text byte for byte.

Nothing here depends on the machine: the weights are a fixed function of each parameter's name and index
(not of torch's random generator), and the predictor is a closed-form staircase of the conv's shape (not
a fitted model), so the recording holds on any CPU and any torch that builds the same architectures.

The first recording called, for each scenario (open loop, ``dense=net``)::

    decide_step(net, p, shape, budgets[t], planner_options=options, target=None,
                closed_loop_rounds=2, ignored_layers=(), dense=net)              # one target
    decide(net, {t: TargetSide(t, p, batches[t], None) ...}, shape, budgets,
           planner_options=options, ignored_layers=(), dense=net)                # several

Regenerate (only when a plan is meant to change, and say why in the commit)::

    python -m tests.verify.plan_recording --write
"""

from __future__ import annotations

import argparse
import json
import math
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

RECORDING = Path(__file__).with_name("recorded_plans.json")


class StairPredictor:
    """A closed-form latency staircase: work rounded up to tiles of the channel counts, plus a floor.

    ``ms = scale * batch * H_out * W_out * k^2 * ceil(in/g / tile_in)*tile_in * ceil(out / tile_out)*tile_out
    / groups + per_layer_ms``: latency steps up at each tile boundary, as cuDNN's and oneDNN's do.
    """

    def __init__(self, tile_in: int, tile_out: int, scale: float, per_layer_ms: float) -> None:
        self.tile_in, self.tile_out, self.scale, self.per_layer_ms = tile_in, tile_out, scale, per_layer_ms

    def predict(self, configs: pd.DataFrame) -> np.ndarray:
        c = configs
        g = c["groups"].to_numpy(dtype=float)
        cin = np.ceil(c["in_channels"].to_numpy(dtype=float) / g / self.tile_in) * self.tile_in
        cout = np.ceil(c["out_channels"].to_numpy(dtype=float) / self.tile_out) * self.tile_out
        k = c["kernel_size"].to_numpy(dtype=float)
        s = c["stride"].to_numpy(dtype=float)
        p = c["padding"].to_numpy(dtype=float)
        ho = np.floor((c["height"].to_numpy(dtype=float) + 2 * p - k) / s) + 1
        wo = np.floor((c["width"].to_numpy(dtype=float) + 2 * p - k) / s) + 1
        work = c["batch"].to_numpy(dtype=float) * ho * wo * k * k * cin * cout
        return self.scale * work + self.per_layer_ms


PREDICTORS: dict[str, Callable[[], StairPredictor]] = {
    "cpu_like": lambda: StairPredictor(tile_in=8, tile_out=16, scale=2e-8, per_layer_ms=0.001),
    "gpu_like": lambda: StairPredictor(tile_in=32, tile_out=64, scale=2e-10, per_layer_ms=0.002),
}


def fixed_weights(model: nn.Module) -> nn.Module:
    """Set every parameter and BatchNorm buffer to a fixed function of its name and index."""
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if not t.is_floating_point():
                continue
            phase = (zlib.crc32(name.encode()) % 10_000) / 1_000.0
            idx = torch.arange(t.numel(), dtype=torch.float64)
            values = torch.sin(idx * 0.7071 + phase) * (0.5 + 0.5 * torch.cos(idx * 0.013 + phase))
            if name.endswith("running_var"):
                values = 1.0 + 0.5 * values.abs()
            t.copy_(values.reshape(t.shape).to(t.dtype))
    return model.eval()


def build(model: str, size: int) -> nn.Module:
    from hwprune.models import build_model

    return fixed_weights(
        build_model(model, num_classes=10, in_channels=1 if size <= 32 else 3, input_size=size)
    )


SCENARIOS: list[dict[str, Any]] = [
    # one target: the settings a user varies (budget, snap, importance, floor), on three architectures
    *[
        {
            "model": "small_resnet",
            "size": 28,
            "batch": 1,
            "targets": ["cpu_like"],
            "ratio": r,
            "snap": snap,
            "importance": "l1",
            "min_channel_ratio": 0.25,
        }
        for r in (0.8, 0.5, 0.3)
        for snap in ("up", "down", "nearest", None)
    ],
    *[
        {
            "model": "resnet18",
            "size": 32,
            "batch": 8,
            "targets": [t],
            "ratio": r,
            "snap": "up",
            "importance": imp,
            "min_channel_ratio": floor,
        }
        for t in ("cpu_like", "gpu_like")
        for r in (0.7, 0.5)
        for imp in ("l1", "l2", "bn_scale")
        for floor in (0.25, 0.5)
    ],
    *[
        {
            "model": "mobilenet_v2",
            "size": 32,
            "batch": 4,
            "targets": ["cpu_like"],
            "ratio": r,
            "snap": "up",
            "importance": "l1",
            "min_channel_ratio": 0.25,
        }
        for r in (0.7, 0.4)
    ],
    # several targets, each at its own batch: the joint plan
    *[
        {
            "model": "resnet18",
            "size": 32,
            "batch": 8,
            "targets": ["cpu_like", "gpu_like"],
            "batches": [1, 32],
            "ratio": r,
            "snap": "up",
            "importance": "l1",
            "min_channel_ratio": 0.25,
        }
        for r in (0.7, 0.5)
    ],
]


def key_of(s: dict[str, Any]) -> str:
    parts = [s["model"], str(s["size"]), f"b{s['batch']}", "+".join(s["targets"])]
    if "batches" in s:
        parts.append("at" + "+".join(str(b) for b in s["batches"]))
    parts += [f"r{s['ratio']}", f"snap={s['snap']}", s["importance"], f"min{s['min_channel_ratio']}"]
    return " ".join(parts)


def record_of(decision: Any) -> dict[str, Any]:
    """The plain-data part of a decision that the recording pins (floats as their exact repr)."""
    per = [
        {
            k: repr(float(t[k])) if isinstance(t[k], float) else t[k]
            for k in ("target", "budget_ms", "after_ms", "met")
        }
        for t in decision.per_target
    ]
    return {
        "removals": {k: ",".join(str(int(i)) for i in v) for k, v in sorted(decision.removals.items())},
        "budget_ms": repr(float(decision.budget_ms)),
        "before_ms": repr(float(decision.before_ms)),
        "after_ms": repr(float(decision.after_ms)),
        "feasible": bool(decision.feasible),
        "per_target": per if len(per) > 1 else [],
    }


def dumps(records: dict[str, Any]) -> str:
    return json.dumps(records, indent=1, sort_keys=True) + "\n"


def replay(decide: Callable[..., Any]) -> dict[str, Any]:
    """Run every scenario through ``decide(net, predictors, batches, input_shape, budgets, options)``.

    ``decide`` gets the network, target name -> predictor, target name -> batch, the input shape, target
    name -> the step's budget in ms (``ratio`` of the dense model's predicted latency at that target's
    batch) and the planner options; it returns a decision with ``removals``, ``budget_ms``,
    ``before_ms``, ``after_ms``, ``feasible`` and ``per_target``.
    """
    from hwprune.prune import conv_widths, predicted_latency

    out: dict[str, Any] = {}
    for s in SCENARIOS:
        net = build(s["model"], s["size"])
        shape = (s["batch"], 1 if s["size"] <= 32 else 3, s["size"], s["size"])
        preds = {t: PREDICTORS[t]() for t in s["targets"]}
        batches = dict(zip(s["targets"], s.get("batches", [s["batch"]] * len(s["targets"])), strict=True))
        budgets = {
            t: s["ratio"] * predicted_latency(p, net, (batches[t], *shape[1:])) for t, p in preds.items()
        }
        options = {
            "importance": s["importance"],
            "snap": s["snap"],
            "dense_widths": conv_widths(net),
            "min_channel_ratio": s["min_channel_ratio"],
        }
        d = decide(net, preds, batches, shape, budgets, options)
        rec = record_of(d)
        assert all(math.isfinite(float(rec[k])) for k in ("budget_ms", "before_ms", "after_ms"))
        out[key_of(s)] = rec
    return out


def decide_now(net, preds, batches, shape, budgets, options):  # type: ignore[no-untyped-def]
    """Today's decision path, open loop (nothing is timed: the recording is of the plans)."""
    from hwprune.verify import TargetSide, decide

    sides = [TargetSide(t, p, batches[t]) for t, p in preds.items()]
    return decide(net, sides, shape, budgets, planner_options=options, dense=net)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="rewrite the recording from today's decision path")
    args = ap.parse_args(argv)
    text = dumps(replay(decide_now))
    if args.write:
        RECORDING.write_text(text)
        print(f"wrote {RECORDING} ({len(SCENARIOS)} scenarios)")
        return 0
    same = RECORDING.read_text() == text
    print("recording matches" if same else "recording DIFFERS")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())

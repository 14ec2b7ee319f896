"""Figures of the README computed from the tables and artifacts the project ships (issue 12, items 10, 16).

    python -m benchmarks.readme_figures      # prints each figure's sentence, as the README states it

``tests/benchmarks/test_readme_figures.py`` checks that the README states exactly these sentences, so a
figure that the data does not bear out fails the test suite.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import ROOT
from hwprune.measure.table import read_table
from hwprune.staircase import SLOWDOWN_TOLERANCE, is_slowdown

#: The opening figure's table: cuDNN fp32 (TF32 off, cudnn.benchmark on), measured on an H100.
OPENING_TABLE = ROOT / "tables" / "cuda_cudnn_fp32" / "resnet18_224.csv"
MAIN_JOB = ROOT / "docs" / "main_job"


@dataclass(frozen=True)
class Slowdowns:
    """How many pruned counts of one layer's out-channel sweep run slower than the unpruned layer.

    Attributes:
        device: The card, from the table's ``device`` column.
        cudnn: cuDNN version, from the table's ``versions`` column.
        layer: The layer label.
        dense: The unpruned out-channel count.
        counts: Pruned counts in ``[lo, hi]`` with a timing.
        slower: Counts slower than the unpruned layer by more than the tolerance.
        worst: Largest ratio pruned / unpruned latency.
        worst_count: The count where it occurs.
    """

    device: str
    cudnn: str
    layer: str
    dense: int
    counts: int
    slower: int
    worst: float
    worst_count: int


def slowdowns(
    table: Path, layer: str, batch: int, lo: int, hi: int, dense: int, tol: float = SLOWDOWN_TOLERANCE
) -> Slowdowns:
    """Count the counts in ``[lo, hi]`` of ``layer``'s out-channel sweep that are > ``tol`` slower than dense.

    Args:
        table: A measurement CSV.
        layer: A substring of the ``layer`` label.
        batch: The batch of the rows.
        lo: Smallest count.
        hi: Largest pruned count.
        dense: The unpruned count.
        tol: Relative slowdown that counts (:data:`hwprune.staircase.SLOWDOWN_TOLERANCE`, 5%).

    Returns:
        The :class:`Slowdowns`.
    """
    df = read_table(table)
    rows = df[df["layer"].astype(str).str.contains(layer, regex=False) & (df["batch"] == batch)]
    rows = rows[rows["in_channels"] == rows["in_channels"].max()]
    lat = rows.groupby("out_channels")["latency_ms"].median()
    ratio = lat.loc[lo:hi] / lat.loc[dense]
    versions = json.loads(rows["versions"].iloc[0])
    cudnn = str(versions.get("cudnn", "?"))
    return Slowdowns(
        device=str(rows["device"].iloc[0]),
        cudnn=f"{int(cudnn) // 10000}.{int(cudnn) // 100 % 100}" if cudnn.isdigit() else cudnn,
        layer=layer,
        dense=dense,
        counts=len(ratio),
        slower=int(is_slowdown(ratio, 1.0, tol).sum()),
        worst=float(ratio.max()),
        worst_count=int(ratio.idxmax()),
    )


def opening_sentence() -> str:
    """The README's opening figure, from the shipped H100 cuDNN fp32 table."""
    s = slowdowns(OPENING_TABLE, "layer2.0.conv2", batch=1, lo=32, hi=112, dense=128)
    return (
        f"On an {s.device.replace('NVIDIA ', '')} with cuDNN {s.cudnn} (fp32, batch 1, ResNet-18's layer2 "
        f"3x3 conv, 128->c channels at 28x28; the shipped table `{OPENING_TABLE.relative_to(ROOT)}`), "
        f"{s.slower} of the {s.counts} counts from 32 to 112 channels ran more than {SLOWDOWN_TOLERANCE:.0%} "
        "slower than the "
        f"unpruned layer, up to {s.worst:.2f}x slower (at {s.worst_count} channels)."
    )


def main_job_sentence(folder: Path = MAIN_JOB) -> str:
    """The README's main-job figure, from the committed artifacts of `python -m benchmarks.main_job`."""
    m = json.loads((folder / "metrics.json").read_text())
    r = json.loads((folder / "pruning_report.json").read_text())
    run = json.loads((folder / "run.json").read_text())
    minutes, seconds = divmod(round(float(run["wall_s"])), 60)
    ms = r["measured_ms"]
    pred = r["predicted_ms"]
    err = [pred[k] / ms[f"{k}_ms"] - 1.0 for k in ("before", "after")]
    return (
        f"**{100 * m['test/acc']:.1f}% test accuracy in {minutes} min {seconds:02d} s**; "
        f"{r['params']['before']:,} -> {r['params']['after']:,} parameters, measured "
        f"{ms['before_ms']:.2f} -> {ms['after_ms']:.2f} ms per image "
        f"({ms['before_ms'] / ms['after_ms']:.2f}x), {r['budget']['summary'].split(':')[0]}; "
        f"predicted whole-model latency {pred['before']:.2f} -> {pred['after']:.2f} ms "
        f"({100 * err[0]:+.0f}% / {100 * err[1]:+.0f}% of measured)"
    )


@dataclass(frozen=True)
class SlowDecision:
    """One hwprune layer decision that ran > 5% slower than the dense layer, with what explains it.

    Attributes:
        model: The network.
        layer: The conv.
        dense_in_out: Dense (in, out) channels.
        pruned_in_out: Pruned (in, out) channels.
        ratio: Pruned / dense latency.
        depthwise: Whether the conv is depthwise (in = out = groups).
        measured: Whether the plan's table holds this exact pruned configuration.
    """

    model: str
    layer: str
    dense_in_out: tuple[int, int]
    pruned_in_out: tuple[int, int]
    ratio: float
    depthwise: bool
    measured: bool


def slow_decisions(tol: float = SLOWDOWN_TOLERANCE) -> list[SlowDecision]:
    """The slow hwprune decisions of the GPU Fashion-MNIST runs, each checked against its plan table.

    Returns:
        One :class:`SlowDecision` per decision > ``tol`` slower than the dense layer, from
        ``docs/bench_raw_fmnist_{resnet18,mobilenet_v2}_gpu.json`` and the shipped tables they name.
    """
    from hwprune.contract import conv_layer_configs
    from hwprune.models import build_model

    out: list[SlowDecision] = []
    for model in ("resnet18", "mobilenet_v2"):
        raw = json.loads((ROOT / "docs" / f"bench_raw_fmnist_{model}_gpu.json").read_text())
        shape = tuple(raw["plan_input"])
        convs = {
            c.name: c.config
            for c in conv_layer_configs(build_model(model, in_channels=shape[1], input_size=shape[-1]), shape)
        }
        table = read_table(ROOT / raw["plan_table"])
        measured = {
            tuple(int(v) for v in row)
            for row in table[
                ["in_channels", "out_channels", "height", "width", "kernel_size", "stride"]
            ].to_numpy()
        }
        for c in raw["layer_check"]:
            if not c["method"].startswith("hwprune") or not is_slowdown(c["pruned_ms"], c["dense_ms"], tol):
                continue
            cfg = convs[c["layer"]]
            ci, co = (int(x) for x in c["pruned_in_out"])
            key = (ci, co, cfg["height"], cfg["width"], cfg["kernel_size"], cfg["stride"])
            out.append(
                SlowDecision(
                    model=model,
                    layer=c["layer"],
                    dense_in_out=tuple(int(x) for x in c["dense_in_out"]),  # type: ignore[arg-type]
                    pruned_in_out=(ci, co),
                    ratio=c["pruned_ms"] / c["dense_ms"],
                    depthwise=cfg["groups"] > 1 and cfg["groups"] == cfg["in_channels"],
                    measured=key in measured,
                )
            )
    return out


def slow_decisions_sentence() -> str:
    """Why the slow cuDNN decisions are slow, grouped by what the data shows for each."""
    slow = slow_decisions()
    odd = [
        d
        for d in slow
        if not d.depthwise and d.pruned_in_out[0] < d.dense_in_out[0] and d.pruned_in_out[0] % 2
    ]
    rest = [d for d in slow if d not in odd]
    counts = ", ".join(str(c) for c in sorted({d.pruned_in_out[0] for d in odd}))
    parts = [
        f"{len(odd)} of the {len(slow)} slow ones have their *in*-channels cut to an odd count "
        f"({counts}), a configuration the tables "
        "(out-channel sweeps at dense in-channels) "
        + ("never measured" if not any(d.measured for d in odd) else "measured only in part")
    ]
    for d in rest:
        what = (
            f"is depthwise ({d.dense_in_out[0]}->{d.pruned_in_out[0]} channels), a count the table measured"
            if d.depthwise and d.measured
            else f"has in-channels {d.dense_in_out[0]}->{d.pruned_in_out[0]} (even), "
            + (
                "a configuration the table measured"
                if d.measured
                else "a configuration the table never measured"
            )
        )
        parts.append(f"`{d.layer}` ({d.model}, {d.ratio:.2f}x) {what}")
    return "; ".join(parts)


def main() -> None:
    print(opening_sentence())
    print(slow_decisions_sentence())
    if (MAIN_JOB / "run.json").is_file():
        print(main_job_sentence())


if __name__ == "__main__":
    main()

"""Figures of the README computed from the tables and artifacts the project ships (issue 12, items 10, 16).

    python benchmarks/readme_figures.py      # prints each figure's sentence, as the README states it

``tests/benchmarks/test_readme_figures.py`` checks that the README states exactly these sentences, so a
figure that the data does not bear out fails the test suite.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from hwprune.measure.table import read_table

ROOT = Path(__file__).resolve().parents[1]
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
        slower: Counts more than ``tol`` slower than the unpruned layer.
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
    table: Path, layer: str, batch: int, lo: int, hi: int, dense: int, tol: float = 0.05
) -> Slowdowns:
    """Count the counts in ``[lo, hi]`` of ``layer``'s out-channel sweep that are > ``tol`` slower than dense.

    Args:
        table: A measurement CSV.
        layer: A substring of the ``layer`` label.
        batch: The batch of the rows.
        lo: Smallest count.
        hi: Largest pruned count.
        dense: The unpruned count.
        tol: Relative slowdown that counts (0.05: 5%).

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
        slower=int((ratio > 1 + tol).sum()),
        worst=float(ratio.max()),
        worst_count=int(ratio.idxmax()),
    )


def opening_sentence() -> str:
    """The README's opening figure, from the shipped H100 cuDNN fp32 table."""
    s = slowdowns(OPENING_TABLE, "layer2.0.conv2", batch=1, lo=32, hi=112, dense=128)
    return (
        f"On an {s.device.replace('NVIDIA ', '')} with cuDNN {s.cudnn} (fp32, batch 1, ResNet-18's layer2 3x3 "
        f"conv, 128->c channels at 28x28; the shipped table `{OPENING_TABLE.relative_to(ROOT)}`), "
        f"{s.slower} of the {s.counts} counts from 32 to 112 channels ran more than 5% slower than the "
        f"unpruned layer, up to {s.worst:.2f}x slower (at {s.worst_count} channels)."
    )


def main_job_sentence(folder: Path = MAIN_JOB) -> str:
    """The README's main-job figure, from the committed artifacts of `benchmarks/main_job.py`."""
    m = json.loads((folder / "metrics.json").read_text())
    r = json.loads((folder / "pruning_report.json").read_text())
    run = json.loads((folder / "run.json").read_text())
    minutes, seconds = divmod(round(float(run["wall_s"])), 60)
    ms = r["measured_ms"]
    return (
        f"**{100 * m['test/acc']:.1f}% test accuracy in {minutes} min {seconds:02d} s**; "
        f"{r['params']['before']:,} -> {r['params']['after']:,} parameters, measured "
        f"{ms['before_ms']:.2f} -> {ms['after_ms']:.2f} ms per image "
        f"({ms['before_ms'] / ms['after_ms']:.2f}x), {r['budget']['summary'].split(':')[0]}"
    )


def main() -> None:
    print(opening_sentence())
    if (MAIN_JOB / "run.json").is_file():
        print(main_job_sentence())


if __name__ == "__main__":
    main()

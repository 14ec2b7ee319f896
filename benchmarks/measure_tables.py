"""Measure shipped layer tables in stages, as a YAML config describes them (the device scripts' sweeps).

A config (``benchmarks/conf/tables_*.yaml``) lists stages; each stage measures, for every target x batch x
model in it, that model's layer space (:func:`hwprune.measure.model_space` with the model's keyword
arguments, or the union of several) into ``<out>/<table>`` through :func:`hwprune.measure.measure`. Tables
are append-only, so a run cut short by ``--budget-s`` resumes where it stopped; a stage that fails is
reported and the next one runs.

    python3 -m benchmarks.measure_tables --config tables_cudnn --out tables --budget-s 470   # on a GPU
    python -m benchmarks.measure_tables --config tables_tvm_llvm --out tables --set trials=16
    python -m benchmarks.measure_tables --config tables_cudnn --dry-run                      # the plan only
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.common import load_config
from hwprune.measure import EvaluatorConfig, load_target, measure, model_space

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Job:
    """One table sweep: a stage's target at one batch for one model.

    Attributes:
        stage: The stage's name.
        target: The target, its batch and option overrides applied.
        model: The factory model name.
        input_shape: The model's input shape including batch.
        spaces: :func:`hwprune.measure.model_space` keyword arguments; the sweep is their union.
        where: Keep only configurations with these values (e.g. ``{"out_channels": 256}``).
        table: The table's path.
    """

    stage: str
    target: Any
    model: str
    input_shape: tuple[int, ...]
    spaces: tuple[dict[str, Any], ...]
    where: dict[str, int]
    table: Path

    def configs(self) -> list[dict[str, Any]]:
        """The configurations to measure (built from the model: a forward pass per space)."""
        out: list[dict[str, Any]] = []
        for kw in self.spaces:
            out += model_space(self.model, self.input_shape, **kw)
        return [c for c in out if all(c[k] == v for k, v in self.where.items())]


def jobs(cfg: dict[str, Any], out: Path) -> Iterator[Job]:
    """The sweeps of a ``tables_*`` config, in order: stage, target, batch, model.

    Args:
        cfg: The config (:func:`benchmarks.common.load_config`).
        out: Root folder of the tables.

    Yields:
        One :class:`Job` per table sweep.

    Raises:
        ValueError: If a stage lacks ``targets``, ``batches``, ``input`` or ``models``.
    """
    for i, stage in enumerate(cfg["stages"]):
        missing = [k for k in ("targets", "batches", "input", "models") if k not in stage]
        if missing:
            raise ValueError(f"`stages[{i}]` must set {missing}")
        name = stage.get("name", f"stage{i}")
        for tname in stage["targets"]:
            base = load_target(tname)
            options = {**base.options, **(stage.get("options") or {})}
            for b in stage["batches"]:
                target = dataclasses.replace(base, batch=int(b), options=options)
                shape = (int(b), *(int(s) for s in stage["input"]))
                for model, kwargs in stage["models"].items():
                    table = out / stage.get("table", "{target}/{model}_{size}.csv").format(
                        target=target.name, model=model, batch=b, size=shape[-1]
                    )
                    spaces = tuple(kwargs if isinstance(kwargs, list) else [kwargs])
                    yield Job(name, target, model, shape, spaces, dict(stage.get("where") or {}), table)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--config", required=True, help="benchmarks/conf/<name>.yaml (tables_cudnn, ...) or a path"
    )
    ap.add_argument("--out", default="tables", help="root folder of the tables")
    ap.add_argument("--budget-s", type=float, default=None, help="stop starting new sweeps after this")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    ap.add_argument(
        "--dry-run", action="store_true", help="print each sweep (configs, table); measure nothing"
    )
    args = ap.parse_args(argv)
    cfg = load_config(args.config, overrides=args.set)
    logging.basicConfig(
        level=logging.INFO if cfg.get("verbose") and not args.dry_run else logging.WARNING,
        format="%(asctime)s %(name)s: %(message)s",
    )
    ev = EvaluatorConfig(**cfg["evaluator"])
    note = cfg.get("load_note", "")
    t0 = time.perf_counter()
    for job in jobs(cfg, Path(args.out)):
        head = f"{job.stage:6s} {job.target.name} b{job.target.batch:<3d} {job.model:12s}"
        if args.dry_run:
            print(f"{head}: {len(job.configs())} configs -> {job.table}")
            continue
        left = None if args.budget_s is None else args.budget_s - (time.perf_counter() - t0)
        if left is not None and left < 5:
            print(f"budget spent: skipping {head}", flush=True)
            continue
        try:
            space = job.configs()
            s = measure(
                job.target,
                space,
                job.table,
                evaluator=ev,
                progress=False,
                time_budget_s=left,
                sidecar={"load_note": note},
            )
            print(
                f"{head}: {len(space)} configs, measured {s.measured}, failed {s.failed}, skipped "
                f"{s.skipped}, {s.wall_s:.1f} s (total {time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
        except Exception as err:  # noqa: BLE001 - report and go on with the other sweeps
            print(f"{head}: {type(err).__name__}: {err}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``measure``: time every configuration of a layer space on a target and append it to a table."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hwprune.measure.backends.base import Backend
from hwprune.measure.evaluator import EvaluatorConfig
from hwprune.measure.table import CONFIG_COLUMNS, TableWriter, config_key
from hwprune.measure.targets import Target, load_target

log = logging.getLogger(__name__)

__all__ = ["MeasureSummary", "measure", "normalize_space"]


@dataclass(frozen=True)
class MeasureSummary:
    """What one :func:`measure` call did.

    Attributes:
        path: The table.
        target: Target name.
        measured: Rows timed and written by this call.
        failed: Rows written with an error by this call.
        skipped: Configurations already in the table (not timed again).
        wall_s: Wall time of the call.
    """

    path: Path
    target: str
    measured: int
    failed: int
    skipped: int
    wall_s: float


def normalize_space(space: Iterable[Mapping[str, Any]], batch: int | None) -> list[dict[str, Any]]:
    """Check and normalise configurations: ints for :data:`CONFIG_COLUMNS`, ``batch`` overridden, deduped.

    Args:
        space: Config dicts (extra key ``layer`` kept as a label).
        batch: Batch that replaces each config's, or None to keep it.

    Returns:
        The configs in order, duplicates merged (their ``layer`` labels joined with ``;``).

    Raises:
        ValueError: If a config lacks a column or has a non-integer value.
    """
    out: dict[tuple[int, ...], dict[str, Any]] = {}
    for i, cfg in enumerate(space):
        missing = [c for c in CONFIG_COLUMNS if c not in cfg and not (c == "batch" and batch)]
        if missing:
            raise ValueError(f"`space` item {i} must have keys {CONFIG_COLUMNS}, missing {missing}")
        c: dict[str, Any] = {}
        for k in CONFIG_COLUMNS:
            v = batch if (k == "batch" and batch) else cfg[k]
            if isinstance(v, bool) or int(v) != v:
                raise ValueError(f"`space` item {i}: `{k}` must be an integer, got {v!r}")
            c[k] = int(v)
        key = tuple(c[k] for k in CONFIG_COLUMNS)
        label = str(cfg.get("layer", "") or "")
        if key in out:
            prev = out[key]["layer"]
            if label and label not in prev.split(";"):
                out[key]["layer"] = f"{prev};{label}" if prev else label
        else:
            out[key] = {**c, "layer": label}
    return list(out.values())


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="cfg", disable=not enabled, dynamic_ncols=True)


def measure(
    target: Target | str,
    space: Iterable[Mapping[str, Any]],
    out_path: str | os.PathLike[str],
    *,
    evaluator: EvaluatorConfig | None = None,
    progress: bool = True,
    retry_errors: bool = False,
    sidecar: Mapping[str, Any] | None = None,
    limit: int | None = None,
    time_budget_s: float | None = None,
    shuffle_seed: int | None = None,
) -> MeasureSummary:
    """Time each conv2d configuration of ``space`` on ``target``; append the rows to ``out_path``.

    The table is append-only and each row is flushed and fsynced, so a killed sweep keeps every finished
    row; run the same call again to resume: configurations already in the table for this target and dtype
    are skipped (also those that recorded an error, unless ``retry_errors``). A configuration whose timing
    fails is written with its ``error`` and the sweep goes on. A sidecar ``<table>.json`` records the
    device inventory and each call's settings and wall time.

    Args:
        target: A :class:`Target`, a catalogue name (``cpu_torch``) or a YAML path.
        space: Config dicts keyed by :data:`CONFIG_COLUMNS` (plus an optional ``layer`` label);
            ``target.batch``, when set, replaces each config's batch.
        out_path: The CSV table.
        evaluator: Timing settings (default :class:`EvaluatorConfig()`).
        progress: Show a progress bar with an ETA.
        retry_errors: Time again configurations that recorded an error before.
        sidecar: Extra keys for the sidecar JSON (e.g. ``load_note``).
        limit: Time at most this many new configurations (for tests and quick looks).
        time_budget_s: Stop starting new configurations after this many seconds (resume later).
        shuffle_seed: Time the configurations in a random order (this seed) instead of the given one.
            On a shared machine, load comes in bursts; in sweep order a burst slows a run of
            neighbouring channel counts and draws a fake stair, shuffled it is spread as noise.

    Returns:
        A :class:`MeasureSummary`.

    Raises:
        ValueError: If the space is malformed or the target unknown.
        RuntimeError: If the backend cannot start (e.g. no GPU for ``cudnn``).

    Example:
        >>> from hwprune.measure import measure, model_space
        >>> space = model_space("small_resnet", (1, 1, 28, 28), step=8)
        >>> measure("cpu_torch", space, "t.csv")  # doctest: +SKIP
    """
    from hwprune.measure.device_info import write_sidecar

    t0 = time.perf_counter()
    target = load_target(target)
    evaluator = evaluator or EvaluatorConfig()
    configs = normalize_space(space, target.batch)
    out_path = Path(out_path)
    measured = failed = skipped = 0
    with TableWriter(out_path) as writer:
        todo = []
        for c in configs:
            key = config_key(target.name, target.dtype, c)
            if key in writer.done or (key in writer.failed and not retry_errors):
                skipped += 1
            else:
                todo.append(c)
        if shuffle_seed is not None:
            import random

            random.Random(shuffle_seed).shuffle(todo)
        if limit is not None:
            todo = todo[: max(0, int(limit))]
        log.info(
            "%s: %d configs, %d already in %s, %d to time",
            target.name,
            len(configs),
            skipped,
            out_path,
            len(todo),
        )
        backend = Backend.create(target.backend, target, evaluator)
        run_info = {
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "target": target.name,
            "backend": target.backend,
            "evaluator": evaluator.__dict__,
            "todo": len(todo),
            "skipped": skipped,
        }
        write_sidecar(
            out_path, {"target": target.name, "options": dict(target.options), **dict(sidecar or {})}
        )
        if not todo:
            return MeasureSummary(out_path, target.name, 0, 0, skipped, time.perf_counter() - t0)
        backend.setup()
        try:
            device = backend.device_name()
            versions = json.dumps(backend.versions(), sort_keys=True)
            with _progress(len(todo), target.name, progress) as bar:
                for c in todo:
                    if time_budget_s is not None and time.perf_counter() - t0 > time_budget_s:
                        log.warning(
                            "%s: time budget of %.0f s spent; %d configs left for a resumed run",
                            target.name,
                            time_budget_s,
                            len(todo) - measured - failed,
                        )
                        break
                    res = backend.measure_one(c)
                    writer.append(
                        {
                            "target": target.name,
                            "backend": target.backend,
                            "device": device,
                            "dtype": target.dtype,
                            **{k: c[k] for k in CONFIG_COLUMNS},
                            "latency_ms": None if res.latency_ms is None else f"{res.latency_ms:.6g}",
                            "latency_spread_ms": None if res.spread_ms is None else f"{res.spread_ms:.4g}",
                            "repeats": res.repeats,
                            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
                            "layer": c["layer"],
                            "settings": json.dumps(dict(res.settings), sort_keys=True),
                            "error": res.error,
                            "versions": versions,
                        }
                    )
                    if res.error:
                        failed += 1
                    else:
                        measured += 1
                    bar.update(1)
                    if res.latency_ms is not None:
                        bar.set_postfix_str(
                            f"{c['in_channels']}->{c['out_channels']} {res.latency_ms:.3g} ms"
                        )
        finally:
            backend.close()
            wall = time.perf_counter() - t0
            run_info.update(measured=measured, failed=failed, wall_s=round(wall, 1))
            write_sidecar(out_path, {"run": run_info})
    return MeasureSummary(out_path, target.name, measured, failed, skipped, time.perf_counter() - t0)

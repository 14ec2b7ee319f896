"""``measure``: time every configuration of a layer space on a target and append it to a table.

The steps of one call: normalise the space (:func:`normalize_space`), open the table and pick what is left to
time (resume), time it on one backend (:func:`~hwprune.measure.backend_sweep.sweep_backend`) or on a fleet
of boards (:func:`~hwprune.measure.fleet.run_fleet`), write each row through one writer, and record the
machine and the run in the sidecar (:class:`~hwprune.measure.provenance.TableMachine`).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from hwprune.contract import CONFIG_COLUMNS
from hwprune.measure import contention
from hwprune.measure.backend_sweep import sweep_backend
from hwprune.measure.backends.base import Backend, RunResult
from hwprune.measure.evaluator import EvaluatorConfig
from hwprune.measure.provenance import TableMachine
from hwprune.measure.table import TableWriter, config_key
from hwprune.measure.targets import Target, load_target

if TYPE_CHECKING:
    from tqdm.auto import tqdm

    from hwprune.measure.fleet import FleetReport

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
        noisy: Rows of this call that stayed noisy after re-timing (marked in ``settings``).
        retimed: Configurations of this call that were timed again because their spread was high.
        fleet: What a fleet sweep did (which server timed how many rows, lost sessions), or None.
        contention: How many rows were measured under contention and by how much
            (:mod:`hwprune.measure.contention`; marked ``contended`` in ``settings``), or None when no row
            was timed in this process's thread (nothing to do, or a fleet).
        first_error: The first error of this call's failed rows, or None.
        skipped_failed: Of ``skipped``, configurations that failed before and were not retried
            (``retry_errors=False``).
    """

    path: Path
    target: str
    measured: int
    failed: int
    skipped: int
    wall_s: float
    noisy: int = 0
    retimed: int = 0
    fleet: FleetReport | None = None
    contention: contention.ContentionSummary | None = None
    first_error: str | None = None
    skipped_failed: int = 0

    @property
    def contended(self) -> int:
        """Rows of this call measured under contention (0 when unknown)."""
        return 0 if self.contention is None else self.contention.contended


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


def _check_one_target(writer: TableWriter, target: Target, out_path: Path, allow_mixed: bool) -> None:
    """Refuse to append a target's rows to a table of another target (unless ``allow_mixed``)."""
    others = sorted(writer.targets - {target.name})
    if others and not allow_mixed:
        raise ValueError(
            f"`out_path` {out_path} must hold one target's rows, got rows of {others} and a sweep of "
            f"{target.name!r}: a predictor is fitted per target; write to another file (CLI: --out), "
            "or pass allow_mixed_targets=True (CLI: --allow-mixed-targets)"
        )


@dataclass(frozen=True)
class _Todo:
    """What one call times: the configurations left, and those already in the table."""

    configs: list[dict[str, Any]]
    skipped: int
    skipped_failed: int


def _todo(
    writer: TableWriter,
    target: Target,
    configs: list[dict[str, Any]],
    *,
    retry_errors: bool,
    shuffle_seed: int | None,
    limit: int | None,
) -> _Todo:
    """The configurations not yet in the table (resume), in the order to time them, at most ``limit``."""
    todo = []
    skipped = skipped_failed = 0
    for c in configs:
        key = config_key(target.name, target.dtype, c)
        if key in writer.done or (key in writer.failed and not retry_errors):
            skipped += 1
            skipped_failed += key not in writer.done
        else:
            todo.append(c)
    if skipped_failed:
        log.warning(
            "%s: %d configs recorded an error in %s and are skipped, not timed again (the first: %s); "
            "pass retry_errors=True (CLI: --retry-errors) to time them again",
            target.name,
            skipped_failed,
            writer.path,
            writer.first_error.get(target.name, "?"),
        )
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
        writer.path,
        len(todo),
    )
    return _Todo(todo, skipped, skipped_failed)


def _run_info(target: Target, evaluator: EvaluatorConfig, todo: _Todo) -> dict[str, Any]:
    """The run's sidecar entry as it starts (the rest is filled in as it ends)."""
    from hwprune.measure.device_info import load_snapshot

    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "target": target.name,
        "backend": target.backend,
        "evaluator": evaluator.__dict__,
        "todo": len(todo.configs),
        "skipped": todo.skipped,
        "load_start": load_snapshot(gpu=target.backend_class().is_gpu),
    }


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="cfg", disable=not enabled, dynamic_ncols=True)


class _Rows:
    """The sweep's one row writer: appends each result to the table and counts what happened.

    Args:
        writer: The open table.
        target: The target measured.
        bar: The progress bar.
        fleet: Whether a fleet times the rows (their server is named, their contention not watched here).
    """

    def __init__(self, writer: TableWriter, target: Target, bar: tqdm, fleet: bool) -> None:
        self.writer, self.target, self.bar, self.fleet = writer, target, bar, fleet
        self.measured = self.failed = self.noisy = self.retimed = 0
        self.first_error: str | None = None
        self.slowdowns: list[float | None] = []

    def write(self, c: dict[str, Any], res: RunResult, device: str, versions: str) -> None:
        """Append one row (a :data:`~hwprune.measure.backend_sweep.RowWriter`)."""
        self.retimed += bool(res.settings.get("retimed"))
        self.noisy += bool(res.settings.get("noisy"))
        if not self.fleet and not res.error:
            self.slowdowns.append(res.settings.get("wait_slowdown"))
        self.writer.append(
            {
                "target": self.target.name,
                "backend": self.target.backend,
                "device": device,
                "dtype": self.target.dtype,
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
            self.failed += 1
            self.first_error = self.first_error or str(res.error)
        else:
            self.measured += 1
        self.bar.update(1)
        if res.latency_ms is not None:
            where = f" on {res.settings['server']}" if self.fleet else ""
            self.bar.set_postfix_str(
                f"{c['in_channels']}->{c['out_channels']} {res.latency_ms:.3g} ms{where}"
            )

    def close(
        self, run_info: dict[str, Any], evaluator: EvaluatorConfig, t0: float
    ) -> contention.ContentionSummary | None:
        """End the run's entry: the counts, wall time, machine load and contention; returns the latter."""
        from hwprune.measure.device_info import load_snapshot

        self.bar.close()
        wall = time.perf_counter() - t0
        load = (
            contention.summarize_contention(self.slowdowns, evaluator.max_slowdown)
            if self.slowdowns
            else None
        )
        if load is not None:
            run_info["contention"] = load.to_dict()
        run_info.update(
            measured=self.measured,
            failed=self.failed,
            noisy=self.noisy,
            retimed=self.retimed,
            wall_s=round(wall, 1),
            load_end=load_snapshot(gpu=self.target.backend_class().is_gpu),
        )
        return load


def _fleet_sweep(
    target: Target,
    todo: list[dict[str, Any]],
    evaluator: EvaluatorConfig,
    rows: _Rows,
    fleet: int | Literal["auto"],
    deadline: float | None,
    run_info: dict[str, Any],
) -> FleetReport:
    """Time ``todo`` on a fleet of the tracker's boards (:func:`~hwprune.measure.fleet.run_fleet`)."""
    from hwprune.measure.fleet import run_fleet

    report = run_fleet(target, todo, evaluator, rows.write, fleet=fleet, deadline=deadline)
    run_info["device"] = f"fleet of {report.workers} at tracker {report.tracker} key {report.key}"
    run_info["fleet"] = report.to_dict()
    return report


def _summary(
    out_path: Path,
    target: Target,
    todo: _Todo,
    t0: float,
    rows: _Rows | None = None,
    report: FleetReport | None = None,
    load: contention.ContentionSummary | None = None,
) -> MeasureSummary:
    """The call's :class:`MeasureSummary` (``rows`` None: nothing was left to time)."""
    wall = time.perf_counter() - t0
    if rows is None:
        return MeasureSummary(
            out_path, target.name, 0, 0, todo.skipped, wall, skipped_failed=todo.skipped_failed
        )
    return MeasureSummary(
        out_path,
        target.name,
        rows.measured,
        rows.failed,
        todo.skipped,
        wall,
        rows.noisy,
        rows.retimed,
        report,
        load,
        first_error=rows.first_error,
        skipped_failed=todo.skipped_failed,
    )


def _log_outcome(
    target: Target,
    rows: _Rows,
    evaluator: EvaluatorConfig,
    run_info: Mapping[str, Any],
    load: contention.ContentionSummary | None,
    report: FleetReport | None,
) -> None:
    """Tell the user what the sweep did: noisy and contended rows, the fleet, a sweep that only failed."""
    done = rows.measured + rows.failed
    if rows.noisy:
        log.warning(
            "%s: %d of %d rows stayed noisy (relative spread > %.0f%% after up to %d re-timings; marked "
            '"noisy" in `settings`): the machine is busy or throttled (load average %s -> %s)',
            target.name,
            rows.noisy,
            done,
            100 * evaluator.max_rel_spread,
            evaluator.retime,
            run_info["load_start"]["loadavg"],
            run_info["load_end"]["loadavg"],
        )
    elif done:
        log.info("%s: 0 of %d rows noisy (%d re-timed)", target.name, done, rows.retimed)
    if load is not None:
        if load.contended:
            log.warning('%s: %s (marked "contended" in `settings`)', target.name, load.describe())
        else:
            log.info("%s: %s", target.name, load.describe())
    if report is not None:
        log.info("%s: %s", target.name, report.describe())
    if rows.failed and not rows.measured:
        log.error(
            "%s: every one of the %d configs timed failed; the first error: %s",
            target.name,
            rows.failed,
            rows.first_error,
        )


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
    allow_mixed_targets: bool = False,
    fleet: int | Literal["auto"] | None = None,
    allow_mixed_devices: bool = False,
) -> MeasureSummary:
    """Time each conv2d configuration of ``space`` on ``target``; append the rows to ``out_path``.

    The table is append-only and each row is flushed and fsynced, so a killed sweep keeps every finished
    row; run the same call again to resume: configurations already in the table for this target and dtype
    are skipped (also those that recorded an error, unless ``retry_errors``). A configuration whose timing
    fails is written with its ``error`` and the sweep goes on. A sidecar ``<table>.json`` records the
    device inventory and each call's settings, wall time and machine load (load average, CPU frequency,
    GPU clocks for ``cudnn``) at its start and end.

    Noise: a configuration whose relative spread (IQR / median) exceeds ``evaluator.max_rel_spread`` is
    timed again (``evaluator.retime`` times at most) and the least noisy timing is kept; one that stays
    noisy is marked ``"noisy": true`` in its ``settings``. The call ends with a warning that counts the
    noisy rows, and ``hwprune fit`` / ``hwprune report`` warn on a table with many.

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
        allow_mixed_targets: Append even when the table holds rows of another target (one table per
            target is what :class:`hwprune.predict.LatencyPredictor` fits on).
        fleet: Share the sweep between the servers registered under the target's key at its TVM RPC
            tracker: a number of workers, or ``"auto"`` for one per server (:mod:`hwprune.measure.fleet`);
            None takes ``target.options["fleet"]`` (unset: one session). Rows name their server in
            ``settings``; a lost session hands its config to another worker.
        allow_mixed_devices: Append even when the table's timed rows of this target come from another
            device or library versions (CPU model, GPU name, torch/cuDNN/TVM versions) than this
            backend's. Either way the sidecar keeps the inventory of the machine that measured the
            table first; this run's machine is recorded in its own run entry.

    Returns:
        A :class:`MeasureSummary`.

    Raises:
        ValueError: If the space is malformed or the target unknown, the table holds rows of another
            target and ``allow_mixed_targets`` is False, or rows of another device or library version
            and ``allow_mixed_devices`` is False (nothing is written then).
        RuntimeError: If the backend cannot start (e.g. no GPU for ``cudnn``), or ``fleet`` is ``auto``
            and the tracker lists no server under the key.

    Example:
        >>> from hwprune.measure import measure, model_space
        >>> space = model_space("small_resnet", (1, 1, 28, 28), step=8)
        >>> measure("cpu_torch", space, "t.csv")  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    target = load_target(target)
    evaluator = evaluator or EvaluatorConfig()
    configs = normalize_space(space, target.batch)
    out_path = Path(out_path)
    fleet = target.options.get("fleet") if fleet is None else fleet
    report: FleetReport | None = None
    if fleet is not None:
        from hwprune.measure.fleet_options import check_fleet

        check_fleet(target, fleet)  # before the table is touched
    with TableWriter(out_path) as writer:
        _check_one_target(writer, target, out_path, allow_mixed_targets)
        todo = _todo(
            writer, target, configs, retry_errors=retry_errors, shuffle_seed=shuffle_seed, limit=limit
        )
        backend = Backend.create(target.backend, target, evaluator)
        run_info = _run_info(target, evaluator, todo)
        machine = TableMachine(
            out_path, target.name, target.options, writer.devices.get(target.name, set()), sidecar
        )
        if not todo.configs:
            machine.nothing_timed()
            return _summary(out_path, target, todo, t0)
        rows = _Rows(writer, target, _progress(len(todo.configs), target.name, progress), fleet is not None)
        try:
            if fleet is not None:
                deadline = None if time_budget_s is None else t0 + time_budget_s
                machine.start()  # a fleet's rows name their server each
                report = _fleet_sweep(target, todo.configs, evaluator, rows, fleet, deadline, run_info)
            else:
                one_device = functools.partial(machine.check_device, allow_mixed=allow_mixed_devices)
                sweep_backend(
                    backend,
                    target,
                    todo.configs,
                    evaluator,
                    rows.write,
                    run_info,
                    t0,
                    time_budget_s,
                    one_device,
                )
        finally:
            load = rows.close(run_info, evaluator, t0)
            machine.finish(run_info, wrote_rows=bool(rows.measured or rows.failed))
    _log_outcome(target, rows, evaluator, run_info, load, report)
    return _summary(out_path, target, todo, t0, rows, report, load)

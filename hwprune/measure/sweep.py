"""``measure``: time every configuration of a layer space on a target and append it to a table."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from hwprune.measure import contention
from hwprune.measure.backends.base import Backend, RunResult
from hwprune.measure.evaluator import EvaluatorConfig
from hwprune.measure.table import CONFIG_COLUMNS, TableWriter, config_key
from hwprune.measure.targets import Target, load_target

if TYPE_CHECKING:
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


def _rel_spread(res: RunResult) -> float:
    if res.latency_ms is None or res.spread_ms is None or res.latency_ms <= 0:
        return 0.0
    return float(res.spread_ms) / float(res.latency_ms)


def _timed(backend: Backend, config: Mapping[str, Any], evaluator: EvaluatorConfig) -> tuple[RunResult, int]:
    """Time one config; time a noisy one again (``evaluator.retime`` times at most), keep the least noisy.

    Returns:
        The kept result, with ``noisy`` (and ``retimed``, ``rel_spread``) in its settings when re-timed,
        and the number of extra timings.
    """
    res = backend.measure_one(config)
    if res.error or _rel_spread(res) <= evaluator.max_rel_spread:
        return res, 0
    best, extra, attempts = res, 0, [res]
    for _ in range(evaluator.retime):
        extra += 1
        again = backend.measure_one(config)
        attempts.append(again)
        if again.error:  # the backend is in trouble (a board gone, a lost session): keep what was timed
            break
        if _rel_spread(again) < _rel_spread(best):
            best = again
        if _rel_spread(best) <= evaluator.max_rel_spread:
            break
    noisy = _rel_spread(best) > evaluator.max_rel_spread
    # The kept timing's settings, plus what happened on the way (e.g. an RPC reconnect in the first try).
    settings: dict[str, Any] = {}
    for a in attempts:
        settings.update(a.settings)
    settings.update(best.settings)
    reconnects = sum(int(a.settings.get("rpc_reconnects", 0) or 0) for a in attempts)
    if reconnects:
        settings["rpc_reconnects"] = reconnects
    settings.update(retimed=extra, rel_spread=round(_rel_spread(best), 4))
    if noisy:
        settings["noisy"] = True
    return RunResult(best.latency_ms, best.spread_ms, best.repeats, best.error, settings), extra


def _sweep_one_backend(
    backend: Backend,
    target: Target,
    todo: list[dict[str, Any]],
    evaluator: EvaluatorConfig,
    write: Callable[[dict[str, Any], RunResult, str, str], None],
    run_info: dict[str, Any],
    t0: float,
    time_budget_s: float | None,
    before_first: Callable[[str, str], None] | None = None,
) -> None:
    """Time ``todo`` in order on one backend (one device or one session); ``write`` appends each row.

    ``before_first(device, versions)`` runs once the backend has named its hardware, before any row is
    timed (the table's one-device check); an exception there ends the sweep with nothing written.
    """
    backend.setup()
    try:
        device = backend.hardware_name()
        run_info["device"] = device
        if target.device and target.device != device:
            log.warning(
                "target %s expects device %r, but the hardware reports %r: the table records %r",
                target.name,
                target.device,
                device,
                device,
            )
        versions = json.dumps(backend.versions(), sort_keys=True)
        if before_first is not None:
            before_first(device, versions)
        for i, c in enumerate(todo):
            if time_budget_s is not None and time.perf_counter() - t0 > time_budget_s:
                log.warning(
                    "%s: time budget of %.0f s spent; %d configs left for a resumed run",
                    target.name,
                    time_budget_s,
                    len(todo) - i,
                )
                break
            with contention.watch() as span:  # the timing thread's waits for a CPU: a busy neighbour
                res, _ = _timed(backend, c, evaluator)
            marks = contention.row_marks(span, evaluator.max_slowdown)
            if marks:
                res = RunResult(
                    res.latency_ms, res.spread_ms, res.repeats, res.error, {**res.settings, **marks}
                )
            write(c, res, device, versions)
    finally:
        backend.close()


def _identity(device: str, versions: str) -> tuple[str, str]:
    """A row's machine: its device and library versions (settings such as threads left out)."""
    try:
        libs = {k: v for k, v in json.loads(versions).items() if k != "threads"}
    except (ValueError, AttributeError):
        return device, versions
    return device, json.dumps(libs, sort_keys=True)


def _devices_text(pairs: Iterable[tuple[str, str]]) -> str:
    """``(device, versions JSON)`` pairs in words: ``'AMD EPYC' (torch 2.14.1)``."""
    out = []
    for device, versions in pairs:
        try:
            libs = ", ".join(f"{k} {v}" for k, v in sorted(json.loads(versions).items()))
        except (ValueError, AttributeError):
            libs = versions
        out.append(f"{device!r} ({libs})" if libs else repr(device))
    return " and ".join(out)


def _earlier_inventory(out_path: Path) -> dict[str, Any]:
    """The sidecar's record of the machine that measured the table (all but its runs), to keep it."""
    side = out_path.with_suffix(".json")
    try:
        old = json.loads(side.read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in old.items() if k != "runs"} if isinstance(old, dict) else {}


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
    from hwprune.measure.device_info import collect, load_snapshot, write_sidecar

    t0 = time.perf_counter()
    target = load_target(target)
    evaluator = evaluator or EvaluatorConfig()
    configs = normalize_space(space, target.batch)
    out_path = Path(out_path)
    measured = failed = skipped = noisy = retimed = 0
    slowdowns: list[float | None] = []
    fleet = target.options.get("fleet") if fleet is None else fleet
    report: FleetReport | None = None
    if fleet is not None:
        from hwprune.measure.fleet import check_fleet

        check_fleet(target, fleet)  # before the table is touched
    with TableWriter(out_path) as writer:
        others = sorted(writer.targets - {target.name})
        if others and not allow_mixed_targets:
            raise ValueError(
                f"`out_path` {out_path} must hold one target's rows, got rows of {others} and a sweep of "
                f"{target.name!r}: a predictor is fitted per target; write to another file (CLI: --out), "
                "or pass allow_mixed_targets=True (CLI: --allow-mixed-targets)"
            )
        todo = []
        skipped_failed = 0
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
                out_path,
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
            "load_start": load_snapshot(gpu=target.backend == "cudnn"),
        }
        earlier = writer.devices.get(target.name, set())
        # A table keeps the record of the machine that measured it: appending from another one (allowed
        # or not) never rewrites the sidecar's inventory; this run's machine goes into its run entry.
        head = {"target": target.name, "options": dict(target.options), **dict(sidecar or {})}
        keep = _earlier_inventory(out_path) if earlier else {}
        if not todo:
            if not earlier:
                write_sidecar(out_path, head)
            return MeasureSummary(
                out_path, target.name, 0, 0, skipped, time.perf_counter() - t0, skipped_failed=skipped_failed
            )

        def one_device(device: str, versions: str) -> None:
            here = _identity(device, versions)
            others = sorted({_identity(d, v) for d, v in earlier} - {here})
            if others and not allow_mixed_devices:
                raise ValueError(
                    f"`out_path` {out_path} must hold one device's rows of target {target.name!r}, got rows "
                    f"measured on {_devices_text(others)} and a sweep on "
                    f"{_devices_text([here])}: "
                    "a predictor fitted on both would average two machines' stairs; write to another file "
                    "(CLI: --out), or pass allow_mixed_devices=True (CLI: --allow-mixed-devices)"
                )
            if others:
                log.warning(
                    "%s: appending rows measured on %s to a table of %s (allow_mixed_devices=True); the "
                    "sidecar keeps the first machine's record",
                    target.name,
                    _devices_text([here]),
                    _devices_text(others),
                )
            write_sidecar(out_path, {**head, **keep})

        first_error: str | None = None

        def write(c: dict[str, Any], res: RunResult, device: str, versions: str) -> None:
            nonlocal measured, failed, noisy, retimed, first_error
            retimed += bool(res.settings.get("retimed"))
            noisy += bool(res.settings.get("noisy"))
            if fleet is None and not res.error:
                slowdowns.append(res.settings.get("wait_slowdown"))
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
                first_error = first_error or str(res.error)
            else:
                measured += 1
            bar.update(1)
            if res.latency_ms is not None:
                where = f" on {res.settings['server']}" if fleet is not None else ""
                bar.set_postfix_str(f"{c['in_channels']}->{c['out_channels']} {res.latency_ms:.3g} ms{where}")

        bar = _progress(len(todo), target.name, progress)
        try:
            if fleet is not None:
                from hwprune.measure.fleet import run_fleet

                deadline = None if time_budget_s is None else t0 + time_budget_s
                write_sidecar(out_path, {**head, **keep})  # a fleet's rows name their server each
                report = run_fleet(target, todo, evaluator, write, fleet=fleet, deadline=deadline)
                run_info["device"] = f"fleet of {report.workers} at tracker {report.tracker} key {report.key}"
                run_info["fleet"] = report.to_dict()
            else:
                _sweep_one_backend(
                    backend, target, todo, evaluator, write, run_info, t0, time_budget_s, one_device
                )
        finally:
            bar.close()
            wall = time.perf_counter() - t0
            load = contention.summarize_contention(slowdowns, evaluator.max_slowdown) if slowdowns else None
            if load is not None:
                run_info["contention"] = load.to_dict()
            run_info.update(
                measured=measured,
                failed=failed,
                noisy=noisy,
                retimed=retimed,
                wall_s=round(wall, 1),
                load_end=load_snapshot(gpu=target.backend == "cudnn"),
            )
            if earlier:
                run_info["inventory"] = collect()  # this run's machine, beside the table's own record
            if measured or failed or not earlier:
                write_sidecar(out_path, {**keep, "run": run_info})
    done = measured + failed
    if noisy:
        log.warning(
            "%s: %d of %d rows stayed noisy (relative spread > %.0f%% after up to %d re-timings; marked "
            '"noisy" in `settings`): the machine is busy or throttled (load average %s -> %s)',
            target.name,
            noisy,
            done,
            100 * evaluator.max_rel_spread,
            evaluator.retime,
            run_info["load_start"]["loadavg"],
            run_info["load_end"]["loadavg"],
        )
    elif done:
        log.info("%s: 0 of %d rows noisy (%d re-timed)", target.name, done, retimed)
    if load is not None:
        if load.contended:
            log.warning('%s: %s (marked "contended" in `settings`)', target.name, load.describe())
        else:
            log.info("%s: %s", target.name, load.describe())
    if report is not None:
        log.info("%s: %s", target.name, report.describe())
    if failed and not measured:
        log.error(
            "%s: every one of the %d configs timed failed; the first error: %s",
            target.name,
            failed,
            first_error,
        )
    return MeasureSummary(
        out_path,
        target.name,
        measured,
        failed,
        skipped,
        time.perf_counter() - t0,
        noisy,
        retimed,
        report,
        load,
        first_error=first_error,
        skipped_failed=skipped_failed,
    )

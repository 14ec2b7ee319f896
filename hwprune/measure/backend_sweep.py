"""Timing configurations on one backend: one configuration, re-timed while noisy, or a list of them in order.

:func:`hwprune.measure.measure` times a sweep on one device or session with :func:`sweep_backend`; each
worker of a fleet (:mod:`hwprune.measure.fleet`) holds a session of its own and times the configurations it
takes with :func:`time_config`. Where the rows go (the table, its sidecar) is the caller's business: both
hand each result to a ``write`` callback.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from hwprune.measure import contention
from hwprune.measure.backends.base import Backend, RunResult
from hwprune.measure.evaluator import EvaluatorConfig
from hwprune.measure.targets import Target

log = logging.getLogger(__name__)

__all__ = ["RowWriter", "rel_spread", "sweep_backend", "time_config"]

RowWriter = Callable[[dict[str, Any], RunResult, str, str], None]
"""``write(config, result, device, versions_json)``: appends one timed configuration's row."""


def rel_spread(res: RunResult) -> float:
    """A result's relative spread, IQR / median (0 for an error or a zero latency).

    Example:
        >>> rel_spread(RunResult(2.0, 0.5, 7))
        0.25
    """
    if res.latency_ms is None or res.spread_ms is None or res.latency_ms <= 0:
        return 0.0
    return float(res.spread_ms) / float(res.latency_ms)


def time_config(
    backend: Backend, config: Mapping[str, Any], evaluator: EvaluatorConfig
) -> tuple[RunResult, int]:
    """Time one config; time a noisy one again (``evaluator.retime`` times at most), keep the least noisy.

    Args:
        backend: A set-up backend.
        config: The configuration (:data:`~hwprune.contract.CONFIG_COLUMNS` keys).
        evaluator: Its ``max_rel_spread`` says what is noisy, ``retime`` how often to try again.

    Returns:
        The kept result, with ``noisy`` (and ``retimed``, ``rel_spread``) in its settings when re-timed,
        and the number of extra timings.
    """
    res = backend.measure_one(config)
    if res.error or rel_spread(res) <= evaluator.max_rel_spread:
        return res, 0
    best, extra, attempts = res, 0, [res]
    for _ in range(evaluator.retime):
        extra += 1
        again = backend.measure_one(config)
        attempts.append(again)
        if again.error:  # the backend is in trouble (a board gone, a lost session): keep what was timed
            break
        if rel_spread(again) < rel_spread(best):
            best = again
        if rel_spread(best) <= evaluator.max_rel_spread:
            break
    noisy = rel_spread(best) > evaluator.max_rel_spread
    # The kept timing's settings, plus what happened on the way (e.g. an RPC reconnect in the first try).
    settings: dict[str, Any] = {}
    for a in attempts:
        settings.update(a.settings)
    settings.update(best.settings)
    reconnects = sum(int(a.settings.get("rpc_reconnects", 0) or 0) for a in attempts)
    if reconnects:
        settings["rpc_reconnects"] = reconnects
    settings.update(retimed=extra, rel_spread=round(rel_spread(best), 4))
    if noisy:
        settings["noisy"] = True
    return RunResult(best.latency_ms, best.spread_ms, best.repeats, best.error, settings), extra


def sweep_backend(
    backend: Backend,
    target: Target,
    todo: list[dict[str, Any]],
    evaluator: EvaluatorConfig,
    write: RowWriter,
    run_info: dict[str, Any],
    t0: float,
    time_budget_s: float | None,
    before_first: Callable[[str, str], None] | None = None,
) -> None:
    """Time ``todo`` in order on one backend (one device or one session); ``write`` appends each row.

    Each configuration is timed with :func:`time_config` while :func:`hwprune.measure.contention.watch`
    looks at the timing thread's waits for a CPU, and a contended row is marked in its settings.

    Args:
        backend: The backend (set up here, closed at the end).
        target: The target (for the messages and the expected ``device``).
        todo: The configurations, in the order to time them.
        evaluator: Timing settings.
        write: Appends one row.
        run_info: The run's sidecar entry; ``device`` is set to the hardware's name.
        t0: ``time.perf_counter()`` at the sweep's start.
        time_budget_s: No configuration is started after this many seconds since ``t0`` (None: no limit).
        before_first: ``before_first(device, versions)`` runs once the backend has named its hardware,
            before any row is timed (the table's one-device check); an exception there ends the sweep with
            nothing written.
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
                res, _ = time_config(backend, c, evaluator)
            marks = contention.row_marks(span, evaluator.max_slowdown)
            if marks:
                res = RunResult(
                    res.latency_ms, res.spread_ms, res.repeats, res.error, {**res.settings, **marks}
                )
            write(c, res, device, versions)
    finally:
        backend.close()

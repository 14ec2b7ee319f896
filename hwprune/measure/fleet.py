"""One sweep shared by a fleet of boards: the servers that TVM's RPC tracker lists under one key.

The tracker (``python -m tvm.exec.rpc_tracker``) is the scheduler: each board runs
``python -m tvm.exec.rpc_server --tracker HOST:PORT --key KEY`` and registers there; a worker asks the
tracker for a free server of the key, which hands one out and takes it back when the session ends. A
sweep on ``fleet: N`` runs N workers (threads of this process), one session each: every worker takes the
next configuration of the sweep, builds it here, times it on its board and hands the result back; one
writer (the caller's thread, :func:`hwprune.measure.measure`) appends the rows to the one table, so the
table, its resume and its sidecar are those of a one-board sweep, and each row's ``settings`` names the
``server`` that timed it.

A board that dies loses no rows: the session fails, the configuration in flight goes back to the sweep
for another worker (at most ``fleet_retries`` times, then it is written as an error row), and the worker
asks the tracker for another free server (a board that came back, or a spare), giving up after
``fleet_wait_s``. Configurations left when no worker has a board are not written: a later run times them
(resume). :class:`FleetReport` says what happened. :class:`~hwprune.measure.local_fleet.LocalFleet` starts
a tracker and servers on this machine to try it on.

A fleet needs a backend whose class reaches boards through a tracker (``tracker_sessions``: TVM's); its
settings are checked by :func:`~hwprune.measure.fleet_options.check_fleet`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from hwprune.measure.backend_sweep import RowWriter, time_config
from hwprune.measure.backends.base import Backend, RunResult
from hwprune.measure.evaluator import EvaluatorConfig
from hwprune.measure.fleet_options import FleetSize, fleet_option, fleet_size
from hwprune.measure.targets import Target

log = logging.getLogger(__name__)

__all__ = ["FleetReport", "LostSession", "run_fleet"]


@dataclass(frozen=True)
class LostSession:
    """A session that failed while a configuration was timed on it.

    Attributes:
        server: ``host:port`` of the server.
        config: The configuration, e.g. ``8->16 k3 s1 g1 28x28 b1``.
        attempt: How many sessions this configuration had lost before (0: the first loss).
        error: The backend's message.
        outcome: ``requeued`` (handed to another worker), ``error_row`` (retries spent: written as an
            error), or ``kept`` (a re-timing failed after a good timing, which was kept).
        at_s: When the loss was noticed, in seconds since the fleet started (as ``timeline``).
    """

    server: str
    config: str
    attempt: int
    error: str
    outcome: Literal["requeued", "error_row", "kept"]
    at_s: float = 0.0


@dataclass(frozen=True)
class FleetReport:
    """What a fleet sweep did.

    Attributes:
        tracker: ``host:port`` of the tracker.
        key: The device key.
        workers: Workers started (one session each).
        rows_per_server: Rows written per server (``host:port``), error rows included.
        lost: Every session lost while a configuration was in flight.
        requeued: Configurations handed to another worker after a lost session.
        untimed: Configurations not written (no worker had a board left, or the time budget was spent):
            a later run of the same sweep times them.
        retired: Why workers stopped before the sweep ended, one line each.
        timeline: ``(seconds since the start, server)`` of each row, in writing order.
    """

    tracker: str
    key: str
    workers: int
    rows_per_server: Mapping[str, int]
    lost: tuple[LostSession, ...] = ()
    requeued: int = 0
    untimed: int = 0
    retired: tuple[str, ...] = ()
    timeline: tuple[tuple[float, str], ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict for the sidecar (without the timeline)."""
        d = dataclasses.asdict(self)
        d.pop("timeline")
        d["rows_per_server"] = dict(self.rows_per_server)
        return d

    def describe(self) -> str:
        """One line for a person, e.g. ``2 workers: 127.0.0.1:9091 12 rows, ...; 1 session lost ...``."""
        rows = ", ".join(f"{s} {n} rows" for s, n in sorted(self.rows_per_server.items())) or "no rows"
        text = f"fleet of {self.workers} worker(s) at tracker {self.tracker} key {self.key}: {rows}"
        if self.lost:
            text += (
                f"; {len(self.lost)} session(s) lost, {self.requeued} config(s) handed to another worker, "
                f"{sum(x.outcome == 'error_row' for x in self.lost)} written as errors after the retries"
            )
        if self.untimed:
            text += f"; {self.untimed} config(s) left untimed (run again to resume)"
        return text


@dataclass
class _Ticket:
    """One configuration of the sweep and its history (mutable; owned by the coordinator)."""

    config: dict[str, Any]
    attempt: int = 0
    lost_on: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Message:
    """What a worker tells the coordinator."""

    kind: Literal["done", "skip", "retired"]
    worker: str
    ticket: _Ticket | None = None
    result: RunResult | None = None
    server: str = ""
    lost: bool = False
    why: str = ""


def _label(c: Mapping[str, Any]) -> str:
    return (
        f"{c['in_channels']}->{c['out_channels']} k{c['kernel_size']} s{c['stride']} g{c['groups']} "
        f"{c['height']}x{c['width']} b{c['batch']}"
    )


class _Worker(threading.Thread):
    """Holds one session from the tracker and times configurations from the shared queue on it."""

    def __init__(
        self,
        n: int,
        target: Target,
        evaluator: EvaluatorConfig,
        tasks: queue.Queue[_Ticket],
        results: queue.Queue[_Message],
        stop: threading.Event,
        deadline: float | None,
        max_reconnects: int,
    ) -> None:
        super().__init__(name=f"hwprune-fleet-{n}", daemon=True)
        self.target, self.evaluator = target, evaluator
        self.tasks, self.results, self.stop = tasks, results, stop
        self.deadline, self.max_reconnects = deadline, max_reconnects
        # (ticket, server, monotonic start) while a config is being timed; read by the stall watchdog.
        self.current: tuple[_Ticket, str, float] | None = None
        self.abandoned = False  # set by the coordinator when this worker's board stalled

    def run(self) -> None:
        try:
            why = self._run()
        except Exception as err:  # noqa: BLE001 - a worker's bug must end as a message, not a hung sweep
            log.exception("%s failed", self.name)
            why = f"{type(err).__name__}: {err}"
        self.results.put(_Message("retired", self.name, why=why))

    def _run(self) -> str:
        # A tracker_sessions class (check_fleet): it also has setup(connect=False), connect(stop), session.
        backend: Any = Backend.create(self.target.backend, self.target, self.evaluator)
        backend.setup(connect=False)
        sessions = 0
        try:
            while not (self.stop.is_set() or self.abandoned):
                if backend.session is None:  # ask the tracker for a free server of the key
                    if sessions > self.max_reconnects:
                        return f"lost {sessions - 1} sessions (more than rpc_max_reconnects)"
                    try:
                        backend.connect(self.stop)
                    except (RuntimeError, TimeoutError) as err:
                        return "" if self.stop.is_set() else str(err)
                    sessions += 1
                    log.info("%s: session on %s", self.name, backend.server)
                try:
                    ticket = self.tasks.get(timeout=0.2)
                except queue.Empty:
                    continue
                if self.deadline is not None and time.perf_counter() > self.deadline:
                    self.results.put(_Message("skip", self.name, ticket))
                    continue
                server = backend.server
                self.current = (ticket, server, time.monotonic())
                res, _ = time_config(backend, ticket.config, self.evaluator)
                lost = backend.session is None  # the backend drops a session that failed
                self.results.put(_Message("done", self.name, ticket, res, server, lost))
                self.current = None
            return ""
        finally:
            backend.close()


class _Coordinator:
    """Collects the workers' results: re-queues configs of lost sessions, writes every row (one writer)."""

    def __init__(
        self,
        workers: list[_Worker],
        tasks: queue.Queue[_Ticket],
        results: queue.Queue[_Message],
        write: Callable[[dict[str, Any], RunResult], None],
        retries: int,
        stall_s: float | None,
    ) -> None:
        self.workers, self.tasks, self.results, self.write = workers, tasks, results, write
        self.retries, self.stall_s = retries, stall_s
        self.open = tasks.qsize()
        self.alive = len(workers)
        self.rows: dict[str, int] = {}
        self.lost: list[LostSession] = []
        self.retired: list[str] = []
        self.timeline: list[tuple[float, str]] = []
        self.requeued = self.untimed = 0
        self.t0 = time.perf_counter()

    def run(self) -> None:
        """Until every ticket has a row (or is left untimed) or no worker is left."""
        while self.open and self.alive:
            self._check_stalls()
            try:
                msg = self.results.get(timeout=0.25)
            except queue.Empty:
                continue
            worker = next(w for w in self.workers if w.name == msg.worker)
            if worker.abandoned:  # written off as stalled: its ticket is already back in the queue
                continue
            if msg.kind == "retired":
                self._retire(worker, msg.why)
            elif msg.kind == "skip":
                self.open -= 1
                self.untimed += 1
            elif msg.ticket is not None and msg.result is not None:
                self._done(msg.ticket, msg.result, msg.server, msg.lost)

    def _retire(self, worker: _Worker, why: str) -> None:
        self.alive -= 1
        if why:
            log.warning("%s retired: %s", worker.name, why)
            self.retired.append(f"{worker.name}: {why}")

    def _check_stalls(self) -> None:
        if self.stall_s is None:
            return
        for w in self.workers:
            cur = w.current
            if cur is None or w.abandoned or not w.is_alive() or time.monotonic() - cur[2] <= self.stall_s:
                continue
            ticket, server, _ = cur
            w.abandoned = True  # its thread stays blocked on the board; whatever it sends is ignored
            self._retire(w, f"server {server} stalled: no answer within fleet_stall_s={self.stall_s:g} s")
            err = RunResult(
                None, None, 0, f"TimeoutError: no answer from server {server} in {self.stall_s:g} s"
            )
            self._done(ticket, err, server, lost=True)

    def _done(self, ticket: _Ticket, res: RunResult, server: str, lost: bool) -> None:
        if lost:
            failed = res.error is not None
            outcome: Literal["requeued", "error_row", "kept"] = (
                "kept" if not failed else "requeued" if ticket.attempt < self.retries else "error_row"
            )
            label = _label(ticket.config)
            at = round(time.perf_counter() - self.t0, 3)
            self.lost.append(LostSession(server, label, ticket.attempt, str(res.error or ""), outcome, at))
            log.warning(
                "session on %s lost while timing %s (%s): %s",
                server,
                label,
                outcome,
                (res.error or "a re-timing failed; the first timing is kept")[:200],
            )
            if failed:
                ticket.attempt += 1
                ticket.lost_on.append(server)
                if outcome == "requeued":
                    self.requeued += 1
                    self.tasks.put(ticket)
                    return
                res = dataclasses.replace(
                    res,
                    error=(
                        f"the session was lost on each of {ticket.attempt} server(s) tried "
                        f"({', '.join(ticket.lost_on)}; fleet_retries={self.retries}); last: {res.error}"
                    )[:500],
                )
        settings = {**res.settings, "server": server}
        if ticket.lost_on:
            settings["fleet_lost_on"] = list(ticket.lost_on)
        self.write(ticket.config, dataclasses.replace(res, settings=settings))
        self.open -= 1
        self.rows[server] = self.rows.get(server, 0) + 1
        self.timeline.append((round(time.perf_counter() - self.t0, 3), server))


def run_fleet(
    target: Target,
    configs: Sequence[Mapping[str, Any]],
    evaluator: EvaluatorConfig,
    write: RowWriter,
    *,
    fleet: FleetSize,
    deadline: float | None = None,
) -> FleetReport:
    """Time ``configs`` on the tracker's servers of ``target``'s key, one worker per server.

    Called by :func:`hwprune.measure.measure` (which owns the table); ``write`` is its row writer and runs
    in the caller's thread only, so rows reach the table through one writer.

    Args:
        target: A TVM target with ``options.rpc: {host, port, key, tracker: true}``. Its options
            ``fleet_retries`` (default 2), ``fleet_wait_s`` (default 30), ``fleet_stall_s`` (default
            None: off; a board that answers nothing for that long, e.g. one that lost power without
            closing its socket, is written off and its config handed on) and ``rpc_max_reconnects``
            (default 6, per worker) apply.
        configs: Normalised configurations (:func:`~hwprune.measure.sweep.normalize_space`).
        evaluator: Timing settings.
        write: ``write(config, result, device, versions_json)``; ``result.settings`` names the server.
        fleet: Number of workers, or ``"auto"`` for one per server the tracker lists.
        deadline: ``time.perf_counter()`` after which no configuration is started (the rest stay untimed).

    Returns:
        A :class:`FleetReport`.

    Raises:
        ValueError: If ``fleet`` or the target is unsuitable (see
            :func:`~hwprune.measure.fleet_options.check_fleet`).
        RuntimeError: If ``fleet`` is ``auto`` and no server is registered.

    Example:
        >>> run_fleet(target, configs, EvaluatorConfig(), write, fleet=2)  # doctest: +SKIP
    """
    n = fleet_size(target, fleet)
    opts = target.options
    retries = int(fleet_option(opts, "fleet_retries", 2, integer=True) or 0)
    stall_s = fleet_option(opts, "fleet_stall_s", None)
    rpc = dict(opts["rpc"])
    tracker = f"{rpc['host']}:{rpc.get('port', 9190)}"
    # The workers reconnect through the tracker themselves (and hand the config in flight back), so the
    # backend's own retry on the same session is off; the wait for a free server is bounded.
    worker_target = dataclasses.replace(
        target,
        options={**opts, "rpc_retries": 0, "rpc_wait_s": fleet_option(opts, "fleet_wait_s", 30.0)},
    )
    probe: Any = Backend.create(worker_target.backend, worker_target, evaluator)
    probe.setup(connect=False)
    device, versions = probe.hardware_name(), json.dumps(probe.versions(), sort_keys=True)
    probe.close()

    tasks: queue.Queue[_Ticket] = queue.Queue()
    results: queue.Queue[_Message] = queue.Queue()
    stop = threading.Event()
    for c in configs:
        tasks.put(_Ticket(dict(c)))
    max_reconnects = int(opts.get("rpc_max_reconnects", 6))
    workers = [
        _Worker(i, worker_target, evaluator, tasks, results, stop, deadline, max_reconnects) for i in range(n)
    ]
    coord = _Coordinator(
        workers,
        tasks,
        results,
        lambda c, r: write(c, r, device, versions),
        retries,
        stall_s,
    )
    log.info(
        "%s: %d configs on a fleet of %d worker(s) at tracker %s key %r",
        target.name,
        len(configs),
        n,
        tracker,
        rpc["key"],
    )
    for w in workers:
        w.start()
    try:
        coord.run()
    finally:
        stop.set()
        for w in workers:
            if not w.abandoned:
                w.join(timeout=10)
    if coord.open:
        coord.untimed += coord.open
        log.warning(
            "%s: no worker has a board left; %d config(s) left untimed: run the same sweep again once the "
            "boards are back (it resumes)",
            target.name,
            coord.open,
        )
    return FleetReport(
        tracker,
        str(rpc["key"]),
        n,
        coord.rows,
        tuple(coord.lost),
        coord.requeued,
        coord.untimed,
        tuple(coord.retired),
        tuple(coord.timeline),
    )

"""A fleet on this machine: a TVM RPC tracker and servers as subprocesses, to try, test and benchmark.

:class:`LocalFleet` starts what a real fleet of boards runs (TVM's own ``rpc_tracker`` and
``rpc_server --tracker --key``), so that the sweep sharing of :mod:`hwprune.measure.fleet` can be tried,
tested and benchmarked without boards. It is importable from :mod:`hwprune.measure.fleet` too.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Collection, Sequence
from typing import Any

from hwprune.measure.targets import Target

__all__ = ["LocalFleet"]


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class LocalFleet:
    """A TVM RPC tracker and servers on this machine, as subprocesses: a fleet to try, test and benchmark.

    Each process is TVM's own (``python -m tvm.exec.rpc_tracker`` / ``rpc_server --tracker --key``) on a
    free port, in its own process group (a server forks a worker per session; :meth:`kill` ends both, as
    a board losing power would). Servers run with ``TVM_NUM_THREADS`` set and may be pinned to cores.

    Args:
        key: Device key the servers register with.
        servers: How many servers to start.
        cores: One set of CPU ids per server to pin it to (``os.sched_setaffinity``), or None.
        threads: ``TVM_NUM_THREADS`` of each server.
        host: Address everything binds to.
        start_timeout_s: Longest wait for the tracker to list a server.

    Raises:
        ValueError: If ``servers`` < 0 or ``cores`` has fewer entries than servers.
        RuntimeError: If a process does not come up within ``start_timeout_s``.

    Example:
        >>> with LocalFleet("cpu", 2) as f:  # doctest: +SKIP
        ...     measure(f.target("cpu_fleet"), space, "t.csv", fleet="auto")
    """

    def __init__(
        self,
        key: str,
        servers: int,
        *,
        cores: Sequence[Collection[int]] | None = None,
        threads: int = 1,
        host: str = "127.0.0.1",
        start_timeout_s: float = 120.0,
    ) -> None:
        if servers < 0:
            raise ValueError(f"`servers` must be >= 0, got {servers}")
        if cores is not None and len(cores) < servers:
            raise ValueError(f"`cores` must give one CPU set per server ({servers}), got {len(cores)}")
        self.key, self.n, self.cores, self.threads = key, servers, cores, threads
        self.host, self.start_timeout_s = host, start_timeout_s
        self.tracker_port = 0
        self.tracker: subprocess.Popen[bytes] | None = None
        self.servers: list[subprocess.Popen[bytes]] = []
        self.ports: list[int] = []

    def __enter__(self) -> LocalFleet:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the tracker, then the servers; return once the tracker lists every server."""
        self.tracker_port = _free_port(self.host)
        self.tracker = self._spawn(
            [
                "tvm.exec.rpc_tracker",
                "--port",
                str(self.tracker_port),
                "--port-end",
                str(self.tracker_port + 1),
            ],
            None,
        )
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            try:
                socket.create_connection((self.host, self.tracker_port), timeout=0.5).close()
                break
            except OSError:
                self._check_alive(self.tracker, "tracker", deadline)
                time.sleep(0.1)
        self._add_servers(self.n)

    def add_server(self) -> int:
        """Start one more server (pinned to the next CPU set); return its index once the tracker lists it."""
        self._add_servers(1)
        return len(self.servers) - 1

    def _add_servers(self, n: int) -> None:
        """Start ``n`` servers at once (each imports TVM: seconds), then wait until the tracker lists all."""
        from hwprune.measure.backends.tvm_rpc import tracker_servers

        new = []
        for _ in range(n):
            i = len(self.servers)
            port = _free_port(self.host)
            cpus = None if self.cores is None else set(self.cores[i % len(self.cores)])
            args = ["tvm.exec.rpc_server", "--port", str(port), "--port-end", str(port + 1)]
            args += ["--tracker", f"{self.host}:{self.tracker_port}", "--key", self.key]
            self.servers.append(self._spawn(args, cpus))
            self.ports.append(port)
            new.append(i)
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            listed = set(tracker_servers(self.host, self.tracker_port, self.key))
            waiting = [i for i in new if self.server_address(i) not in listed]
            if not waiting:
                return
            for i in waiting:
                self._check_alive(self.servers[i], f"server {i}", deadline)
            time.sleep(0.1)

    def _spawn(self, args: list[str], cpus: set[int] | None) -> subprocess.Popen[bytes]:
        env = {**os.environ, "TVM_NUM_THREADS": str(self.threads)}

        def pin() -> None:  # runs in the child before exec: its forks inherit the CPU set
            if cpus is not None:
                os.sched_setaffinity(0, cpus)

        return subprocess.Popen(
            [sys.executable, "-m", *args, "--host", self.host],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=pin if cpus is not None else None,  # noqa: PLW1509 - only sets the CPU affinity
        )

    def _check_alive(self, proc: subprocess.Popen[bytes], what: str, deadline: float) -> None:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(
                f"the local TVM RPC {what} did not come up within {self.start_timeout_s:.0f} s "
                f"(exit code {proc.poll()}); is apache-tvm installed (pip install 'hwprune[tvm]')?"
            )

    def server_address(self, i: int) -> str:
        """``host:port`` of server ``i``, as rows record it in ``settings["server"]``."""
        return f"{self.host}:{self.ports[i]}"

    def kill(self, i: int) -> None:
        """SIGKILL server ``i`` and its session worker (its process group), and wait for it."""
        _kill_group(self.servers[i])

    def target(self, name: str = "tvm_fleet", **options: Any) -> Target:
        """A local-llvm TVM target that reaches these servers through the tracker.

        Args:
            name: Target name.
            **options: More backend options (e.g. ``fleet="auto"``, ``fleet_wait_s=5``).
        """
        rpc = {"host": self.host, "port": self.tracker_port, "key": self.key, "tracker": True}
        return Target(name=name, backend="tvm", options={"target": {"kind": "llvm"}, "rpc": rpc, **options})

    def close(self) -> None:
        """Kill every server, then the tracker."""
        for proc in self.servers:
            _kill_group(proc)
        if self.tracker is not None:
            _kill_group(self.tracker)
            self.tracker = None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()

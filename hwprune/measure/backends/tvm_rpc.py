"""TVM's RPC tracker, as a sweep uses it: which servers a key has, and a session on a free one.

A board runs ``python -m tvm.exec.rpc_server --tracker HOST:PORT --key KEY``; the tracker hands each
request a free server of the key. :class:`~hwprune.measure.backends.tvm_backend.TVMBackend` opens its
sessions here, and a fleet (:mod:`hwprune.measure.fleet`) counts its servers here. tvm is imported inside
each function.
"""

from __future__ import annotations

import logging
import select
import struct
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["request_session", "tracker_servers"]


def tracker_servers(host: str, port: int, key: str) -> list[str]:
    """Addresses (``host:port``) of the servers registered at a TVM RPC tracker under ``key``.

    Busy servers (in a session) are listed too: the tracker's ``summary()`` lists every server connected
    to it, as ``python -m tvm.exec.query_rpc_tracker`` prints them.

    Args:
        host: Tracker host.
        port: Tracker port.
        key: Device key the servers registered with (``rpc_server --key``).

    Returns:
        The sorted addresses; empty when no server has that key.

    Raises:
        RuntimeError: If the tracker cannot be reached (TVM retries for 60 s first).

    Example:
        >>> tracker_servers("127.0.0.1", 9190, "rpi4")  # doctest: +SKIP
        ['127.0.0.1:9091', '127.0.0.1:9092']
    """
    from tvm import rpc

    tracker = rpc.connect_tracker(host, int(port))
    try:
        info = tracker.summary()
    finally:
        tracker.close()
    want = f"server:{key}"
    return sorted(
        f"{s['addr'][0]}:{s['addr'][1]}" for s in info.get("server_info", []) if s.get("key") == want
    )


def request_session(
    host: str,
    port: int,
    key: str,
    *,
    priority: int = 1,
    session_timeout: int = 0,
    wait_s: float | None = None,
    stop: threading.Event | None = None,
) -> tuple[Any, str]:
    """Ask a TVM RPC tracker for a free server under ``key``; open a session on it.

    The tracker is the scheduler: it hands each request a free server of the key (FIFO by priority) and
    takes the server back when the session ends; a server that dies drops out of its list. This sends
    the tracker protocol's ``REQUEST`` message (``tvm.rpc.base``), as ``TrackerSession.request`` does, but
    (a) returns which server the tracker picked, and (b) waits at most ``wait_s`` and gives up at once
    when ``stop`` is set, where ``TrackerSession.request`` blocks until a server frees up.

    Args:
        host: Tracker host.
        port: Tracker port.
        key: Device key.
        priority: Request priority (higher first).
        session_timeout: Seconds after which the server ends the session (0: never).
        wait_s: Longest wait for a free server, or None to wait as long as it takes.
        stop: Set by another thread to give up waiting.

    Returns:
        ``(session, "server_host:server_port")``.

    Raises:
        TimeoutError: If no server was free within ``wait_s``, or ``stop`` was set.
        RuntimeError: If the tracker is unreachable or answers with an error, or three servers handed
            out in a row refused the connection.

    Example:
        >>> sess, server = request_session("127.0.0.1", 9190, "rpi4", wait_s=30)  # doctest: +SKIP
    """
    from tvm import rpc
    from tvm.rpc import base

    deadline = None if wait_s is None else time.monotonic() + float(wait_s)
    last: Exception | None = None
    for _ in range(3):
        sock = base.connect_with_retry((host, int(port)))
        try:
            sock.sendall(struct.pack("<i", base.RPC_TRACKER_MAGIC))
            if struct.unpack("<i", base.recvall(sock, 4))[0] != base.RPC_TRACKER_MAGIC:
                raise RuntimeError(f"{host}:{port} is not a TVM RPC tracker")
            base.sendjson(sock, [base.TrackerCode.REQUEST, str(key), "", int(priority)])
            while not select.select([sock], [], [], 0.2)[0]:
                if stop is not None and stop.is_set():
                    raise TimeoutError(f"stopped waiting for a free server under key {key!r}")
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(
                        f"no server under key {key!r} was free at tracker {host}:{port} within {wait_s} s"
                    )
            value = base.recvjson(sock)
        finally:
            sock.close()  # a request left pending is dropped by the tracker when its socket closes
        if value[0] != base.TrackerCode.SUCCESS:
            raise RuntimeError(f"TVM RPC tracker {host}:{port} answered {value!r} to a request for {key!r}")
        url, sport, matchkey = value[1]
        try:
            return rpc.connect(url, int(sport), matchkey, session_timeout), f"{url}:{sport}"
        except Exception as err:  # noqa: BLE001 - a server that died after the tracker handed it out
            log.warning("server %s:%s handed out by the tracker refused the session: %s", url, sport, err)
            last = err
    raise RuntimeError(f"three servers under key {key!r} refused the session in a row, last: {last}")

"""A fleet sweep's settings: check them before the table is touched, and size the fleet.

:func:`check_fleet` needs nothing but the target; :func:`fleet_size` asks the tracker how many servers it
lists for ``fleet: auto``. The sweep itself is :func:`hwprune.measure.fleet.run_fleet` (both functions
are importable from :mod:`hwprune.measure.fleet` too).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

from hwprune.measure.targets import Target

log = logging.getLogger(__name__)

__all__ = ["FleetSize", "check_fleet", "fleet_option", "fleet_size"]

FleetSize = int | Literal["auto"]


def fleet_option(
    opts: Mapping[str, Any], key: str, default: float | None, *, integer: bool = False
) -> float | None:
    """A numeric fleet option (>= 0 for integers, > 0 otherwise), or None where null is allowed.

    Args:
        opts: The target's options.
        key: The option, e.g. ``fleet_wait_s``.
        default: Its value when unset; None means null is allowed.
        integer: Whether it counts something (an integer >= 0) rather than seconds (> 0).

    Returns:
        The value as a float, or None.

    Raises:
        ValueError: If the value is out of range or not a number.

    Example:
        >>> fleet_option({"fleet_retries": 3}, "fleet_retries", 2, integer=True)
        3.0
    """
    v = opts.get(key, default)
    if v is None and default is None:
        return None
    ok = isinstance(v, int | float) and not isinstance(v, bool)
    if integer:
        ok = ok and float(v).is_integer() and v >= 0
        want = "an integer >= 0"
    else:
        ok = ok and v > 0
        want = "a number of seconds > 0" + (" or null" if default is None else "")
    if not ok:
        raise ValueError(f"`{key}` must be {want}, got {v!r}")
    return float(v)


def check_fleet(target: Target, fleet: FleetSize) -> dict[str, Any]:
    """Check a fleet sweep's arguments without contacting the tracker.

    Args:
        target: The target to measure.
        fleet: A positive number of workers, or ``"auto"``.

    Returns:
        The target's ``rpc`` options.

    Raises:
        ValueError: If ``fleet`` is neither a positive integer nor ``"auto"``; the target's backend does not
            reach its boards through an RPC tracker (its class's ``tracker_sessions``: TVM) or the target
            names no tracker (``options.rpc: {host, port, key, tracker: true}``); it tunes; or
            ``fleet_retries``, ``fleet_wait_s`` or ``fleet_stall_s`` is out of range.

    Example:
        >>> check_fleet(Target(name="c", backend="torch_cpu"), 2)  # doctest: +SKIP
        Traceback (most recent call last):
        ValueError: `fleet` needs a TVM target reached through an RPC tracker, got backend 'torch_cpu' ...
    """
    if fleet != "auto" and (isinstance(fleet, bool) or not isinstance(fleet, int) or fleet < 1):
        raise ValueError(f"`fleet` must be a positive integer or 'auto', got {fleet!r}")
    if not target.backend_class().tracker_sessions:
        raise ValueError(
            f"`fleet` needs a TVM target reached through an RPC tracker, got backend {target.backend!r} for "
            f"target {target.name!r}"
        )
    rpc = dict(target.options.get("rpc") or {})
    if not rpc.get("tracker") or not rpc.get("key") or rpc.get("host") in (None, "", "???"):
        raise ValueError(
            "`fleet` needs `options.rpc: {host, port, key, tracker: true}` (a tracker and the boards' key), "
            f"got rpc={rpc or None!r} for target {target.name!r}"
        )
    opts = target.options
    if int(opts.get("tune_trials", 0) or 0) > 0 and int(opts.get("tune_max_configs", 0) or 0) > 0:
        raise ValueError(
            f"`fleet` measures untuned builds (or schedules already in `database_dir`), got tune_trials="
            f"{opts.get('tune_trials')} and tune_max_configs={opts.get('tune_max_configs')} for target "
            f"{target.name!r}: MetaSchedule's runner asks the tracker for a board of its own, which the "
            "fleet's workers hold; set `tune_max_configs: 0`, or tune first without `fleet`"
        )
    fleet_option(opts, "fleet_retries", 2, integer=True)
    fleet_option(opts, "fleet_wait_s", 30.0)
    fleet_option(opts, "fleet_stall_s", None)
    return rpc


def fleet_size(target: Target, fleet: FleetSize) -> int:
    """How many workers a fleet sweep runs: ``fleet`` itself, or for ``auto`` the tracker's server count.

    Args:
        target: A TVM target with ``options.rpc: {host, port, key, tracker: true}``.
        fleet: A positive number of workers, or ``"auto"``.

    Returns:
        The number of workers.

    Raises:
        ValueError: If the arguments are unsuitable (see :func:`check_fleet`).
        RuntimeError: For ``auto``, if no server is registered under the key.

    Example:
        >>> fleet_size(load_target("rpi4_tvm_llvm.yaml"), "auto")  # doctest: +SKIP
        2
    """
    rpc = check_fleet(target, fleet)
    if fleet != "auto":
        return int(fleet)
    from hwprune.measure.backends.tvm_rpc import tracker_servers

    host, port, key = str(rpc["host"]), int(rpc.get("port", 9190)), str(rpc["key"])
    servers = tracker_servers(host, port, key)
    if not servers:
        raise RuntimeError(
            f"`fleet: auto` found no server under key {key!r} at tracker {host}:{port}; start one per board "
            f"with `python -m tvm.exec.rpc_server --tracker {host}:{port} --key {key}`"
        )
    log.info("tracker %s:%s lists %d server(s) under %r: %s", host, port, len(servers), key, servers)
    return len(servers)

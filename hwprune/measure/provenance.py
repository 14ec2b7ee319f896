"""Which machine a table's rows come from: one table, one device, and the sidecar that records it.

A table keeps the record of the machine that measured it: a run that appends from another machine (refused
unless allowed) never rewrites the sidecar's inventory, and its own machine goes into its run entry.
:class:`TableMachine` does that bookkeeping for one :func:`hwprune.measure.measure` call.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["TableMachine", "devices_text", "earlier_inventory", "machine_identity"]


def machine_identity(device: str, versions: str) -> tuple[str, str]:
    """A row's machine: its device and library versions (settings such as threads left out).

    Example:
        >>> machine_identity("cpu", '{"threads": "2", "torch": "2.5"}')
        ('cpu', '{"torch": "2.5"}')
    """
    try:
        libs = {k: v for k, v in json.loads(versions).items() if k != "threads"}
    except (ValueError, AttributeError):
        return device, versions
    return device, json.dumps(libs, sort_keys=True)


def devices_text(pairs: Iterable[tuple[str, str]]) -> str:
    """``(device, versions JSON)`` pairs in words: ``'AMD EPYC' (torch 2.14.1)``."""
    out = []
    for device, versions in pairs:
        try:
            libs = ", ".join(f"{k} {v}" for k, v in sorted(json.loads(versions).items()))
        except (ValueError, AttributeError):
            libs = versions
        out.append(f"{device!r} ({libs})" if libs else repr(device))
    return " and ".join(out)


def earlier_inventory(out_path: Path) -> dict[str, Any]:
    """The sidecar's record of the machine that measured the table (all but its runs), to keep it."""
    side = out_path.with_suffix(".json")
    try:
        old = json.loads(side.read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in old.items() if k != "runs"} if isinstance(old, dict) else {}


class TableMachine:
    """The machine record of one sweep into a table: the one-device check and the sidecar's writes.

    Args:
        out_path: The table.
        target: The target's name.
        options: The target's options (recorded in the sidecar).
        earlier: ``(device, versions)`` of the target's timed rows already in the table
            (:attr:`hwprune.measure.table.TableWriter.devices`).
        sidecar: Extra keys for the sidecar (e.g. ``load_note``).
    """

    def __init__(
        self,
        out_path: Path,
        target: str,
        options: Mapping[str, Any],
        earlier: set[tuple[str, str]],
        sidecar: Mapping[str, Any] | None = None,
    ) -> None:
        self.out_path, self.target, self.earlier = out_path, target, earlier
        self.head = {"target": target, "options": dict(options), **dict(sidecar or {})}
        self.keep = earlier_inventory(out_path) if earlier else {}

    def nothing_timed(self) -> None:
        """A call with nothing to time: a new table still gets its sidecar."""
        from hwprune.measure.device_info import write_sidecar

        if not self.earlier:
            write_sidecar(self.out_path, self.head)

    def start(self) -> None:
        """Write the sidecar's head before the first row (keeping the first machine's inventory)."""
        from hwprune.measure.device_info import write_sidecar

        write_sidecar(self.out_path, {**self.head, **self.keep})

    def check_device(self, device: str, versions: str, *, allow_mixed: bool) -> None:
        """Refuse (or, allowed, warn about) a sweep on another machine than the table's; then :meth:`start`.

        Raises:
            ValueError: If the table's timed rows come from another device or library versions and
                ``allow_mixed`` is False (nothing is written then).
        """
        here = machine_identity(device, versions)
        others = sorted({machine_identity(d, v) for d, v in self.earlier} - {here})
        if others and not allow_mixed:
            raise ValueError(
                f"`out_path` {self.out_path} must hold one device's rows of target {self.target!r}, got rows "
                f"measured on {devices_text(others)} and a sweep on "
                f"{devices_text([here])}: "
                "a predictor fitted on both would average two machines' stairs; write to another file "
                "(CLI: --out), or pass allow_mixed_devices=True (CLI: --allow-mixed-devices)"
            )
        if others:
            log.warning(
                "%s: appending rows measured on %s to a table of %s (allow_mixed_devices=True); the "
                "sidecar keeps the first machine's record",
                self.target,
                devices_text([here]),
                devices_text(others),
            )
        self.start()

    def finish(self, run_info: dict[str, Any], wrote_rows: bool) -> None:
        """Record the run: its entry (with this machine's inventory when the table is older than the run)."""
        from hwprune.measure.device_info import collect, write_sidecar

        if self.earlier:
            run_info["inventory"] = collect()  # this run's machine, beside the table's own record
        if wrote_rows or not self.earlier:
            write_sidecar(self.out_path, {**self.keep, "run": run_info})

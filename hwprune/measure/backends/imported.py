"""The ``imported`` backend: tables measured by another tool, mapped with :func:`import_table`."""

from __future__ import annotations

from collections.abc import Mapping

from hwprune.measure.backends.base import Backend, RunResult

__all__ = ["ImportedBackend"]


class ImportedBackend(Backend):
    """Placeholder backend of imported targets: it cannot time anything itself.

    Each :meth:`run` returns an error row pointing to :func:`hwprune.measure.import_table`.
    """

    kind = "imported"

    def run(self, config: Mapping[str, int]) -> RunResult:
        return RunResult(
            None, None, 0, "imported targets are not measured here: use hwprune.measure.import_table"
        )

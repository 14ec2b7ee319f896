"""The columns of a measurement table: what every row holds, and the spellings a column allows.

The layer contract (:data:`~hwprune.contract.CONFIG_COLUMNS`) lives in :mod:`hwprune.contract`; this module
puts the measurement's columns around it. :mod:`hwprune.measure.table` writes and reads tables with these
columns and :mod:`hwprune.measure.table_checks` validates them; both take them from here, so neither needs
the other to know what a table looks like.
"""

from __future__ import annotations

from hwprune.contract import CONFIG_COLUMNS  # the layer contract, defined once at the bottom

__all__ = ["DTYPES", "EXTRA_COLUMNS", "TABLE_COLUMNS", "WRITE_COLUMNS"]

#: The contract's required columns, in order.
TABLE_COLUMNS: tuple[str, ...] = (
    "target",
    "backend",
    "device",
    "dtype",
    *CONFIG_COLUMNS,
    "latency_ms",
    "latency_spread_ms",
    "repeats",
    "timestamp",
)
#: Extra columns this harness writes after the contract's: the model layer(s) the config comes from,
#: the backend's settings for the row (threads, cudnn.benchmark, channels_last, tuned, number of runs per
#: repeat), the error message of a failed config, and the software versions.
EXTRA_COLUMNS: tuple[str, ...] = ("layer", "settings", "error", "versions")
#: Header written by :class:`~hwprune.measure.table.TableWriter`.
WRITE_COLUMNS: tuple[str, ...] = TABLE_COLUMNS + EXTRA_COLUMNS
#: Allowed spellings of the ``dtype`` column.
DTYPES: tuple[str, ...] = ("float32", "float16", "tf32")

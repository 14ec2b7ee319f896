"""The measurement table: one CSV row per timed conv2d configuration.

Writes are append-only and each row is flushed and fsynced before the next configuration is timed, so a
killed sweep loses at most the row in flight (:class:`TableWriter` cuts a half-written last line on
reopen). Reads validate the contract and fail with a :class:`TableError` that names the file, the line and
the column.

Rows whose measurement failed keep the configuration, an empty ``latency_ms`` and the message in the
``error`` column ("results are data"). :func:`read_table` drops them unless ``keep_errors=True``, so
downstream fitting never sees NaN.

The columns are defined in :mod:`hwprune.measure.table_schema` (the configuration columns in
:mod:`hwprune.contract`) and the checks in :mod:`hwprune.measure.table_checks`.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hwprune.contract import CONFIG_COLUMNS  # the layer contract, defined once at the bottom
from hwprune.measure.table_checks import TableError, read_text, validate_table
from hwprune.measure.table_schema import TABLE_COLUMNS, WRITE_COLUMNS

if TYPE_CHECKING:  # pandas is imported lazily: the measuring path must run where pandas is not installed
    import pandas as pd

log = logging.getLogger(__name__)

__all__ = [
    "TableWriter",
    "config_key",
    "import_table",
    "noisy_rows",
    "read_table",
    "warn_if_inconsistent",
    "warn_if_noisy",
]

#: Share of noisy rows above which `fit` and `report` warn.
NOISY_WARN_SHARE = 0.05
#: A configuration measured more than once whose latencies differ by more than this factor is inconsistent.
INCONSISTENT_FACTOR = 1.5


def config_key(target: str, dtype: str, config: Mapping[str, Any]) -> tuple[Any, ...]:
    """Identity of a measured configuration, used to resume sweeps without duplicates.

    Args:
        target: Target name.
        dtype: ``float32``, ``float16`` or ``tf32``.
        config: Mapping with every :data:`CONFIG_COLUMNS` key.

    Returns:
        A hashable tuple ``(target, dtype, batch, in_channels, ...)``.

    Example:
        >>> config_key("cpu", "float32", dict.fromkeys(CONFIG_COLUMNS, 1))[:3]
        ('cpu', 'float32', 1)
    """
    return (str(target), str(dtype), *(int(config[c]) for c in CONFIG_COLUMNS))


class TableWriter:
    """Append rows to a measurement table, one flushed and fsynced row at a time.

    On open, a missing or empty file gets the header; an existing file must have the same header, and a
    half-written last line (a killed writer) is cut off. :attr:`done` holds the keys of the rows already in
    the file (:func:`config_key`), failed rows in :attr:`failed` (configs that failed and were never timed
    since), :attr:`first_error` the first error of each target, and :attr:`devices` the ``(device,
    versions)`` pairs each target's timed rows carry.

    Args:
        path: CSV path; parent folders are created.

    Raises:
        TableError: If the existing file's header differs from :data:`WRITE_COLUMNS`.

    Example:
        >>> with TableWriter("/tmp/t.csv") as w:  # doctest: +SKIP
        ...     w.append(row)
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done: set[tuple[Any, ...]] = set()
        self.failed: set[tuple[Any, ...]] = set()
        self.targets: set[str] = set()
        self.devices: dict[str, set[tuple[str, str]]] = {}  # target -> {(device, versions)} of its timed rows
        self.first_error: dict[str, str] = {}  # target -> the first error recorded in the file
        self._repair_and_scan()
        self._fh = open(self.path, "a", newline="", encoding="utf-8")  # noqa: SIM115 - closed in close()
        if self.path.stat().st_size == 0:
            self._write_line(WRITE_COLUMNS)

    def _repair_and_scan(self) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as fh:
            data = fh.read()
            if not data.endswith(b"\n"):
                cut = data.rfind(b"\n") + 1
                log.warning(
                    "%s: cutting a half-written last line (%d bytes) left by a killed run",
                    self.path,
                    len(data) - cut,
                )
                fh.truncate(cut)
                data = data[:cut]
        text = data.decode("utf-8")
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        if header is None:
            return
        if tuple(header) != WRITE_COLUMNS:
            raise TableError(
                f"{self.path}: line 1, column (header): cannot append, the header is {header}, "
                f"expected {list(WRITE_COLUMNS)}; write to a new file"
            )
        idx = {c: i for i, c in enumerate(header)}
        for row in reader:
            if len(row) != len(header):
                continue
            try:
                key = config_key(
                    row[idx["target"]], row[idx["dtype"]], {c: row[idx[c]] for c in CONFIG_COLUMNS}
                )
            except ValueError:
                continue
            self._note(row[idx["target"]], key, row[idx["error"]], row[idx["device"]], row[idx["versions"]])

    def _write_line(self, values: Iterable[Any]) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(list(values))
        self._fh.write(buf.getvalue())
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def append(self, row: Mapping[str, Any]) -> None:
        """Write one row (keys from :data:`WRITE_COLUMNS`; missing extras are left empty) and fsync it.

        Args:
            row: The row's values.

        Raises:
            KeyError: If a column of :data:`TABLE_COLUMNS` is missing from ``row``.
        """
        missing = [c for c in TABLE_COLUMNS if c not in row]
        if missing:
            raise KeyError(f"row lacks column(s) {missing}")
        self._write_line("" if row.get(c) is None else row.get(c, "") for c in WRITE_COLUMNS)
        key = config_key(row["target"], row["dtype"], row)
        self._note(str(row["target"]), key, row.get("error"), row.get("device"), row.get("versions"))

    def _note(self, target: str, key: tuple[Any, ...], error: Any, device: Any, versions: Any) -> None:
        """Record one row's key, target, device and error in the writer's indexes."""
        self.targets.add(target)
        if error:
            self.failed.add(key)
            self.first_error.setdefault(target, str(error))
        else:
            # A config timed after an earlier failure is done: it no longer counts as failed.
            self.done.add(key)
            self.failed.discard(key)
            self.devices.setdefault(target, set()).add((str(device or ""), str(versions or "")))

    def close(self) -> None:
        """Close the file."""
        self._fh.close()

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_table(
    path: str | os.PathLike[str],
    *,
    allow_mixed_targets: bool = False,
    keep_errors: bool = False,
    check_units: bool = True,
) -> pd.DataFrame:
    """Read and validate a measurement table.

    Line numbers in errors count the header as line 1, as an editor does.

    Args:
        path: CSV file written by :func:`hwprune.measure.measure` or :func:`import_table`.
        allow_mixed_targets: Accept rows of more than one ``target``.
        keep_errors: Keep rows that recorded an ``error`` (their latency is NaN).
        check_units: Refuse latencies that cannot be milliseconds (see
            :func:`~hwprune.measure.table_checks.validate_table`): faster than any chip can compute the
            layer, longer than an hour, or 100x off their channel neighbours.

    Returns:
        A DataFrame with every :data:`TABLE_COLUMNS` column (plus extras), :data:`CONFIG_COLUMNS` as
        int64 and the latencies as float64.

    Raises:
        TableError: If the file is empty, binary or not comma-separated; a record has more or fewer fields
            than the header (a truncated copy or a stray comma); a required column is missing (with a hint
            when the latency is in another unit or a column looks renamed); a dtype is not one of
            :data:`~hwprune.measure.table_schema.DTYPES`; a config column (channels, sizes) is not a
            positive integer; a latency is NaN, zero or negative, or its spread negative; a row is repeated
            verbatim; a latency cannot be in milliseconds (``check_units``); or the rows come from more than
            one target while ``allow_mixed_targets`` is False.
        FileNotFoundError: If ``path`` does not exist.

    Example:
        >>> df = read_table("tables/cpu_torch/small_resnet_28.csv")  # doctest: +SKIP
        >>> df.groupby("out_channels").latency_ms.median()  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"measurement table {path} does not exist")
    df, is_err = validate_table(
        path, read_text(path), allow_mixed_targets=allow_mixed_targets, check_units=check_units
    )
    if not keep_errors:
        if is_err.any():
            log.info("%s: dropping %d row(s) that recorded an error", path, int(is_err.sum()))
        df = df[~is_err].reset_index(drop=True)
    return df


def import_table(
    src: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    target: str,
    device: str,
    dtype: str = "float32",
    columns: Mapping[str, str] | None = None,
    latency_scale: float = 1.0,
    defaults: Mapping[str, Any] | None = None,
) -> int:
    """Map a CSV measured by another tool into the table contract (the ``imported`` backend).

    Args:
        src: Foreign CSV.
        out_path: Table to append to (created with the header when new).
        target: Target name written on every row.
        device: Device name written on every row.
        dtype: Default dtype when the foreign file has none.
        columns: Map from contract column to the foreign file's column, e.g. ``{"latency_ms": "time_us"}``.
        latency_scale: Factor to milliseconds (0.001 for microseconds, 1000 for seconds).
        defaults: Values for contract columns the foreign file lacks (e.g. ``{"groups": 1, "repeats": 1}``).

    Returns:
        The number of rows written.

    Raises:
        TableError: If a contract column is neither mapped, present, nor defaulted.
        ValueError: If ``latency_scale`` is not > 0.

    Example:
        >>> import_table("nnmeter.csv", "tables/x/imp.csv", target="x", device="board",  # doctest: +SKIP
        ...              columns={"latency_ms": "latency"}, defaults={"repeats": 1})
    """
    from datetime import UTC, datetime

    if not latency_scale > 0:
        raise ValueError(f"`latency_scale` must be > 0, got {latency_scale}")
    columns = dict(columns or {})
    defaults = {
        "backend": "imported",
        "target": target,
        "device": device,
        "dtype": dtype,
        "latency_spread_ms": 0.0,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        **dict(defaults or {}),
    }
    src = Path(src)
    n = 0
    with open(src, newline="", encoding="utf-8") as fh, TableWriter(out_path) as w:
        reader = csv.DictReader(fh)
        have = set(reader.fieldnames or ())
        for col in TABLE_COLUMNS:
            if columns.get(col, col) not in have and col not in defaults:
                raise TableError(
                    f"{src}: line 1, column `{col}`: not in the file, not mapped, no default: map it with "
                    f"columns={{{col!r}: ...}} or give defaults={{{col!r}: ...}}"
                )
        for rec in reader:
            row: dict[str, Any] = {}
            for col in TABLE_COLUMNS:
                name = columns.get(col, col)
                row[col] = rec[name] if name in rec and rec[name] != "" else defaults.get(col)
            row["latency_ms"] = float(row["latency_ms"]) * latency_scale
            row["latency_spread_ms"] = float(row["latency_spread_ms"]) * latency_scale
            w.append(row)
            n += 1
    return n


def noisy_rows(df: pd.DataFrame) -> pd.Series:
    """Which rows :func:`hwprune.measure.measure` marked noisy (``"noisy": true`` in ``settings``).

    Args:
        df: A table from :func:`read_table`.

    Returns:
        A boolean Series aligned with ``df`` (all False for tables without a ``settings`` column).

    Example:
        >>> import pandas as pd
        >>> noisy_rows(pd.DataFrame({"settings": ['{"noisy": true}', '{}', None]})).tolist()
        [True, False, False]
    """
    import json

    import pandas as pd

    if "settings" not in df.columns:
        return pd.Series(False, index=df.index)

    def one(text: Any) -> bool:
        if not isinstance(text, str) or "noisy" not in text:
            return False
        try:
            return bool(json.loads(text).get("noisy", False))
        except (ValueError, AttributeError):
            return False

    return df["settings"].map(one).astype(bool)


def warn_if_noisy(df: pd.DataFrame, where: str, share: float = NOISY_WARN_SHARE) -> int:
    """Log a warning when more than ``share`` of the table's rows were measured noisy.

    Args:
        df: A table from :func:`read_table`.
        where: The table's name for the message.
        share: Warning threshold, a fraction of the rows.

    Returns:
        The number of noisy rows.

    Example:
        >>> import pandas as pd
        >>> warn_if_noisy(pd.DataFrame({"settings": ["{}"]}), "t.csv")
        0
    """
    n = int(noisy_rows(df).sum())
    if len(df) and n / len(df) > share:
        log.warning(
            "%s: %d of %d rows (%.0f%%) stayed noisy when measured (relative spread above the limit after "
            "re-timing): the machine was busy or throttled; its latencies are not trustworthy, so measure "
            'again on an idle machine (rows marked "noisy" in `settings`)',
            where,
            n,
            len(df),
            100 * n / len(df),
        )
    return n


def warn_if_inconsistent(df: pd.DataFrame, where: str, factor: float = INCONSISTENT_FACTOR) -> int:
    """Log a warning when a configuration was measured more than once with latencies ``factor`` apart.

    Two tables of one target concatenated, or a rerun under load, repeat configurations; a predictor fitted
    on copies 3x apart averages two different machines (or moments). The rows stay: which copy is right
    cannot be known here.

    Args:
        df: A table from :func:`read_table`.
        where: The table's name for the message.
        factor: Largest max/min latency ratio of a configuration's copies that is not warned about.

    Returns:
        The number of inconsistent configurations.

    Example:
        >>> import pandas as pd
        >>> row = dict(target="t", dtype="float32", batch=1, in_channels=8, out_channels=8, height=8,
        ...            width=8, kernel_size=3, stride=1, padding=1, groups=1)
        >>> warn_if_inconsistent(pd.DataFrame([{**row, "latency_ms": 1.0}, {**row, "latency_ms": 3.0}]), "t")
        1
    """
    keys = [c for c in ("target", "dtype") if c in df.columns] + list(CONFIG_COLUMNS)
    if df.empty or not set(keys) <= set(df.columns):
        return 0
    lat = df.groupby(keys, sort=False)["latency_ms"].agg(["min", "max", "count"])
    repeated = lat[lat["count"] > 1]
    bad = repeated[repeated["max"] > factor * repeated["min"]]
    if len(bad):
        worst = (bad["max"] / bad["min"]).idxmax()
        ratio = float((bad["max"] / bad["min"]).max())
        log.warning(
            "%s: %d of %d configurations measured more than once have latencies more than %.1fx apart (worst "
            "%.1fx: %s); the predictor averages them: measure again on an idle machine, or keep one table "
            "per machine and moment",
            where,
            len(bad),
            len(repeated),
            factor,
            ratio,
            dict(zip(keys, worst, strict=True)),
        )
    return int(len(bad))

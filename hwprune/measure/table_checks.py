"""Validation of a measurement table: the checks :func:`hwprune.measure.table.read_table` runs.

:func:`read_text` refuses a file that is no text table; :func:`validate_table` parses the text and checks
its records against the contract (:mod:`hwprune.measure.table_schema`). Each check raises a
:class:`TableError` that names the file, the line (the header is line 1, as in an editor) and the column,
with a hint at the fix: a binary, empty, truncated or not comma-separated file, a missing or renamed
column, a value outside the contract, rows of several targets, a row pasted twice, or latencies that
cannot be milliseconds. Reading and writing tables is :mod:`hwprune.measure.table`'s job.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hwprune.contract import CONFIG_COLUMNS
from hwprune.measure.table_schema import DTYPES, EXTRA_COLUMNS, TABLE_COLUMNS

if TYPE_CHECKING:  # pandas is imported lazily: the measuring path must run where pandas is not installed
    import pandas as pd

__all__ = [
    "MAX_FLOPS_PER_S",
    "MAX_LATENCY_MS",
    "MAX_NEIGHBOUR_RATIO",
    "TableError",
    "read_text",
    "table_error",
    "validate_table",
]

_UNIT_HINTS = {"latency_us": "microseconds", "latency_s": "seconds", "latency": "an unknown unit"}


class TableError(ValueError):
    """A measurement table breaks the contract. The message names the file, the line and the column."""


def table_error(path: Path, line: int | str, column: str, msg: str) -> TableError:
    """The :class:`TableError` of one place in a table: ``{path}: line {line}, column `{column}`: {msg}``.

    Args:
        path: The table's file.
        line: The file's line (the header is line 1), or ``"?"`` when unknown.
        column: The column, or ``(header)``, ``(any)``, ``(all)``.
        msg: What is wrong, with a hint at the fix.

    Returns:
        The error (to ``raise``).

    Example:
        >>> str(table_error(Path("t.csv"), 3, "dtype", "`dtype` must be ..."))
        't.csv: line 3, column `dtype`: `dtype` must be ...'
    """
    return TableError(f"{path}: line {line}, column `{column}`: {msg}")


def validate_table(
    path: Path, text: str, *, allow_mixed_targets: bool = False, check_units: bool = True
) -> tuple[pd.DataFrame, pd.Series]:
    """Parse a table's text and check every record against the contract, converting its columns.

    Args:
        path: The table's file (named in the errors).
        text: Its text, from :func:`read_text`.
        allow_mixed_targets: Accept rows of more than one ``target``.
        check_units: Refuse latencies that cannot be milliseconds: faster than :data:`MAX_FLOPS_PER_S`
            could compute the layer, longer than :data:`MAX_LATENCY_MS`, or :data:`MAX_NEIGHBOUR_RATIO`
            times off their channel neighbours.

    Returns:
        ``(df, is_error)``: every row, error rows included, with :data:`CONFIG_COLUMNS` as int64 and the
        latencies as float64; and which rows recorded an ``error``.

    Raises:
        TableError: As listed in :func:`hwprune.measure.table.read_table`.
    """
    import pandas as pd

    df = _parse(path, text)
    _check_columns(path, df)
    # The file's line of DataFrame row i; blank lines are skipped by pandas, so count them back in.
    line_of = _line_numbers(text, len(df))
    err_col = df["error"] if "error" in df.columns else pd.Series([""] * len(df), index=df.index)
    is_err = err_col.str.strip() != ""
    _coerce_columns(path, df, line_of, is_err)
    if not allow_mixed_targets:
        _check_one_target(path, df, line_of)
    ok = ~is_err
    ok_lines = [line_of[i] for i in range(len(df)) if ok.iloc[i]]
    _check_duplicates(path, df[ok], ok_lines)
    if check_units:
        _check_units(path, df[ok], ok_lines)
    return df, is_err


def read_text(path: Path) -> str:
    """The file's text; refuses a binary, NUL-holding or empty file (a UTF-8 BOM is dropped).

    Raises:
        TableError: If the file is binary, not UTF-8, holds a NUL byte or is empty.
    """
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise table_error(
            path, line, "(any)", "not a CSV table: the file is binary or not UTF-8 text"
        ) from err
    if "\x00" in text:
        raise table_error(
            path, text[: text.index("\x00")].count("\n") + 1, "(any)", "not a CSV table: NUL byte"
        )
    text = text.removeprefix("\ufeff")  # a UTF-8 BOM (Excel's "CSV UTF-8") is not part of the header
    if not text.strip():
        raise table_error(
            path,
            1,
            "(header)",
            "the table is empty (no header, no rows): write it with `hwprune measure` or `import_table`, "
            "or check that the copy finished",
        )
    return text


def _parse(path: Path, text: str) -> pd.DataFrame:
    """The records as strings; refuses a file that is not comma-separated or whose records do not fit."""
    import pandas as pd

    first = text.splitlines()[0]
    if "," not in first:
        raise table_error(path, 1, "(header)", f"not a CSV table: {_delimiter_hint(first)}")
    _check_records(path, text)
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skip_blank_lines=True)
    except (pd.errors.ParserError, ValueError) as err:
        raise table_error(path, "?", "(any)", f"not a CSV table: {err}") from err
    return df


def _check_columns(path: Path, df: pd.DataFrame) -> None:
    """Refuse a table that lacks a required column, with a hint (another unit, a renamed column)."""
    missing = [c for c in TABLE_COLUMNS if c not in df.columns]
    if missing:
        hint = ""
        for col, unit in _UNIT_HINTS.items():
            if "latency_ms" in missing and col in df.columns:
                hint = f"; found `{col}` in {unit}: convert it to milliseconds as `latency_ms`"
        if not hint:
            extra = [str(c) for c in df.columns if c not in TABLE_COLUMNS and c not in EXTRA_COLUMNS]
            renames = []
            for col in missing:
                close = difflib.get_close_matches(col, extra, n=1, cutoff=0.5)
                if close:
                    renames.append(f"`{close[0]}` -> `{col}`")
            if renames:
                hint = f"; rename the file's column(s) {', '.join(renames)}"
        if not hint:
            hint = (
                "; a table needs every column of hwprune.measure.TABLE_COLUMNS: write it with "
                "`hwprune measure`, or map a foreign CSV with import_table(columns=..., defaults=...)"
            )
        raise table_error(path, 1, missing[0], f"missing required column(s) {missing}{hint}")


def _coerce_columns(path: Path, df: pd.DataFrame, line_of: list[int], is_err: pd.Series) -> None:
    """Check the dtype, config and latency columns of every row and convert them in place."""
    import pandas as pd

    for i, dt in enumerate(df["dtype"]):
        if dt not in DTYPES:
            raise table_error(path, line_of[i], "dtype", f"`dtype` must be one of {DTYPES}, got {dt!r}")
    for col in CONFIG_COLUMNS:
        num = pd.to_numeric(df[col], errors="coerce")
        for i, (s, v) in enumerate(zip(df[col], num, strict=True)):
            if not (isinstance(v, float | int) and math.isfinite(v) and float(v).is_integer() and v > 0):
                if col == "padding" and v == 0:
                    continue
                what = "a non-negative integer" if col == "padding" else "a positive integer"
                raise table_error(path, line_of[i], col, f"`{col}` must be {what}, got {s!r}")
        df[col] = num.astype("int64")
    for col, strict in (("latency_ms", True), ("latency_spread_ms", False)):
        num = pd.to_numeric(df[col], errors="coerce")
        for i, (s, v) in enumerate(zip(df[col], num, strict=True)):
            if is_err.iloc[i]:
                continue
            bad = not math.isfinite(v) or (v <= 0 if strict else v < 0)
            if bad:
                want = "a finite latency in ms > 0" if strict else "a finite spread in ms >= 0"
                raise table_error(path, line_of[i], col, f"`{col}` must be {want}, got {s!r}")
        df[col] = num.astype("float64")
    df["repeats"] = pd.to_numeric(df["repeats"], errors="coerce")


def _delimiter_hint(first: str) -> str:
    """Why a header line without commas is not a table, naming the separator it seems to use."""
    seps = {";": "semicolon", "\t": "tab", "|": "pipe"}
    used = max(seps, key=first.count)
    if first.count(used) >= 3:
        return (
            f"the header is {seps[used]}-separated, hwprune tables are comma-separated: re-save it with "
            f"commas (e.g. pandas.read_csv(path, sep={used!r}).to_csv(path, index=False))"
        )
    return f"the first line has no comma-separated header, got {first[:60]!r}"


def _check_records(path: Path, text: str) -> None:
    """Every record has as many fields as the header; a short last record means a truncated file."""
    if text.count('"') % 2:
        line = text[: text.rfind('"')].count("\n") + 1
        raise table_error(
            path,
            line,
            "(any)",
            "unterminated quoted field: the file looks truncated (a cut copy or a killed writer); "
            "delete the broken last line, or re-run `hwprune measure` on it, which repairs and resumes",
        )
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
        records = [(reader.line_num, row) for row in reader if row and any(c.strip() for c in row)]
    except csv.Error as err:  # pragma: no cover - the quote check above catches what csv refuses
        raise table_error(path, reader.line_num, "(any)", f"not a CSV table: {err}") from err
    n = len(header)
    for k, (line, row) in enumerate(records):
        if len(row) == n:
            continue
        if k == len(records) - 1 and len(row) < n and not text.endswith("\n"):
            raise table_error(
                path,
                line,
                header[len(row) - 1] if row else "(any)",
                f"the last line has {len(row)} of {n} fields and no line end: the file is truncated "
                "(a cut copy or a killed writer); delete that line, or re-run `hwprune measure` on the "
                "table, which cuts it and times the configuration again",
            )
        raise table_error(
            path,
            line,
            "(any)",
            f"the line has {len(row)} fields, the header has {n}: a stray or missing comma (quote text "
            "that holds commas), or rows pasted from another table",
        )


def _check_one_target(path: Path, df: pd.DataFrame, line_of: list[int]) -> None:
    """Refuse rows of more than one target (a predictor is fitted per target)."""
    targets = df["target"].unique()
    if len(targets) > 1:
        i = int((df["target"] != df["target"].iloc[0]).to_numpy().argmax())
        raise table_error(
            path,
            line_of[i],
            "target",
            f"rows from mixed targets {sorted(targets)}: the first row is {df['target'].iloc[0]!r}, "
            f"this one {df['target'].iloc[i]!r}; pass allow_mixed_targets=True to accept them",
        )


def _check_duplicates(path: Path, df: pd.DataFrame, lines: list[int]) -> None:
    """Refuse a row repeated verbatim (a table appended or pasted twice).

    Two timings of one configuration that differ (another run, another day) are measurements and stay:
    the predictor averages them. A row equal in every column, timestamp included, is a copy.
    """
    first: dict[tuple[Any, ...], int] = {}
    for i, k in enumerate(df.astype(str).itertuples(index=False, name=None)):
        if k in first:
            raise table_error(
                path,
                lines[i],
                "(all)",
                f"duplicate row: line {first[k]} holds the very same row (timestamp included); the table "
                "was appended or pasted twice? Drop the copies, e.g. df.drop_duplicates(), or re-measure "
                "into a fresh table",
            )
        first[k] = lines[i]


#: Plausibility bounds of a conv2d latency in ms. No chip computes faster than this many FLOP/s (an
#: H200's dense fp16 peak is about 1e15; the fastest row measured here reached 2.2e14).
MAX_FLOPS_PER_S = 5e15
#: One conv layer taking longer than an hour is a unit error, not a measurement.
MAX_LATENCY_MS = 3.6e6
#: Rows of one layer whose channel counts differ by at most 2x never differ by this factor in latency
#: (stairs are at most ~2x): a larger jump is a ms/µs mix-up inside the table.
MAX_NEIGHBOUR_RATIO = 100.0


def _conv_flops(df: pd.DataFrame) -> pd.Series:
    """Multiply-adds x 2 of each row's conv2d, from the config columns."""
    ho = (df["height"] + 2 * df["padding"] - df["kernel_size"]) // df["stride"] + 1
    wo = (df["width"] + 2 * df["padding"] - df["kernel_size"]) // df["stride"] + 1
    per_group = (df["in_channels"] // df["groups"]).clip(lower=1)
    return (
        2.0
        * df["batch"]
        * df["out_channels"]
        * per_group
        * df["kernel_size"] ** 2
        * ho.clip(lower=1)
        * wo.clip(lower=1)
    )


def _check_units(path: Path, df: pd.DataFrame, lines: list[int]) -> None:
    """Refuse latencies that cannot be milliseconds (absurd magnitudes, or a ms/µs mix inside a table).

    A whole table uniformly in µs on a slow device cannot be told from a slow device; only physically
    impossible values and mixes inside a table are caught.
    """
    if df.empty:
        return
    lat = df["latency_ms"].to_numpy(dtype=float)
    flops = _conv_flops(df).to_numpy(dtype=float)
    rate = flops / (lat * 1e-3)
    for i in range(len(df)):
        if rate[i] > MAX_FLOPS_PER_S:
            raise table_error(
                path,
                lines[i],
                "latency_ms",
                f"`latency_ms` must be in milliseconds, got {lat[i]:g}: {flops[i]:.3g} FLOPs in that time "
                f"is {rate[i] / 1e12:.3g} TFLOP/s, faster than any chip; was it measured in seconds? "
                "Convert with import_table(..., latency_scale=1000), or pass check_units=False",
            )
        if lat[i] > MAX_LATENCY_MS:
            raise table_error(
                path,
                lines[i],
                "latency_ms",
                f"`latency_ms` must be in milliseconds, got {lat[i]:g} (over an hour for one conv layer); "
                "was it measured in µs or ns? Convert with import_table(..., latency_scale=0.001), or pass "
                "check_units=False",
            )
    shape_cols = ["target", "dtype", "batch", "height", "width", "kernel_size", "stride", "padding"]
    work = df.assign(_lat=lat, _line=lines)
    for varying, fixed in (("out_channels", "in_channels"), ("in_channels", "out_channels")):
        for _, grp in work.groupby([*shape_cols, fixed], sort=False):
            if len(grp) < 2:
                continue
            g = grp.sort_values(varying)
            ch = g[varying].to_numpy(dtype=float)
            ms = g["_lat"].to_numpy(dtype=float)
            ln = g["_line"].to_numpy()
            for j in range(1, len(g)):
                ratio = max(ms[j], ms[j - 1]) / min(ms[j], ms[j - 1])
                if ch[j] <= 2 * ch[j - 1] and ratio > MAX_NEIGHBOUR_RATIO:
                    raise table_error(
                        path,
                        int(ln[j]),
                        "latency_ms",
                        f"`latency_ms` jumps {ratio:.0f}x between {varying}={int(ch[j - 1])} "
                        f"(line {int(ln[j - 1])}, {ms[j - 1]:g} ms) and {int(ch[j])} ({ms[j]:g} ms) of the "
                        "same layer: some rows look like µs (or s) mixed with ms; convert them to "
                        "milliseconds, or pass check_units=False",
                    )


def _line_numbers(text: str, n: int) -> list[int]:
    """File line (1-based) of each data record, skipping blank lines like pandas does."""
    lines: list[int] = []
    reader = csv.reader(io.StringIO(text))
    next(reader, None)
    for row in reader:
        if row and any(cell.strip() for cell in row):
            lines.append(reader.line_num)
    return (lines + [-1] * n)[:n]

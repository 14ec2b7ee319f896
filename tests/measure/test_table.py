"""read_table validation (every rejection of the contract) and TableWriter's append/repair behaviour."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from hwprune.measure import TABLE_COLUMNS, TableError, TableWriter, import_table, read_table
from hwprune.measure.table_schema import WRITE_COLUMNS


def _row(**over: object) -> dict[str, object]:
    row: dict[str, object] = {
        "target": "t",
        "backend": "torch_cpu",
        "device": "cpu",
        "dtype": "float32",
        "batch": 1,
        "in_channels": 8,
        "out_channels": 16,
        "height": 8,
        "width": 8,
        "kernel_size": 3,
        "stride": 1,
        "padding": 1,
        "groups": 1,
        "latency_ms": 0.5,
        "latency_spread_ms": 0.01,
        "repeats": 7,
        "timestamp": "2026-11-26T00:00:00+00:00",
    }
    row.update(over)
    return row


def _write(path: Path, rows: list[dict[str, object]], columns: tuple[str, ...] = WRITE_COLUMNS) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def test_valid_table_roundtrip(tmp_path: Path) -> None:
    p = _write(tmp_path / "ok.csv", [_row(out_channels=c, latency_ms=c / 10) for c in (4, 8, 16)])
    df = read_table(p)
    assert list(df.columns[: len(TABLE_COLUMNS)]) == list(TABLE_COLUMNS)
    assert df["out_channels"].tolist() == [4, 8, 16]
    assert str(df["in_channels"].dtype) == "int64"
    assert df["latency_ms"].tolist() == pytest.approx([0.4, 0.8, 1.6])


def test_missing_column_names_file_line_column(tmp_path: Path) -> None:
    cols = tuple(c for c in TABLE_COLUMNS if c != "groups")
    p = _write(tmp_path / "miss.csv", [_row()], cols)
    with pytest.raises(TableError, match=r"miss\.csv: line 1, column `groups`: missing required column"):
        read_table(p)


def test_latency_in_other_unit_gets_a_hint(tmp_path: Path) -> None:
    cols = tuple("latency_us" if c == "latency_ms" else c for c in TABLE_COLUMNS)
    p = _write(tmp_path / "us.csv", [{**_row(), "latency_us": 500}], cols)
    with pytest.raises(TableError, match=r"column `latency_ms`.*found `latency_us` in microseconds"):
        read_table(p)


@pytest.mark.parametrize("bad", ["nan", "", "0", "-1.5", "fast"])
def test_bad_latency_rejected(tmp_path: Path, bad: str) -> None:
    p = _write(tmp_path / "lat.csv", [_row(), _row(out_channels=12), _row(out_channels=4, latency_ms=bad)])
    with pytest.raises(
        TableError,
        match=r"lat\.csv: line 4, column `latency_ms`: `latency_ms` must be a finite "
        r"latency in ms > 0",
    ):
        read_table(p)


def test_negative_spread_rejected(tmp_path: Path) -> None:
    p = _write(tmp_path / "spr.csv", [_row(latency_spread_ms=-0.1)])
    with pytest.raises(TableError, match=r"line 2, column `latency_spread_ms`"):
        read_table(p)


@pytest.mark.parametrize(
    ("col", "bad"),
    [
        ("out_channels", "12.5"),
        ("in_channels", "abc"),
        ("out_channels", "0"),
        ("groups", "-2"),
        ("in_channels", ""),
    ],
)
def test_non_integer_channels_rejected(tmp_path: Path, col: str, bad: str) -> None:
    p = _write(tmp_path / "ch.csv", [_row(), _row(**{col: bad})])
    with pytest.raises(
        TableError, match=rf"ch\.csv: line 3, column `{col}`: `{col}` must be a positive integer"
    ):
        read_table(p)


def test_integral_float_channels_accepted(tmp_path: Path) -> None:
    p = _write(tmp_path / "f.csv", [_row(out_channels="16.0")])
    assert read_table(p)["out_channels"].tolist() == [16]


def test_mixed_targets_rejected_unless_asked(tmp_path: Path) -> None:
    p = _write(tmp_path / "mix.csv", [_row(), _row(out_channels=12), _row(target="other")])
    with pytest.raises(TableError, match=r"mix\.csv: line 4, column `target`: rows from mixed targets"):
        read_table(p)
    assert sorted(read_table(p, allow_mixed_targets=True)["target"].unique()) == ["other", "t"]


def test_binary_file_is_not_csv(tmp_path: Path) -> None:
    p = tmp_path / "table.csv"
    p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    with pytest.raises(TableError, match=r"table\.csv: line 1, column `\(any\)`: not a CSV table"):
        read_table(p)


def test_text_without_header_is_not_csv(tmp_path: Path) -> None:
    p = tmp_path / "notes.csv"
    p.write_text("this is a note\nnot a table\n")
    with pytest.raises(TableError, match=r"notes\.csv: line 1, column `\(header\)`: not a CSV table"):
        read_table(p)


def test_json_is_not_csv(tmp_path: Path) -> None:
    p = tmp_path / "t.json"
    p.write_text('{"latency_ms": 1.0, "target": "x"}\n')
    with pytest.raises(TableError, match=r"t\.json: line 1, column `target`: missing required column"):
        read_table(p)


def test_bad_dtype_rejected(tmp_path: Path) -> None:
    p = _write(tmp_path / "dt.csv", [_row(dtype="fp32")])
    with pytest.raises(TableError, match=r"line 2, column `dtype`: `dtype` must be one of"):
        read_table(p)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_table(tmp_path / "nope.csv")


def test_error_rows_dropped_by_default(tmp_path: Path) -> None:
    p = _write(
        tmp_path / "err.csv",
        [
            _row(),
            _row(out_channels=7, latency_ms="", latency_spread_ms="", repeats=0, error="RuntimeError: boom"),
        ],
    )
    df = read_table(p)
    assert df["out_channels"].tolist() == [16]
    assert not df["latency_ms"].isna().any()
    kept = read_table(p, keep_errors=True)
    assert kept["error"].tolist() == ["", "RuntimeError: boom"]
    assert kept["latency_ms"].isna().tolist() == [False, True]


def test_writer_cuts_half_written_line_and_keeps_rows(tmp_path: Path) -> None:
    p = tmp_path / "w.csv"
    with TableWriter(p) as w:
        for c in (4, 8):
            w.append(_row(out_channels=c))
    with open(p, "a") as fh:
        fh.write("t,torch_cpu,cpu,float32,1,8,1")  # a writer killed mid-row
    with TableWriter(p) as w:
        assert len(w.done) == 2
        w.append(_row(out_channels=12))
    assert read_table(p)["out_channels"].tolist() == [4, 8, 12]


def test_writer_refuses_other_header(tmp_path: Path) -> None:
    p = _write(tmp_path / "old.csv", [_row()], TABLE_COLUMNS)
    with pytest.raises(TableError, match=r"old\.csv: line 1, column \(header\): cannot append"):
        TableWriter(p)


def test_import_table_maps_units(tmp_path: Path) -> None:
    src = tmp_path / "foreign.csv"
    src.write_text("cin,cout,h,w,k,s,p,time_us\n16,32,14,14,3,1,1,250\n16,16,14,14,3,1,1,125\n")
    n = import_table(
        src,
        tmp_path / "imp.csv",
        target="board",
        device="mali",
        latency_scale=1e-3,
        columns={
            "in_channels": "cin",
            "out_channels": "cout",
            "height": "h",
            "width": "w",
            "kernel_size": "k",
            "stride": "s",
            "padding": "p",
            "latency_ms": "time_us",
        },
        defaults={"batch": 1, "groups": 1, "repeats": 1},
    )
    df = read_table(tmp_path / "imp.csv")
    assert n == 2
    assert df["latency_ms"].tolist() == pytest.approx([0.25, 0.125])
    assert set(df["backend"]) == {"imported"}


def test_configs_measured_twice_far_apart_are_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 18, item 9: 49 duplicate configs with 3x the latency were fitted with no warning."""
    import logging

    from hwprune.cli import main
    from hwprune.measure.table import warn_if_inconsistent

    rows = [_row(out_channels=c, latency_ms=0.1 * c) for c in range(8, 20)]
    again = [
        _row(out_channels=c, latency_ms=0.3 * c, timestamp="2026-11-27T00:00:00+00:00") for c in range(8, 15)
    ]
    path = _write(tmp_path / "t.csv", rows + again)
    df = read_table(path)
    with caplog.at_level(logging.WARNING, logger="hwprune.measure.table"):
        assert warn_if_inconsistent(df, "t.csv") == 7
    assert "7 of 7 configurations measured more than once have latencies more than 1.5x apart" in caplog.text
    assert warn_if_inconsistent(read_table(_write(tmp_path / "ok.csv", rows)), "ok.csv") == 0
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hwprune.measure.table"):
        assert (
            main(
                [
                    "fit",
                    str(path),
                    "--out",
                    str(tmp_path / "p.skops"),
                    "--cv-folds",
                    "0",
                    "--estimator",
                    "extra_trees",
                    "--transform",
                    "log",
                ]
            )
            == 0
        )
    assert "measured more than once" in caplog.text  # `hwprune fit` says so too


def test_validation_is_its_own_module_and_keeps_error_rows_for_the_reader(tmp_path: Path) -> None:
    """table_checks validates text (error rows flagged, not dropped); table reads and raises its error."""
    from hwprune.measure import table, table_checks

    assert table.TableError is table_checks.TableError
    p = _write(
        tmp_path / "t.csv",
        [_row(out_channels=4), {**_row(out_channels=8), "latency_ms": "", "error": "RuntimeError: boom"}],
    )
    df, is_err = table_checks.validate_table(p, table_checks.read_text(p))
    assert df["out_channels"].tolist() == [4, 8] and is_err.tolist() == [False, True]
    mixed = _write(tmp_path / "m.csv", [_row(), _row(target="u", out_channels=8)])
    with pytest.raises(table_checks.TableError, match=r"m\.csv: line 3, column `target`: rows from mixed"):
        table_checks.validate_table(mixed, table_checks.read_text(mixed))
    df, _ = table_checks.validate_table(mixed, table_checks.read_text(mixed), allow_mixed_targets=True)
    assert sorted(df["target"]) == ["t", "u"]

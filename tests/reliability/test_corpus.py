"""The corpus of bad inputs: every one must get a clear error that names what is wrong and how to fix it.

Each :class:`Case` is one distinct bad input: a broken measurement table, a tampered or mismatched
predictor file, a wrong config, an unfit model, or a missing piece of the environment. A case passes when
the documented exception type comes out *and* its message matches a pattern that names the problem (and,
where there is one, the fix). A bare library traceback or a silently wrong result fails it.
``benchmarks/reliability.py`` runs this file and counts the answers for ``docs/RELIABILITY.md``.
"""

from __future__ import annotations

import csv
import io
import os
import pickle
import socket
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hydra.errors import MissingConfigException
from lightning_fabric.utilities.exceptions import MisconfigurationException
from torch import nn

from hwprune.measure import TableError, TableWriter, import_table, read_table
from hwprune.models import build_model
from hwprune.predict import LatencyPredictor, PredictorFileError
from hwprune.predict import io as pio

REPO = Path(__file__).resolve().parents[2]
#: A real measurement table of the default model on this machine's CPU (538 rows).
REAL_TABLE = REPO / "tables" / "cpu_torch" / "small_resnet_28.csv"
#: A real cuDNN table: its large layers make a seconds-for-ms mix-up physically impossible.
REAL_GPU_TABLE = REPO / "tables" / "cuda_cudnn_fp32" / "resnet18_224.csv"


def table_rows(path: Path = REAL_TABLE, n: int | None = 40) -> tuple[list[str], list[list[str]]]:
    """Header and the first ``n`` rows of a real table."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = [row for _, row in zip(range(n) if n else iter(int, 1), reader, strict=False)]
    return header, rows


def to_csv(header: list[str], rows: list[list[str]], sep: str = ",") -> str:
    """Rows back to CSV text, quoting as :class:`hwprune.measure.TableWriter` does."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n", delimiter=sep)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


class Ctx:
    """What a case may use: a private folder, the Hydra composer and (lazily) the real predictor."""

    def __init__(self, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        self.tmp = tmp_path
        self._request = request

    def fixture(self, name: str) -> Any:
        return self._request.getfixturevalue(name)

    def write(self, name: str, data: str | bytes) -> Path:
        p = self.tmp / name
        if isinstance(data, bytes):
            p.write_bytes(data)
        else:
            p.write_text(data, encoding="utf-8")
        return p


@dataclass(frozen=True)
class Case:
    """One bad input.

    Attributes:
        id: Short name (the pytest id).
        category: tables, predictor files, configs, models or environment.
        run: Feeds the bad input to hwprune; must raise ``error`` (or warn, for a Warning type).
        error: The documented exception (or warning) type.
        match: Regex the message must match: what is wrong, and the fix where there is one.
    """

    id: str
    category: str
    run: Callable[[Ctx], Any]
    error: type[BaseException]
    match: str


# ----------------------------------------------------------------------------------------------- tables
_H, _R = table_rows()
_COL = {c: i for i, c in enumerate(_H)}


def _rows_with(**cells: str) -> list[list[str]]:
    """The real rows with the 6th row's cells replaced."""
    rows = [list(r) for r in _R]
    for col, value in cells.items():
        rows[5][_COL[col]] = value
    return rows


def _table(text: str | bytes) -> Callable[[Ctx], Any]:
    return lambda ctx: read_table(ctx.write("t.csv", text))


def _valid_text() -> str:
    return to_csv(_H, _R)


def _truncated_mid_row() -> str:
    text = _valid_text()
    return text[: text.rindex("\n", 0, len(text) - 1) + 40]


def _truncated_in_quote() -> str:
    text = _valid_text()
    last = text.rindex("\n", 0, len(text) - 1) + 1
    return text[: text.index('"{', last) + 8]


def _renamed(old: str, new: str) -> str:
    return to_csv([new if c == old else c for c in _H], _R)


def _dropped(col: str) -> str:
    i = _COL[col]
    return to_csv([c for c in _H if c != col], [[v for j, v in enumerate(r) if j != i] for r in _R])


def _mixed_units() -> str:
    """Rows of one layer, half of them in µs written as ms (an import appended to a measured table)."""
    lay = _R[0]
    key = [c for c in ("height", "width", "kernel_size", "stride", "padding", "in_channels")]
    same = [r for r in table_rows(n=None)[1] if all(r[_COL[k]] == lay[_COL[k]] for k in key)]
    same.sort(key=lambda r: int(r[_COL["out_channels"]]))
    out = []
    for j, r in enumerate(same[:8]):
        r = list(r)
        if j >= 4:
            r[_COL["latency_ms"]] = f"{float(r[_COL['latency_ms']]) * 1000:g}"
        out.append(r)
    return to_csv(_H, out)


def _seconds_as_ms() -> str:
    """The real cuDNN table's fastest row (in FLOP/s) with its latency written in seconds."""
    h, rows = table_rows(REAL_GPU_TABLE, n=None)
    col = {c: i for i, c in enumerate(h)}

    def rate(r: list[str]) -> float:
        c = {k: int(r[col[k]]) for k in ("batch", "in_channels", "out_channels", "height", "width")}
        k, st, p, g = (int(r[col[x]]) for x in ("kernel_size", "stride", "padding", "groups"))
        out = ((c["height"] + 2 * p - k) // st + 1) * ((c["width"] + 2 * p - k) // st + 1)
        return (
            2
            * c["batch"]
            * c["out_channels"]
            * c["in_channels"]
            // g
            * k
            * k
            * out
            / float(r[col["latency_ms"]])
        )

    fast = list(max(rows, key=rate))
    fast[col["latency_ms"]] = f"{float(fast[col['latency_ms']]) / 1000:g}"
    return to_csv(h, rows[:5] + [fast])


def _garbage(n: int = 512, seed: int = 7) -> bytes:
    return bytes(np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8))


def _writer_other_header(ctx: Ctx) -> Any:
    p = ctx.write("other.csv", "a,b,c\n1,2,3\n")
    return TableWriter(p)


def _import(ctx: Ctx, **kw: Any) -> Any:
    src = ctx.write("foreign.csv", "in_c,out_c,time_us\n8,16,120\n")
    return import_table(src, ctx.tmp / "out.csv", target="board", device="b", **kw)


TABLES = [
    Case(
        "truncated_mid_row",
        "tables",
        _table(_truncated_mid_row()),
        TableError,
        r"line 41, column `\w+`: the last line has \d+ of 21 fields and no line end: the file is "
        r"truncated.*delete that line, or re-run `hwprune measure`",
    ),
    Case(
        "truncated_in_quoted_field",
        "tables",
        _table(_truncated_in_quote()),
        TableError,
        r"line 41.*unterminated quoted field: the file looks truncated.*delete the broken last line",
    ),
    Case(
        "semicolon_delimiter",
        "tables",
        _table(to_csv(_H, _R, sep=";")),
        TableError,
        r"line 1, column `\(header\)`: not a CSV table: the header is semicolon-separated, hwprune "
        r"tables are comma-separated: re-save it with commas",
    ),
    Case(
        "tab_delimiter",
        "tables",
        _table(to_csv(_H, _R, sep="\t")),
        TableError,
        r"the header is tab-separated.*re-save it with commas",
    ),
    Case(
        "missing_column",
        "tables",
        _table(_dropped("groups")),
        TableError,
        r"line 1, column `groups`: missing required column\(s\) \['groups'\].*TABLE_COLUMNS.*import_table",
    ),
    Case(
        "renamed_column",
        "tables",
        _table(_renamed("in_channels", "in_c")),
        TableError,
        r"column `in_channels`: missing required column\(s\) \['in_channels'\]; rename the file's "
        r"column\(s\) `in_c` -> `in_channels`",
    ),
    Case(
        "latency_in_us_column",
        "tables",
        _table(_renamed("latency_ms", "latency_us")),
        TableError,
        r"column `latency_ms`.*found `latency_us` in microseconds: convert it to milliseconds",
    ),
    Case(
        "latency_nan",
        "tables",
        _table(to_csv(_H, _rows_with(latency_ms="nan"))),
        TableError,
        r"line 7, column `latency_ms`: `latency_ms` must be a finite latency in ms > 0, got 'nan'",
    ),
    Case(
        "latency_negative",
        "tables",
        _table(to_csv(_H, _rows_with(latency_ms="-0.05"))),
        TableError,
        r"line 7, column `latency_ms`: `latency_ms` must be a finite latency in ms > 0, got '-0.05'",
    ),
    Case(
        "latency_zero",
        "tables",
        _table(to_csv(_H, _rows_with(latency_ms="0"))),
        TableError,
        r"line 7, column `latency_ms`: `latency_ms` must be a finite latency in ms > 0, got '0'",
    ),
    Case(
        "latency_inf",
        "tables",
        _table(to_csv(_H, _rows_with(latency_ms="inf"))),
        TableError,
        r"`latency_ms` must be a finite latency in ms > 0, got 'inf'",
    ),
    Case(
        "latency_text",
        "tables",
        _table(to_csv(_H, _rows_with(latency_ms="fast"))),
        TableError,
        r"`latency_ms` must be a finite latency in ms > 0, got 'fast'",
    ),
    Case(
        "spread_negative",
        "tables",
        _table(to_csv(_H, _rows_with(latency_spread_ms="-1"))),
        TableError,
        r"line 7, column `latency_spread_ms`: `latency_spread_ms` must be a finite spread in ms >= 0",
    ),
    Case(
        "duplicate_row",
        "tables",
        _table(to_csv(_H, _R[:10] + [_R[3]] + _R[10:])),
        TableError,
        r"line 12, column `\(all\)`: duplicate row: line 5 holds the very same row.*appended or pasted "
        r"twice\? Drop the copies",
    ),
    Case(
        "mixed_targets",
        "tables",
        _table(to_csv(_H, _rows_with(target="jetson_nano_cudnn"))),
        TableError,
        r"line 7, column `target`: rows from mixed targets.*pass allow_mixed_targets=True",
    ),
    Case(
        "ms_and_us_mixed",
        "tables",
        _table(_mixed_units()),
        TableError,
        r"`latency_ms` jumps \d+x between out_channels=\d+ \(line \d+.*look like µs \(or s\) mixed with ms",
    ),
    Case(
        "seconds_as_ms",
        "tables",
        _table(_seconds_as_ms()),
        TableError,
        r"line 7, column `latency_ms`: `latency_ms` must be in milliseconds.*TFLOP/s, faster than any "
        r"chip; was it measured in seconds\? Convert with import_table\(\.\.\., latency_scale=1000\)",
    ),
    Case(
        "ns_as_ms",
        "tables",
        _table(to_csv(_H, _rows_with(latency_ms="48699000"))),
        TableError,
        r"line 7.*over an hour for one conv layer\); was it measured in µs or ns\?",
    ),
    Case(
        "empty_file",
        "tables",
        _table(""),
        TableError,
        r"line 1, column `\(header\)`: the table is empty \(no header, no rows\): write it with "
        r"`hwprune measure`",
    ),
    Case("blank_lines_only", "tables", _table("\n \n\t\n"), TableError, r"the table is empty"),
    Case(
        "binary_png",
        "tables",
        _table(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + _garbage(64)),
        TableError,
        r"not a CSV table: the file is binary or not UTF-8 text",
    ),
    Case("random_bytes", "tables", _table(_garbage()), TableError, r"not a CSV table"),
    Case(
        "nul_bytes",
        "tables",
        _table(_valid_text()[:300] + "\x00\x00" + _valid_text()[300:]),
        TableError,
        r"line 2, column `\(any\)`: not a CSV table: NUL byte",
    ),
    Case(
        "latin1_text",
        "tables",
        _table(_valid_text().replace("Processor", "Prozessor \xb5").encode("latin-1")),
        TableError,
        r"line 2, column `\(any\)`: not a CSV table: the file is binary or not UTF-8 text",
    ),
    Case(
        "stray_comma",
        "tables",
        _table(
            to_csv(_H, _R[:5] + _rows_with(device="Xeon, 2 cores")[5:6] + _R[6:]).replace(
                '"Xeon, 2 cores"', "Xeon, 2 cores"
            )
        ),
        TableError,
        r"line 7, column `\(any\)`: the line has 22 fields, the header has 21: a stray or "
        r"missing comma",
    ),
    Case(
        "dtype_unknown",
        "tables",
        _table(to_csv(_H, _rows_with(dtype="fp32"))),
        TableError,
        r"line 7, column `dtype`: `dtype` must be one of \('float32', 'float16', 'tf32'\), got 'fp32'",
    ),
    Case(
        "channels_fraction",
        "tables",
        _table(to_csv(_H, _rows_with(out_channels="12.5"))),
        TableError,
        r"line 7, column `out_channels`: `out_channels` must be a positive integer, got '12.5'",
    ),
    Case(
        "channels_zero",
        "tables",
        _table(to_csv(_H, _rows_with(in_channels="0"))),
        TableError,
        r"`in_channels` must be a positive integer, got '0'",
    ),
    Case(
        "padding_negative",
        "tables",
        _table(to_csv(_H, _rows_with(padding="-1"))),
        TableError,
        r"`padding` must be a non-negative integer, got '-1'",
    ),
    Case(
        "json_not_csv",
        "tables",
        _table('{"latency_ms": 1.0, "target": "x"}\n'),
        TableError,
        r"missing required column",
    ),
    Case(
        "table_missing",
        "tables",
        lambda ctx: read_table(ctx.tmp / "nope.csv"),
        FileNotFoundError,
        r"measurement table .*nope\.csv does not exist",
    ),
    Case(
        "append_to_foreign_header",
        "tables",
        _writer_other_header,
        TableError,
        r"cannot append, the header is \['a', 'b', 'c'\].*write to a new file",
    ),
    Case(
        "import_scale_zero",
        "tables",
        partial(_import, latency_scale=0),
        ValueError,
        r"`latency_scale` must be > 0, got 0",
    ),
    Case(
        "import_unmapped_column",
        "tables",
        partial(_import, columns={"latency_ms": "time_us"}),
        TableError,
        r"column `batch`: not in the file, not mapped, no default: map it with "
        r"columns=\{'batch': \.\.\.\} or give defaults=\{'batch': \.\.\.\}",
    ),
]


# ---------------------------------------------------------------------------------------- predictor files
class _Boom:
    """Creates a marker file if anything ever reconstructs it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def _payload(ctx: Ctx, **over: Any) -> dict[str, Any]:
    fitted = ctx.fixture("fitted_predictor")
    meta = {**fitted.metadata(), **over.pop("meta", {})}
    return {
        "format": pio.FILE_FORMAT,
        "format_version": pio.FILE_FORMAT_VERSION,
        "meta": meta,
        "estimator": fitted.estimator_,
        **over,
    }


def _load_written(ctx: Ctx, payload: dict[str, Any], **kw: Any) -> Any:
    path = pio.write_file(payload, ctx.tmp / "p.skops")
    return LatencyPredictor.load(path, **kw)


def _load_bytes(data: bytes) -> Callable[[Ctx], Any]:
    return lambda ctx: LatencyPredictor.load(ctx.write("p.skops", data))


def _truncated_predictor(ctx: Ctx) -> Any:
    data = ctx.fixture("predictor_file").read_bytes()
    return LatencyPredictor.load(ctx.write("p.skops", data[: len(data) * 2 // 3]))


def _no_code_ran(run: Callable[[Ctx, Path], Any]) -> Callable[[Ctx], Any]:
    """Run a malicious-file case, then check the payload never executed (re-raising the load error)."""

    def wrapped(ctx: Ctx) -> Any:
        marker = ctx.tmp / "pwned"
        try:
            return run(ctx, marker)
        finally:
            assert not marker.exists(), "a predictor file ran code on load"

    return wrapped


def _pickle_file(ctx: Ctx, marker: Path) -> Any:
    return LatencyPredictor.load(ctx.write("p.skops", pickle.dumps(_Boom(str(marker)))))


def _pickle_in_zip(ctx: Ctx, marker: Path) -> Any:
    path = ctx.tmp / "p.skops"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(
            "schema.json", '{"__class__": "dict", "__module__": "builtins", "__loader__": "DictNode"}'
        )
        zf.writestr("payload.pkl", pickle.dumps(_Boom(str(marker))))
    return LatencyPredictor.load(path)


def _untrusted_object(ctx: Ctx, marker: Path) -> Any:
    import skops.io as sio

    path = ctx.tmp / "p.skops"
    sio.dump(_payload(ctx, extra=_Boom(str(marker))), path)
    return LatencyPredictor.load(path)


def _untrusted_function(ctx: Ctx, marker: Path) -> Any:
    import skops.io as sio

    path = ctx.tmp / "p.skops"
    sio.dump(_payload(ctx, hook=os.system), path)
    return LatencyPredictor.load(path)


def _other_estimator(ctx: Ctx) -> Any:
    from sklearn.linear_model import LinearRegression

    return _load_written(ctx, _payload(ctx, estimator=LinearRegression()))


def _not_a_predictor(ctx: Ctx) -> Any:
    import skops.io as sio

    path = ctx.tmp / "p.skops"
    sio.dump({"hello": 1}, path)
    return LatencyPredictor.load(path)


def _zip_without_schema(ctx: Ctx) -> Any:
    path = ctx.tmp / "p.skops"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "not a predictor")
    return LatencyPredictor.load(path)


def _incomplete_meta(ctx: Ctx) -> Any:
    payload = _payload(ctx)
    del payload["meta"]["params"]
    return _load_written(ctx, payload)


PREDICTOR_FILES = [
    Case(
        "truncated",
        "predictor files",
        _truncated_predictor,
        PredictorFileError,
        r"is not a predictor file: not a skops zip archive \(a truncated or partial copy, or a pickle",
    ),
    Case(
        "wrong_target",
        "predictor files",
        lambda ctx: LatencyPredictor.load(ctx.fixture("predictor_file"), expected_target="jetson_nano_cudnn"),
        PredictorFileError,
        r"was fitted for target 'cpu_torch', but target 'jetson_nano_cudnn' is "
        r"expected: a predictor is only valid on the device and backend it was measured on",
    ),
    Case(
        "wrong_schema_expected",
        "predictor files",
        lambda ctx: LatencyPredictor.load(ctx.fixture("predictor_file"), expected_schema=99),
        PredictorFileError,
        r"uses feature schema 1, but schema 99 is expected; refit it with `hwprune fit`",
    ),
    Case(
        "old_schema_in_file",
        "predictor files",
        lambda ctx: _load_written(ctx, _payload(ctx, meta={"feature_schema": 0}), expected_schema=None),
        PredictorFileError,
        r"uses feature schema 0; this hwprune computes schema 1.*refit it",
    ),
    Case(
        "other_sklearn_version",
        "predictor files",
        lambda ctx: _load_written(ctx, _payload(ctx, meta={"sklearn_version": "1.2.0"})),
        PredictorFileError,
        r"was written with scikit-learn 1\.2\.0, this is .*refit it with `hwprune fit",
    ),
    Case(
        "future_file_format",
        "predictor files",
        lambda ctx: _load_written(ctx, _payload(ctx, format_version=2)),
        PredictorFileError,
        r"has predictor file format 2, this hwprune reads 1; refit it",
    ),
    Case(
        "pickle_payload",
        "predictor files",
        _no_code_ran(_pickle_file),
        PredictorFileError,
        r"not a skops zip archive.*pickle and joblib files are refused because loading them can run",
    ),
    Case(
        "pickle_inside_zip",
        "predictor files",
        _no_code_ran(_pickle_in_zip),
        PredictorFileError,
        r"is not a valid predictor file \(truncated or corrupt\?\)",
    ),
    Case(
        "untrusted_object",
        "predictor files",
        _no_code_ran(_untrusted_object),
        PredictorFileError,
        r"holds types that are not on hwprune's allow-list and could run code on load: .*refusing",
    ),
    Case(
        "untrusted_function",
        "predictor files",
        _no_code_ran(_untrusted_function),
        PredictorFileError,
        r"not on hwprune's allow-list.*system",
    ),
    Case(
        "other_estimator",
        "predictor files",
        _other_estimator,
        PredictorFileError,
        r"holds a LinearRegression, not a hwprune regressor",
    ),
    Case(
        "skops_but_not_predictor",
        "predictor files",
        _not_a_predictor,
        PredictorFileError,
        r"is a skops file but not a hwprune latency predictor",
    ),
    Case(
        "zip_without_schema",
        "predictor files",
        _zip_without_schema,
        PredictorFileError,
        r"is not a valid predictor file \(truncated or corrupt\?\)",
    ),
    Case(
        "incomplete_metadata",
        "predictor files",
        _incomplete_meta,
        PredictorFileError,
        r"has incomplete metadata: KeyError\('params'\)",
    ),
    Case(
        "empty_predictor_file",
        "predictor files",
        _load_bytes(b""),
        PredictorFileError,
        r"not a skops zip archive",
    ),
    Case(
        "random_bytes_predictor",
        "predictor files",
        _load_bytes(_garbage(2048, seed=3)),
        PredictorFileError,
        r"not a skops zip archive",
    ),
    Case(
        "predictor_missing",
        "predictor files",
        lambda ctx: LatencyPredictor.load(ctx.tmp / "nope.skops"),
        FileNotFoundError,
        r"predictor file .*nope\.skops does not exist",
    ),
]


# ------------------------------------------------------------------------------------------------ configs
def _train(*overrides: str) -> Callable[[Ctx], Any]:
    def run(ctx: Ctx) -> Any:
        from hwprune.run import train

        cfg = ctx.fixture("compose_cfg")(*overrides)
        return train(cfg)

    return run


_HW = "pruning.callbacks.hw_aware"


def _unreachable_budget(ctx: Ctx) -> Any:
    """A latency_ms below what the smallest friendly model can reach, in a real (tiny) fit."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, TensorDataset

    from hwprune.callbacks import HardwareAwarePruning
    from hwprune.models import build_model
    from hwprune.module import ClassificationModule

    shape = (1, 1, 28, 28)
    module = ClassificationModule(build_model("small_resnet"), partial(torch.optim.SGD, lr=0.05))
    data = DataLoader(TensorDataset(torch.randn(8, *shape[1:]), torch.randint(0, 10, (8,))), batch_size=8)
    cb = HardwareAwarePruning(
        ctx.fixture("fitted_predictor"),
        shape,
        latency_ms=1e-4,
        start_epoch=0,
        num_steps=1,
        verify=False,
        export=None,
    )
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        callbacks=[cb],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=ctx.tmp,
    )
    return trainer.fit(module, data, data)


CONFIGS = [
    Case(
        "unknown_device",
        "configs",
        _train("device=jetson_nano2"),
        MissingConfigException,
        r"(?s)Could not find 'device/jetson_nano2'.*Available options in 'device':.*jetson_nano_cudnn",
    ),
    Case(
        "unknown_backend",
        "configs",
        _train("pruning=hw_aware", "device.backend=openvino"),
        ValueError,
        r"in config `pruning\.callbacks\.hw_aware`: `backend` must be one of \('torch_cpu', 'cudnn', "
        r"'tvm', 'acl', 'imported'\), got 'openvino'",
    ),
    Case(
        "unknown_model",
        "configs",
        _train("model.name=resnet9"),
        ValueError,
        r"in config `model`: `name` must be one of \('small_resnet', .*\), got 'resnet9'",
    ),
    Case(
        "unknown_importance",
        "configs",
        _train("pruning=hw_aware", f"{_HW}.importance=random"),
        ValueError,
        r"`importance` must be any of \('l1', 'l2', 'bn_scale', 'taylor'\), got 'random'",
    ),
    Case(
        "both_budgets",
        "configs",
        _train("pruning=hw_aware", f"{_HW}.latency_ms=1.0"),
        ValueError,
        r"exactly one of `latency_ratio` and `latency_ms` must be given, got latency_ratio=0\.5, "
        r"latency_ms=1\.0",
    ),
    Case(
        "no_budget",
        "configs",
        _train("pruning=hw_aware", f"{_HW}.latency_ratio=null"),
        ValueError,
        r"exactly one of `latency_ratio` and `latency_ms` must be given, got latency_ratio=None, "
        r"latency_ms=None",
    ),
    Case(
        "ratio_above_one",
        "configs",
        _train("pruning=hw_aware", f"{_HW}.latency_ratio=1.5"),
        ValueError,
        r"`latency_ratio` must be a fraction in \(0, 1\), got 1\.5",
    ),
    Case(
        "ratio_zero",
        "configs",
        _train("pruning=hw_aware", f"{_HW}.latency_ratio=0"),
        ValueError,
        r"`latency_ratio` must be a fraction in \(0, 1\), got 0",
    ),
    Case(
        "ratio_negative",
        "configs",
        _train("pruning=hw_aware", f"{_HW}.latency_ratio=-0.3"),
        ValueError,
        r"`latency_ratio` must be a fraction in \(0, 1\), got -0\.3",
    ),
    Case(
        "latency_ms_negative",
        "configs",
        _train("pruning=hw_aware", f"{_HW}.latency_ratio=null", f"{_HW}.latency_ms=-2"),
        ValueError,
        r"`latency_ms` must be a latency in ms \(> 0\), got -2",
    ),
    Case(
        "num_steps_zero",
        "configs",
        _train("pruning=hw_aware", f"{_HW}.num_steps=0"),
        ValueError,
        r"`num_steps` must be an int >= 1, got 0",
    ),
    Case(
        "snap_unknown",
        "configs",
        _train("pruning=hw_aware", f"{_HW}.snap=sideways"),
        ValueError,
        r"`snap` must be any of \('up', 'down', 'nearest', None\), got 'sideways'",
    ),
    Case(
        "batch_size_zero",
        "configs",
        _train("data.datamodule.batch_size=0"),
        ValueError,
        r"in config `data\.datamodule`: `batch_size` must be a positive int, got 0",
    ),
    Case(
        "max_epochs_negative",
        "configs",
        _train("trainer.max_epochs=-2"),
        MisconfigurationException,
        r"in config `trainer`: `max_epochs` must be a non-negative integer or -1\. You passed in -2",
    ),
    Case(
        "latency_ms_unreachable",
        "configs",
        _unreachable_budget,
        ValueError,
        r"`latency_ms` must be reachable: the smallest model the schedule may build .* predicts "
        r"[\d.]+ ms on target 'cpu_torch', got 0\.0001",
    ),
]


# ------------------------------------------------------------------------------------------------- models
class _HandConv(nn.Module):
    """A custom layer with its own weight, which hwprune cannot describe as a table row."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c, c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(x, self.weight)


def _space(model: nn.Module, shape: tuple[int, ...]) -> Callable[[Ctx], Any]:
    from hwprune.measure import model_space

    return lambda ctx: model_space(model, shape, step=4)


def _custom_layers(ctx: Ctx) -> Any:
    from hwprune.contract import conv_layer_configs

    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), _HandConv(8), nn.Conv2d(8, 8, (3, 1)), nn.Conv2d(8, 8, 3, dilation=2)
    )
    layers = conv_layer_configs(model, (1, 1, 16, 16))
    assert [la.name for la in layers] == ["0"]  # the supported conv is still described, the rest skipped
    return layers


def _build(**kw: Any) -> Callable[[Ctx], Any]:
    return lambda ctx: build_model(**kw)


MODELS = [
    Case(
        "no_conv_layers",
        "models",
        _space(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), (1, 1, 28, 28)),
        ValueError,
        r"model Sequential has no nn\.Conv2d layer to prune or measure: hwprune prunes the "
        r"channels of square, dilation-1 nn\.Conv2d layers",
    ),
    Case(
        "only_unsupported_convs",
        "models",
        _space(nn.Sequential(nn.Conv2d(1, 4, (1, 7))), (1, 1, 28, 28)),
        ValueError,
        r"has no nn\.Conv2d layer to prune or measure; unsupported: `0` \(kernel \(1, 7\)",
    ),
    Case(
        "custom_layers_skipped",
        "models",
        _custom_layers,
        UserWarning,
        r"3 layer\(s\) of Sequential are skipped \(their latency is not predicted and not measured\): "
        r"`1` \(_HandConv: a custom layer with its own parameters\), `2` \(kernel \(3, 1\).*`3` .*dilation "
        r"\(2, 2\)",
    ),
    Case(
        "input_wrong_channels",
        "models",
        lambda ctx: _space(build_model("small_resnet"), (1, 3, 28, 28))(ctx),
        ValueError,
        r"`input_shape` \(1, 3, 28, 28\) does not fit model SmallResNet \(its first conv takes 1 "
        r"channels\).*pass the \(batch, channels, height, width\) the model is trained on",
    ),
    Case(
        "input_too_small",
        "models",
        _space(nn.Sequential(nn.Conv2d(1, 4, 5)), (1, 1, 3, 3)),
        ValueError,
        r"`input_shape` \(1, 1, 3, 3\) does not fit model Sequential.*Kernel size can't be greater",
    ),
    Case(
        "input_not_4d",
        "models",
        _space(nn.Sequential(nn.Conv2d(1, 4, 3)), (1, 28, 28)),
        ValueError,
        r"`input_shape` must be 4 positive ints \(batch, channels, height, width\), got \(1, 28, 28\)",
    ),
    Case(
        "input_size_too_small",
        "models",
        _build(name="small_resnet", input_size=4),
        ValueError,
        r"`input_size` must be an int >= 8, got 4",
    ),
    Case(
        "in_channels_unsupported",
        "models",
        _build(name="resnet18", in_channels=4),
        ValueError,
        r"`in_channels` must be 1 or 3, got 4",
    ),
]


# -------------------------------------------------------------------------------------------- environment
def _conv() -> dict[str, int]:
    return dict(
        batch=1,
        in_channels=4,
        out_channels=4,
        height=8,
        width=8,
        kernel_size=3,
        stride=1,
        padding=1,
        groups=1,
    )


def _tvm_unreachable(ctx: Ctx) -> Any:
    pytest.importorskip("tvm")
    from hwprune.measure import Target, measure

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here
    tgt = Target(name="board", backend="tvm", options={"rpc": {"host": "127.0.0.1", "port": port}})
    return measure(tgt, [_conv()], ctx.tmp / "t.csv", progress=False)


def _acl_without_pyarmnn(ctx: Ctx) -> Any:
    from hwprune.measure import Target, measure

    tgt = Target(name="board", backend="acl", options={"python": sys.executable})  # the venv has no pyarmnn
    return measure(tgt, [_conv()], ctx.tmp / "a.csv", progress=False)


def _acl_no_interpreter(ctx: Ctx) -> Any:
    from hwprune.measure import Target, measure

    tgt = Target(name="board", backend="acl", options={"python": str(ctx.tmp / "no-python3")})
    return measure(tgt, [_conv()], ctx.tmp / "a.csv", progress=False)


def _no_cuda(ctx: Ctx) -> Any:
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: the no-CUDA error cannot happen here")
    from hwprune.measure import measure

    return measure("cuda_cudnn_fp32", [_conv()], ctx.tmp / "c.csv", progress=False)


def _no_apt_data(ctx: Ctx) -> Any:
    from hwprune.data import FashionMNISTDataModule

    dm = FashionMNISTDataModule(data_dir=ctx.tmp / "cache", source_dir=ctx.tmp / "no-apt")
    return dm.prepare_data()


def _unknown_target_name(ctx: Ctx) -> Any:
    from hwprune.measure import load_target

    return load_target("jetson_nano")


ENVIRONMENT = [
    Case(
        "tvm_rpc_unreachable",
        "environment",
        _tvm_unreachable,
        RuntimeError,
        r"TVM RPC server at 127\.0\.0\.1:\d+ is unreachable .*start it on the board with `python -m "
        r"tvm\.exec\.rpc_server",
    ),
    Case(
        "pyarmnn_missing",
        "environment",
        _acl_without_pyarmnn,
        RuntimeError,
        r"backend 'acl' needs PyArmNN, but .*import pyarmnn'` fails.*apt-get install python3-pyarmnn",
    ),
    Case(
        "armnn_interpreter_missing",
        "environment",
        _acl_no_interpreter,
        RuntimeError,
        r"backend 'acl' needs PyArmNN.*no-python3.*`options\.python`",
    ),
    Case(
        "no_cuda",
        "environment",
        _no_cuda,
        RuntimeError,
        r"backend 'cudnn' needs a CUDA GPU, but torch\.cuda\.is_available\(\) is False.*choose a CPU "
        r"target such as `device=cpu_torch`",
    ),
    Case(
        "no_apt_data",
        "environment",
        _no_apt_data,
        FileNotFoundError,
        r"Fashion-MNIST files not found: looked in .*no-apt.*apt-get install dataset-fashion-mnist",
    ),
    Case(
        "unknown_target_name",
        "environment",
        _unknown_target_name,
        ValueError,
        r"`target` must be a YAML file or one of \[.*'jetson_nano_cudnn'.*\], got 'jetson_nano'",
    ),
]

CORPUS: list[Case] = TABLES + PREDICTOR_FILES + CONFIGS + MODELS + ENVIRONMENT


def test_corpus_is_large_and_distinct() -> None:
    ids = [c.id for c in CORPUS]
    assert len(ids) == len(set(ids)) and len(ids) >= 40
    assert {c.category for c in CORPUS} == {"tables", "predictor files", "configs", "models", "environment"}


@pytest.mark.parametrize("case", CORPUS, ids=[f"{c.category.split()[0]}-{c.id}" for c in CORPUS])
def test_bad_input_gets_a_clear_error(case: Case, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    ctx = Ctx(tmp_path, request)
    if issubclass(case.error, Warning):
        with pytest.warns(case.error, match=case.match):
            case.run(ctx)
        return
    with pytest.raises(case.error, match=case.match) as info:
        case.run(ctx)
    msg = str(info.value)
    assert len(msg) >= 30 and "Traceback" not in msg  # a sentence, not an empty or nested traceback

"""Fuzzing with hypothesis: the table reader and the predictor loader let only their documented errors out.

- :func:`hwprune.measure.read_table` on random bytes and on mutated real tables may raise only
  :class:`~hwprune.measure.TableError`; whatever it accepts must satisfy the table contract.
- :meth:`hwprune.predict.LatencyPredictor.load` on random bytes, on byte-mutated real predictor files and
  on files whose skops schema was edited (class and module names swapped for dangerous ones) may raise
  only :class:`~hwprune.predict.PredictorFileError`, and must never run code from the file.

Runs are derandomized (the same cases every run) and write no example database. The number of cases run
is counted per test; ``benchmarks/reliability.py`` collects the counts (``HWPRUNE_FUZZ_COUNTS``).
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import warnings
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwprune.measure import CONFIG_COLUMNS, TableError, read_table
from hwprune.predict import LatencyPredictor, PredictorFileError

REAL_TABLE = Path(__file__).resolve().parents[2] / "tables" / "cpu_torch" / "small_resnet_28.csv"
_LINES = REAL_TABLE.read_text(encoding="utf-8").splitlines(keepends=True)[:31]
VALID = "".join(_LINES)
COUNTS: Counter[str] = Counter()
FUZZ = settings(
    max_examples=int(os.environ.get("HWPRUNE_FUZZ_EXAMPLES", "200")),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
#: Names an attacker would put in a skops schema to reach code.
DANGEROUS = [
    "os",
    "system",
    "posix",
    "subprocess",
    "Popen",
    "builtins",
    "eval",
    "exec",
    "__import__",
    "getattr",
    "pickle",
    "loads",
    "functools",
    "partial",
    "ObjectNode",
    "ReduceNode",
    "runpy",
]


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    """One folder for every example of a test (hypothesis reruns the body, a fixture is set up once)."""
    with tempfile.TemporaryDirectory(prefix="hwprune_fuzz_") as d:
        yield Path(d)


@pytest.fixture(scope="module", autouse=True)
def _report_counts() -> Iterator[None]:
    yield
    out = os.environ.get("HWPRUNE_FUZZ_COUNTS")
    if out:
        old = json.loads(Path(out).read_text()) if Path(out).is_file() else {}
        Path(out).write_text(json.dumps({**old, **COUNTS}, indent=1))


def _check_accepted(df) -> None:  # noqa: ANN001 - a DataFrame
    """What read_table accepts honours the contract (no silently wrong table)."""
    for col in CONFIG_COLUMNS:
        assert str(df[col].dtype) == "int64"
        assert (df[col] >= (0 if col == "padding" else 1)).all()
    lat = df["latency_ms"].to_numpy(dtype=float)
    assert all(math.isfinite(v) and v > 0 for v in lat)


def _read(path: Path, data: bytes, name: str) -> None:
    path.write_bytes(data)
    COUNTS[name] += 1
    try:
        df = read_table(path)
    except TableError as err:
        assert str(path) in str(err) and "line" in str(err)  # names the file and where
        return
    _check_accepted(df)


@FUZZ
@given(data=st.binary(max_size=4096))
def test_read_table_random_bytes(scratch: Path, data: bytes) -> None:
    _read(scratch / "random.csv", data, "read_table: random bytes")


_MUTATION = st.one_of(
    st.tuples(st.just("delete"), st.integers(0, len(VALID)), st.integers(1, 200)),
    st.tuples(st.just("insert"), st.integers(0, len(VALID)), st.text(max_size=20)),
    st.tuples(st.just("truncate"), st.integers(0, len(VALID))),
    st.tuples(st.just("cell"), st.integers(1, 30), st.integers(0, 20), st.text(max_size=12)),
    st.tuples(st.just("duplicate"), st.integers(1, 30)),
    st.tuples(st.just("swap"), st.sampled_from([";", "\t", "|", ",,", '"', "\n"])),
    st.tuples(st.just("flip"), st.integers(0, len(VALID) - 1), st.integers(0, 255)),
)


def _mutate(text: str, m: tuple) -> bytes:  # type: ignore[type-arg]
    kind = m[0]
    if kind == "delete":
        return (text[: m[1]] + text[m[1] + m[2] :]).encode()
    if kind == "insert":
        return (text[: m[1]] + m[2] + text[m[1] :]).encode()
    if kind == "truncate":
        return text[: m[1]].encode()
    lines = text.splitlines(keepends=True)
    if kind in ("cell", "duplicate") and not lines:
        return text.encode()
    if kind == "cell":
        i = m[1] % len(lines)
        cells = lines[i].rstrip("\n").split(",")
        cells[m[2] % len(cells)] = m[3].replace("\n", " ")
        lines[i] = ",".join(cells) + "\n"
        return "".join(lines).encode()
    if kind == "duplicate":
        i = m[1] % len(lines)
        return "".join([*lines[: i + 1], lines[i], *lines[i + 1 :]]).encode()
    if kind == "swap":
        return text.replace(",", m[1], 3).encode()
    raw = bytearray(text.encode())
    if raw:
        raw[m[1] % len(raw)] = m[2]
    return bytes(raw)


@FUZZ
@given(mutations=st.lists(_MUTATION, min_size=1, max_size=3))
def test_read_table_mutated_real_table(scratch: Path, mutations: list) -> None:  # type: ignore[type-arg]
    text = VALID
    data = b""
    for m in mutations:
        data = _mutate(text, m)
        text = data.decode("utf-8", errors="replace")
    _read(scratch / "mutated.csv", data, "read_table: mutated real table")


def _load(path: Path, data: bytes, name: str) -> None:
    path.write_bytes(data)
    COUNTS[name] += 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pred = LatencyPredictor.load(path)
    except PredictorFileError as err:
        assert str(path) in str(err)
        return
    assert pred.target_ == "cpu_torch"  # a mutation that left the file loadable left a real predictor


@FUZZ
@given(data=st.binary(max_size=4096))
def test_predictor_loader_random_bytes(scratch: Path, data: bytes) -> None:
    _load(scratch / "random.skops", data, "predictor: random bytes")


@FUZZ
@given(data=st.data())
def test_predictor_loader_mutated_real_file(scratch: Path, predictor_file: Path, data: st.DataObject) -> None:
    raw = bytearray(predictor_file.read_bytes())
    kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "zero"]))
    pos = data.draw(st.integers(0, len(raw) - 1))
    if kind == "flip":
        raw[pos] ^= data.draw(st.integers(1, 255))
    elif kind == "truncate":
        raw = raw[:pos]
    elif kind == "insert":
        raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=16))
    else:
        raw[pos : pos + 64] = bytes(len(raw[pos : pos + 64]))
    _load(scratch / "mutated.skops", bytes(raw), "predictor: byte-mutated real file")


def _schema_strings(node: object, out: list[tuple[list[object], str]], path: list[object]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            _schema_strings(v, out, [*path, k])
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _schema_strings(v, out, [*path, i])
    elif isinstance(node, str):
        out.append((path, node))


@FUZZ
@given(data=st.data())
def test_predictor_loader_edited_schema(scratch: Path, predictor_file: Path, data: st.DataObject) -> None:
    """Rewrite string values of the skops schema (class, module, loader names) to dangerous ones."""
    with zipfile.ZipFile(predictor_file) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    schema = json.loads(members["schema.json"])
    strings: list[tuple[list[object], str]] = []
    _schema_strings(schema, strings, [])
    for _ in range(data.draw(st.integers(1, 3))):
        path, _old = data.draw(st.sampled_from(strings))
        new = data.draw(st.one_of(st.sampled_from(DANGEROUS), st.text(max_size=10)))
        node = schema
        for key in path[:-1]:
            node = node[key]  # type: ignore[index]
        node[path[-1]] = new  # type: ignore[index]
    members["schema.json"] = json.dumps(schema).encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    _load(scratch / "edited.skops", buf.getvalue(), "predictor: edited skops schema")

"""TVM backend: local llvm, and a real ``tvm.rpc`` server on localhost (untuned: tuning costs minutes)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("tvm", reason="apache-tvm is not installed (pip install 'hwprune[tvm]')")

from hwprune.measure import EvaluatorConfig, Target, measure, read_table  # noqa: E402


@pytest.fixture(scope="module")
def rpc_port() -> Iterator[int]:
    """A real tvm.rpc server in a subprocess on a free localhost port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tvm.exec.rpc_server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--port-end",
            str(port + 1),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # The server runs in a tvm.exec.popen_worker child: killing the server alone left that worker
        # behind (re-parented to init) after every test session. Kill the whole group instead.
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("tvm.rpc server did not start within 90 s")
                time.sleep(0.1)
        yield port
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def test_tvm_local_llvm(tmp_path: Path, make_conv, fast_eval: EvaluatorConfig) -> None:
    tgt = Target(
        name="tvm_local",
        backend="tvm",
        options={"target": {"kind": "llvm", "num-cores": 1}, "database_dir": str(tmp_path / "db")},
    )
    space = [make_conv(8, 8, hw=8), make_conv(8, 32, hw=8), make_conv(8, 8, hw=8, g=8)]  # incl. depthwise
    s = measure(tgt, space, tmp_path / "tvm.csv", evaluator=fast_eval, progress=False)
    df = read_table(tmp_path / "tvm.csv")
    assert s.measured == 3, read_table(tmp_path / "tvm.csv", keep_errors=True)["error"].tolist()
    assert (df["latency_ms"] > 0).all() and (df["latency_spread_ms"] >= 0).all()
    assert df["settings"].str.contains('"tuned": false').all()
    assert "tvm" in df["versions"].iloc[0]


@pytest.mark.tvm_rpc
def test_tvm_through_localhost_rpc_server(
    tmp_path: Path, rpc_port: int, make_conv, fast_eval: EvaluatorConfig
) -> None:
    tgt = Target(
        name="tvm_rpc",
        backend="tvm",
        options={"target": {"kind": "llvm"}, "rpc": {"host": "127.0.0.1", "port": rpc_port}},
    )
    space = [make_conv(4, 8, hw=8), make_conv(4, 16, hw=8)]
    s = measure(tgt, space, tmp_path / "rpc.csv", evaluator=fast_eval, progress=False)
    df = read_table(tmp_path / "rpc.csv")
    assert s.measured == 2, read_table(tmp_path / "rpc.csv", keep_errors=True)["error"].tolist()
    assert df["device"].iloc[0] == f"TVM llvm on rpc 127.0.0.1:{rpc_port}"
    assert df["settings"].str.contains('"rpc": true').all()
    assert (df["latency_ms"] > 0).all()


@pytest.mark.tvm_rpc
def test_noisy_configs_are_retimed_on_one_rpc_session(tmp_path: Path, rpc_port: int, make_conv) -> None:
    """Re-timing a config uploads it again: the remote session must survive loading it twice (item 15)."""
    import json

    tgt = Target(
        name="tvm_rpc",
        backend="tvm",
        options={"target": {"kind": "llvm"}, "rpc": {"host": "127.0.0.1", "port": rpc_port}},
    )
    # Any spread counts as noise here, so every config is timed 1 + 2 times on the same session.
    ev = EvaluatorConfig(warmup=1, number=1, repeat=3, min_repeat_ms=1.0, max_rel_spread=1e-9, retime=2)
    s = measure(
        tgt, [make_conv(4, 8, hw=8), make_conv(4, 12, hw=8)], tmp_path / "r.csv", evaluator=ev, progress=False
    )
    errors = read_table(tmp_path / "r.csv", keep_errors=True)["error"].dropna().tolist()
    assert (s.measured, s.failed, s.retimed) == (2, 0, 2), errors
    settings = [json.loads(x) for x in read_table(tmp_path / "r.csv")["settings"]]
    assert all(x["retimed"] == 2 and "rpc_reconnects" not in x for x in settings)


@pytest.mark.tvm_rpc
def test_tvm_rpc_unreachable_is_an_error(make_conv) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here
    from hwprune.measure import Backend

    b = Backend.create(
        "tvm", Target(name="x", backend="tvm", options={"rpc": {"host": "127.0.0.1", "port": port}})
    )
    with pytest.raises(Exception, match="Connect to 127.0.0.1"):
        b.setup()


def test_untuned_target_ignores_the_default_tuning_database(
    tmp_path: Path, make_conv, fast_eval: EvaluatorConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12, item 14: cpu_tvm_llvm_untuned never applies schedules from the default database folder.

    The default folder holds a database that cannot be read; an untuned target that looked at it would
    fail the config (or, with a real one, label a tuned run untuned).
    """
    import json

    from hwprune.measure import load_target
    from hwprune.measure.backends import tvm_backend

    db = tmp_path / "tvm_db"
    db.mkdir()
    (db / "database_workload.json").write_text("not a MetaSchedule database\n")
    (db / "database_tuning_record.json").write_text("not a MetaSchedule database\n")
    monkeypatch.setattr(tvm_backend, "_DEFAULT_DB", db)
    s = measure(
        load_target("cpu_tvm_llvm_untuned"),
        [make_conv(4, 4, hw=8)],
        tmp_path / "u.csv",
        evaluator=fast_eval,
        progress=False,
    )
    assert (s.measured, s.failed) == (1, 0)
    assert json.loads(read_table(tmp_path / "u.csv")["settings"].iloc[0])["tuned"] is False

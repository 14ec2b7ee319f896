"""Faults injected into real processes: nothing measured may be lost or duplicated, and sweeps go on.

- ``hwprune measure`` (the CLI, a real process) killed with SIGKILL twice, plus a torn last line, then
  resumed: every configuration ends up in the table exactly once, rows written before a kill untouched.
- A real ``tvm.rpc`` server killed mid-sweep: the configs it cannot time become error rows, the sweep
  finishes, the reconnects are bounded, and a resumed sweep (``retry_errors``) fills the gaps. Killed and
  restarted, the bounded retry reconnects and the sweep loses nothing.

The kill -9 of a pruning fine-tune and the 2-rank DDP check live in ``tests/callbacks`` (see
docs/RELIABILITY.md). Figures go to ``$HWPRUNE_FAULTS_OUT`` (JSON) when set, for benchmarks/reliability.py.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hwprune.measure import CONFIG_COLUMNS, EvaluatorConfig, Target, measure, model_space, read_table

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _record(name: str, **figures: Any) -> None:
    out = os.environ.get("HWPRUNE_FAULTS_OUT")
    if out:
        old = json.loads(Path(out).read_text()) if Path(out).is_file() else {}
        Path(out).write_text(json.dumps({**old, name: figures}, indent=1))


def _data_lines(path: Path) -> int:
    return max(0, path.read_bytes().count(b"\n") - 1) if path.exists() else 0


def _keys(rows: list[dict[str, str]]) -> list[tuple[int, ...]]:
    return [tuple(int(r[c]) for c in CONFIG_COLUMNS) for r in rows]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_cli_measure_killed_twice_and_torn_then_resumed(tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    shape = (1, 1, 28, 28)
    space = model_space("small_resnet", shape, step=32)
    cmd = [
        sys.executable, "-m", "hwprune.cli", "measure", "--target", "cpu_torch", "--model", "small_resnet",
        "--input", ",".join(map(str, shape)), "--step", "32", "--out", str(out), "--warmup", "1",
        "--repeat", "3", "--min-repeat-ms", "2", "--no-progress",
    ]  # fmt: skip
    snapshots: list[bytes] = []
    for kill_after in (6, 6):
        start = _data_lines(out)
        proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while _data_lines(out) < start + kill_after:
                assert proc.poll() is None, "the sweep ended before it could be killed"
                assert time.monotonic() < deadline, "the sweep made no progress in 120 s"
                time.sleep(0.01)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == -signal.SIGKILL
        data = out.read_bytes()
        snapshots.append(data[: data.rfind(b"\n") + 1])
    # A writer killed inside a write leaves half a row: inject one, as the kernel would have left it.
    torn = snapshots[-1].splitlines(keepends=True)[1][:57]
    with open(out, "ab") as fh:
        fh.write(torn)
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = _rows(out)
    keys = _keys(rows)
    want = {tuple(int(c[k]) for k in CONFIG_COLUMNS) for c in space}
    lost = len(want - set(keys))
    duplicated = len(keys) - len(set(keys))
    assert lost == 0 and duplicated == 0 and set(keys) == want
    final = out.read_bytes()
    assert all(final.startswith(s) for s in snapshots)  # rows written before each kill are untouched
    assert final.count(b"\n") == len(want) + 1 and final.endswith(b"\n")  # the torn line was cut
    assert len(read_table(out)) == len(want)  # and the table validates
    _record(
        "measure: kill -9 x2 + torn line, then resume",
        configs=len(want),
        faults=3,
        rows_before_kills=[s.count(b"\n") - 1 for s in snapshots],
        lost=lost,
        duplicated=duplicated,
    )


# -------------------------------------------------------------------------------------- TVM RPC faults
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", str(port),
         "--port-end", str(port + 1)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the server forks a worker per session: kill the group, as a crash would
    )  # fmt: skip
    deadline = time.monotonic() + 90
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("tvm.rpc server did not start within 90 s")
            time.sleep(0.05)


def _kill_group(proc: subprocess.Popen[bytes], port: int | None = None) -> None:
    """SIGKILL the server and the session workers it forked (its own process group).

    With ``port``, also wait (up to 10 s) until nothing accepts on it: a forked worker holds the
    listening socket until the kernel has reaped it.
    """
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    deadline = time.monotonic() + 10
    while port is not None and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            return
        time.sleep(0.02)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    _kill_group(proc)


@pytest.fixture
def rpc_server() -> Iterator[dict[str, Any]]:
    """A real tvm.rpc server on a free port; the test may kill and restart it (all are cleaned up)."""
    pytest.importorskip("tvm")
    port = _free_port()
    procs = [_start_server(port)]
    state = {"port": port, "procs": procs}
    try:
        yield state
    finally:
        for p in procs:
            _stop(p)


def _space(n: int) -> list[dict[str, int]]:
    return [
        dict(batch=1, in_channels=4, out_channels=4 + 2 * i, height=8, width=8, kernel_size=3, stride=1,
             padding=1, groups=1)
        for i in range(n)
    ]  # fmt: skip


def _target(port: int, **opts: Any) -> Target:
    return Target(
        name="board_rpc",
        backend="tvm",
        options={"target": {"kind": "llvm"}, "rpc": {"host": "127.0.0.1", "port": port}, **opts},
    )


def _kill_then_restart(path: Path, server: dict[str, Any]) -> threading.Thread:
    """SIGKILL the server (and its session workers) once 2 rows are in the table, then start a new one."""

    def watch() -> None:
        deadline = time.monotonic() + 300
        while _data_lines(path) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        _kill_group(server["procs"][-1], server["port"])
        server["killed_at_row"] = _data_lines(path)
        t0 = time.monotonic()
        server["procs"].append(_start_server(server["port"]))  # a board rebooting: seconds, not ms
        server["restart_s"] = round(time.monotonic() - t0, 1)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


FAST = EvaluatorConfig(warmup=1, number=1, repeat=3, min_repeat_ms=2.0)


@pytest.mark.tvm_rpc
def test_rpc_server_dies_mid_sweep_errors_recorded_bounded_retry_reconnects(
    tmp_path: Path, rpc_server: dict[str, Any]
) -> None:
    """The server dies after 2 rows and comes back seconds later (a board rebooting)."""
    out = tmp_path / "rpc.csv"
    space = _space(10)
    # One reconnect per failed config, 2.5 s after the failure, at most 10 per sweep: the configs timed
    # while the server is down become error rows, the first one after it is back reconnects.
    tgt = _target(rpc_server["port"], rpc_retries=1, rpc_retry_wait_s=2.5, rpc_max_reconnects=10)
    watcher = _kill_then_restart(out, rpc_server)
    t0 = time.monotonic()
    s = measure(tgt, space, out, evaluator=FAST, progress=False)
    wall = time.monotonic() - t0
    watcher.join(timeout=120)
    rows = _rows(out)
    errors = [r["error"] for r in rows if r["error"]]
    assert len(rows) == len(space) and len(set(_keys(rows))) == len(space)  # every config has exactly 1 row
    assert s.measured + s.failed == len(space) and s.failed >= 1  # the sweep went on past the failures
    assert "reconnect attempt(s) failed" in errors[0] and "the sweep goes on" in errors[0]
    tried = [int(e.split(" reconnect attempt(s)")[0].rsplit(" ", 1)[-1]) for e in errors if "attempt(s)" in e]
    assert all(n <= 1 for n in tried)  # bounded per config ...
    reconnected = [r for r in rows if '"rpc_reconnects"' in r["settings"]]
    assert sum(tried) + len(reconnected) <= 10  # ... and per sweep
    assert reconnected and s.measured > 2, "the bounded retry never reconnected to the restarted server"

    # Resume with retry_errors now the board is back: exactly the failed configs are timed again.
    again = measure(tgt, space, out, evaluator=FAST, progress=False, retry_errors=True)
    assert (again.measured, again.failed, again.skipped) == (s.failed, 0, s.measured)
    df = read_table(out)
    dup = int(df.duplicated(list(CONFIG_COLUMNS)).sum())
    assert len(df) == len(space) and dup == 0
    _record(
        "tvm rpc: server killed mid-sweep, back later",
        configs=len(space),
        faults=1,
        error_rows=s.failed,
        reconnects_failed=sum(tried),
        server_restart_s=rpc_server.get("restart_s"),
        rows_after_reconnect=len(reconnected),
        sweep_wall_s=round(wall, 1),
        lost_after_resume=len(space) - len(df),
        duplicated=dup,
    )

"""A sweep shared by a fleet: a real TVM RPC tracker and two real servers on localhost (issue 14, part 3).

The servers run as subprocesses with ``TVM_NUM_THREADS=1`` on free ports; the layer space is tiny convs,
so the two tests cost about 10-20 s on top of starting the three TVM processes once.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("tvm", reason="apache-tvm is not installed (pip install 'hwprune[tvm]')")

from hwprune.measure import CONFIG_COLUMNS, EvaluatorConfig, Target, measure, read_table  # noqa: E402
from hwprune.measure.fleet_options import check_fleet, fleet_size  # noqa: E402
from hwprune.measure.local_fleet import LocalFleet  # noqa: E402

# No re-timing of noisy rows: the tests check where rows go, not how noisy this machine is.
FAST = EvaluatorConfig(warmup=1, number=1, repeat=3, min_repeat_ms=2.0, retime=0)


def _space(n: int, cin: int = 4) -> list[dict[str, int]]:
    return [
        dict(batch=1, in_channels=cin, out_channels=4 + i, height=8, width=8, kernel_size=3, stride=1,
             padding=1, groups=1)
        for i in range(n)
    ]  # fmt: skip


def _keys(df: Any) -> list[tuple[int, ...]]:
    return [tuple(int(r[c]) for c in CONFIG_COLUMNS) for _, r in df.iterrows()]


@pytest.fixture(scope="module")
def fleet() -> Iterator[LocalFleet]:
    """A tracker and 2 servers under one key; killed (process groups) when the module ends."""
    with LocalFleet("hwprune-test", 2, threads=1) as f:
        yield f


def _two_live_servers(f: LocalFleet) -> None:
    """Start servers until two are alive (an earlier test may have killed one)."""
    while sum(p.poll() is None for p in f.servers) < 2:
        f.add_server()


@pytest.mark.tvm_rpc
def test_one_sweep_shared_by_two_servers_resumes(
    tmp_path: Path, fleet: LocalFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    """Python ``measure(fleet=2)`` times part of the space; ``hwprune measure --fleet auto`` resumes it."""
    import yaml

    from hwprune.cli import main

    _two_live_servers(fleet)
    out, space = tmp_path / "fleet.csv", _space(14)
    first = measure(fleet.target(), space, out, evaluator=FAST, progress=False, fleet=2, limit=5)
    assert (first.measured, first.failed) == (5, 0)
    assert first.fleet is not None and first.fleet.workers == 2

    t = fleet.target()
    conf, grid = tmp_path / "fleet.yaml", tmp_path / "grid.yaml"
    conf.write_text(yaml.safe_dump({"name": t.name, "backend": t.backend, "options": dict(t.options)}))
    grid.write_text(
        yaml.safe_dump(
            {"in_channels": 4, "out_channels": {"start": 4, "stop": 17, "step": 1}, "height": 8, "width": 8,
             "kernel_size": 3, "stride": 1}
        )
    )  # fmt: skip
    args = ["measure", "--target", str(conf), "--grid", str(grid), "--out", str(out), "--fleet", "auto"]
    args += ["--warmup", "1", "--repeat", "3", "--min-repeat-ms", "2", "--retime", "0", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "measured 9, failed 0, skipped 5" in printed  # resumed: only the rest was timed ...
    assert "fleet of 2 worker(s)" in printed  # ... by one worker per server the tracker lists
    df = read_table(out)
    assert sorted(_keys(df)) == sorted(tuple(c[k] for k in CONFIG_COLUMNS) for c in space)  # each once
    servers = [json.loads(s)["server"] for s in df["settings"]]
    live = {fleet.server_address(i) for i, p in enumerate(fleet.servers) if p.poll() is None}
    assert set(servers) == live  # both servers timed rows of the one table
    assert (df["latency_ms"] > 0).all()
    assert set(df["device"]) == {f"TVM llvm on rpc tracker 127.0.0.1:{fleet.tracker_port} key hwprune-test"}
    runs = json.loads(out.with_suffix(".json").read_text())["runs"]
    assert [r["fleet"]["workers"] for r in runs] == [2, 2]
    assert sum(r["fleet"]["rows_per_server"].get(s, 0) for r in runs for s in live) == len(space)


def _after_rows(out: Path, n: int, act: Any, state: dict[str, Any]) -> threading.Thread:
    """Run ``act()`` in a thread once ``out`` holds ``n`` rows; record the row count then in ``state``."""

    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if out.exists() and out.read_text().count("\n") >= n + 1:  # the header, then n rows
                break
            time.sleep(0.01)
        act()
        state["rows"] = out.read_text().count("\n") - 1

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


@pytest.mark.tvm_rpc
def test_killing_one_server_mid_sweep_loses_no_rows(tmp_path: Path, fleet: LocalFleet) -> None:
    _two_live_servers(fleet)
    victim = next(i for i, p in enumerate(fleet.servers) if p.poll() is None)
    out, space = tmp_path / "kill.csv", _space(16, cin=6)
    killed: dict[str, Any] = {}

    watcher = _after_rows(out, 3, lambda: fleet.kill(victim), killed)
    s = measure(fleet.target(fleet_wait_s=3), space, out, evaluator=FAST, progress=False, fleet=2)
    watcher.join(timeout=30)
    assert killed["rows"] < len(space), "the sweep ended before the server was killed"
    df = read_table(out, keep_errors=True)
    errors = df["error"].dropna().tolist()
    assert (s.measured, s.failed) == (len(space), 0), errors
    assert len(df) == len(space) and len(set(_keys(df))) == len(space)  # nothing lost, nothing duplicated
    rep = s.fleet
    assert rep is not None and rep.untimed == 0
    dead = fleet.server_address(victim)
    assert rep.lost and {x.server for x in rep.lost} == {dead}  # the killed server's session was lost ...
    requeued = [x for x in rep.lost if x.outcome == "requeued"]
    assert rep.requeued == len(requeued) >= 1  # ... its config in flight went back to the sweep ...
    settings = [json.loads(x) for x in df["settings"]]
    moved = [x for x in settings if x.get("fleet_lost_on")]
    assert len(moved) == len(requeued) and all(x["server"] != dead for x in moved)  # ... timed elsewhere
    assert sum(rep.rows_per_server.values()) == len(space)
    assert "session(s) lost" in rep.describe()


@pytest.mark.tvm_rpc
def test_a_stalled_server_is_written_off_and_its_config_timed_elsewhere(
    tmp_path: Path, fleet: LocalFleet
) -> None:
    """A board that hangs without closing its socket (SIGSTOP): only ``fleet_stall_s`` notices it."""
    _two_live_servers(fleet)
    victim = next(i for i, p in enumerate(fleet.servers) if p.poll() is None)
    out, space = tmp_path / "stall.csv", _space(12, cin=5)
    stopped: dict[str, Any] = {}
    watcher = _after_rows(out, 3, lambda: os.killpg(fleet.servers[victim].pid, signal.SIGSTOP), stopped)
    try:
        s = measure(
            fleet.target(fleet_stall_s=6, fleet_wait_s=3), space, out, evaluator=FAST, progress=False, fleet=2
        )
    finally:
        watcher.join(timeout=30)
        fleet.kill(victim)  # SIGKILL ends a stopped process too
    assert stopped["rows"] < len(space), "the sweep ended before the server was stopped"
    df = read_table(out, keep_errors=True)
    assert (s.measured, s.failed) == (len(space), 0), df["error"].dropna().tolist()
    assert len(set(_keys(df))) == len(df) == len(space)
    rep = s.fleet
    assert rep is not None
    stalled = fleet.server_address(victim)
    assert [x.outcome for x in rep.lost] == ["requeued"] and rep.lost[0].server == stalled
    assert any("stalled" in r and stalled in r for r in rep.retired)


def test_fleet_arguments_are_checked(tmp_path: Path) -> None:
    tracker = {"host": "127.0.0.1", "port": 9190, "key": "k", "tracker": True}
    tvm = Target(name="t", backend="tvm", options={"rpc": tracker})
    with pytest.raises(ValueError, match=r"`fleet` must be a positive integer or 'auto', got 0"):
        fleet_size(tvm, 0)
    with pytest.raises(ValueError, match=r"`fleet` must be a positive integer or 'auto', got 'all'"):
        measure(tvm, _space(1), tmp_path / "t.csv", fleet="all")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`fleet` needs a TVM target .* got backend 'torch_cpu'"):
        fleet_size(Target(name="c", backend="torch_cpu"), 2)
    direct = Target(name="t", backend="tvm", options={"rpc": {"host": "127.0.0.1", "port": 9090}})
    with pytest.raises(ValueError, match=r"`fleet` needs `options.rpc: \{host, port, key, tracker: true\}`"):
        fleet_size(direct, 2)
    tuned = Target(name="t", backend="tvm", options={"rpc": tracker, "tune_trials": 8, "tune_max_configs": 1})
    with pytest.raises(ValueError, match=r"`fleet` measures untuned builds .* set `tune_max_configs: 0`"):
        fleet_size(tuned, 2)
    for key, bad, want in (
        ("fleet_retries", -1, "an integer >= 0"),
        ("fleet_wait_s", 0, "a number of seconds > 0"),
        ("fleet_stall_s", "1m", "a number of seconds > 0 or null"),
    ):
        t = Target(name="t", backend="tvm", options={"rpc": tracker, key: bad})
        with pytest.raises(ValueError, match=rf"`{key}` must be {want}, got {bad!r}"):
            check_fleet(t, "auto")
    assert not (tmp_path / "t.csv").exists()  # refused before the table was touched

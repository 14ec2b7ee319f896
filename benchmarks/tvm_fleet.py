"""One TVM sweep measured by a fleet of one and of two RPC servers, and a run that loses a server mid-sweep.

A real ``tvm.rpc`` tracker and two real servers run on this machine (:class:`hwprune.measure.fleet.
LocalFleet`), each server pinned to its own core with ``TVM_NUM_THREADS=1``, registered under one key. The
same sweep (3x3 convs at 28x28, untuned llvm builds) is measured into a fresh table with ``fleet=1`` and
``fleet=2``, after an untimed warm-up and in alternating order (1, 2, 2, 1, 1, 2, ...), so drifting load
hits both alike; then once more with ``fleet=2`` while one server is SIGKILLed after a third of the rows.

    .venv/bin/python -m benchmarks.tvm_fleet                       # full run: docs/bench_raw_fleet.json,
                                                                   # docs/FLEET.md, docs/fleet_timeline.png
    .venv/bin/python -m benchmarks.tvm_fleet --quick --out-dir /tmp/fleet   # check the script (~2 min)

The host (this process) builds every module; on a 2-core machine it shares the cores with the servers,
so the speed-up from a second server is bounded by the host's build time as much as by the boards.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hwprune.measure import CONFIG_COLUMNS, EvaluatorConfig, measure, read_table
from hwprune.measure.device_info import cpu_model
from hwprune.measure.fleet import FleetReport
from hwprune.measure.local_fleet import LocalFleet

ROOT = Path(__file__).resolve().parents[1]
KEY = "hwprune-bench"
BEGIN, END = "<!-- tvm_fleet:begin -->", "<!-- tvm_fleet:end -->"


def conv_space(n: int, cin: int = 32, hw: int = 28) -> list[dict[str, int]]:
    """``n`` 3x3 convs, ``cin`` -> 16, 17, ... out-channels at ``hw`` x ``hw`` (batch 1)."""
    return [
        {"batch": 1, "in_channels": cin, "out_channels": 16 + i, "height": hw, "width": hw, "kernel_size": 3,
         "stride": 1, "padding": 1, "groups": 1}
        for i in range(n)
    ]  # fmt: skip


def _rows_in(path: Path) -> int:
    try:
        return max(0, path.read_text().count("\n") - 1)
    except FileNotFoundError:
        return 0


def one_run(
    fleet: LocalFleet, workers: int, space: list[dict[str, int]], ev: EvaluatorConfig, kill_after: int | None
) -> dict[str, Any]:
    """Measure ``space`` into a fresh table on ``workers`` workers; kill server 0 after ``kill_after``."""
    with tempfile.TemporaryDirectory(prefix="hwprune_fleet_") as tmp:
        out = Path(tmp) / "t.csv"
        killed: dict[str, Any] = {}
        watcher = None
        if kill_after is not None:

            def kill() -> None:
                while _rows_in(out) < kill_after and not killed.get("done"):
                    time.sleep(0.01)
                if not killed.get("done"):
                    fleet.kill(0)
                    killed.update(server=fleet.server_address(0), rows=_rows_in(out))

            watcher = threading.Thread(target=kill, daemon=True)
            watcher.start()
        load0 = os.getloadavg()
        s = measure(fleet.target("tvm_fleet_bench", fleet_wait_s=5), space, out, evaluator=ev, progress=False,
                    fleet=workers)  # fmt: skip
        killed["done"] = True
        if watcher is not None:
            watcher.join(timeout=30)
        df = read_table(out, keep_errors=True)
        keys = [tuple(int(r[c]) for c in CONFIG_COLUMNS) for _, r in df.iterrows()]
        rep: FleetReport | None = s.fleet
        assert rep is not None
        return {
            "servers": workers,
            "wall_s": round(s.wall_s, 2),
            "measured": s.measured,
            "failed": s.failed,
            "noisy": s.noisy,
            "rows": len(df),
            "configs": len(space),
            "lost_rows": len(space) - len(set(keys)),
            "duplicated_rows": len(keys) - len(set(keys)),
            "rows_per_server": dict(rep.rows_per_server),
            "lost_sessions": [
                {"server": x.server, "config": x.config, "outcome": x.outcome, "at_s": x.at_s}
                for x in rep.lost
            ],
            "requeued": rep.requeued,
            "untimed": rep.untimed,
            "retired": list(rep.retired),
            "killed": {k: v for k, v in killed.items() if k != "done"} or None,
            "loadavg_start": [round(x, 2) for x in load0],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            "timeline": [list(t) for t in rep.timeline],
        }


def _spread(walls: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(walls), 2),
        "min": round(min(walls), 2),
        "max": round(max(walls), 2),
    }


def plot_timelines(runs: dict[str, dict[str, Any]], path: Path) -> Path:
    """Configs done over time per server, one panel per run (``{title: run}``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 3.6), squeeze=False)
    for ax, (title, run) in zip(axes[0], runs.items(), strict=True):
        servers = sorted({s for _, s in run["timeline"]})
        for s in servers:
            ts = [t for t, x in run["timeline"] if x == s]
            ax.step([0, *ts], range(len(ts) + 1), where="post", label=s)
        total = [t for t, _ in run["timeline"]]
        ax.step([0, *total], range(len(total) + 1), where="post", color="k", lw=1, ls="--", label="all")
        for x in run["lost_sessions"]:
            ax.axvline(x["at_s"], color="r", lw=0.8, ls=":")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("seconds since the fleet started")
        ax.set_ylabel("configs done")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown(raw: dict[str, Any], plot: Path | None) -> str:
    """The results section of docs/FLEET.md."""
    s = raw["summary"]
    k = raw["kill_run"]
    lines = [
        BEGIN,
        f"Measured {raw['date']} on {raw['machine']['cpu']} ({raw['machine']['cpus']} CPUs; load average "
        f"{raw['machine']['loadavg_start']} at the start, {raw['machine']['loadavg_end']} at the end), "
        f"apache-tvm {raw['machine']['tvm']}: {raw['settings']['configs']} configs (3x3 convs, "
        f"{raw['settings']['cin']} -> 16..{15 + raw['settings']['configs']} channels at "
        f"{raw['settings']['hw']}x{raw['settings']['hw']}, untuned "
        "llvm), "
        f"evaluator {raw['settings']['evaluator']}, servers pinned to CPUs {raw['settings']['cores']} with "
        f"TVM_NUM_THREADS=1, {raw['settings']['repeats']} runs each, interleaved. Command: "
        f"`{raw['command']}`.",
        "",
        "| servers (workers) | wall time, median (s) | min - max (s) | runs | configs / s | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for n in ("1", "2"):
        w = s[n]
        lines.append(
            f"| {n} | {w['median']:.1f} | {w['min']:.1f} - {w['max']:.1f} | {w['runs']} | "
            f"{raw['settings']['configs'] / w['median']:.2f} | "
            f"{s['1']['median'] / w['median']:.2f}x |"
        )
    lines += [
        "",
        f"Kill run (2 servers, server {k['killed']['server'] if k['killed'] else '-'} SIGKILLed after "
        f"{k['killed']['rows'] if k['killed'] else '-'} rows): {k['wall_s']:.1f} s; {k['measured']} of "
        f"{k['configs']} configs measured, {k['failed']} error rows, {k['lost_rows']} lost, "
        f"{k['duplicated_rows']} duplicated; {len(k['lost_sessions'])} session(s) lost, {k['requeued']} "
        f"config(s) handed to the other server; rows per server: "
        + ", ".join(f"{a} {b}" for a, b in sorted(k["rows_per_server"].items()))
        + ".",
    ]
    if plot is not None:
        lines += ["", f"![configs done over time per server]({plot.name})"]
    lines.append(END)
    return "\n".join(lines) + "\n"


def write_doc(path: Path, section: str) -> None:
    """Replace the results section of ``path`` (between the markers), or append it."""
    text = path.read_text() if path.exists() else "# Measuring on a fleet of boards\n\n"
    pat = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END) + "\n?", re.S)
    text = pat.sub(lambda _: section, text) if pat.search(text) else text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", type=int, default=None, help="configs in the sweep (default 48; --quick: 8)")
    p.add_argument("--repeats", type=int, default=3, help="runs per fleet size")
    p.add_argument("--cin", type=int, default=32, help="in-channels of every conv")
    p.add_argument("--hw", type=int, default=28, help="height and width of every conv's input")
    p.add_argument(
        "--quick", action="store_true", help="8 configs, 1 run each, light timing: checks the script"
    )
    p.add_argument("--out-dir", type=Path, default=ROOT / "docs", help="where the JSON, FLEET.md and plot go")
    p.add_argument("--no-plot", action="store_true", help="skip the timeline plot")
    args = p.parse_args(argv)
    configs, repeats = (args.configs or 8, 1) if args.quick else (args.configs or 48, args.repeats)
    ev = (
        EvaluatorConfig(warmup=1, number=1, repeat=3, min_repeat_ms=5.0, retime=0)
        if args.quick
        else EvaluatorConfig()
    )
    cpus = sorted(os.sched_getaffinity(0))
    cores = [{cpus[0]}, {cpus[1 % len(cpus)]}]
    space = conv_space(configs, cin=args.cin, hw=args.hw)
    import tvm

    raw: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks.tvm_fleet", *(sys.argv[1:] if argv is None else argv)]),
        "machine": {"cpu": cpu_model(), "cpus": len(cpus), "tvm": tvm.__version__,
                    "loadavg_start": [round(x, 2) for x in os.getloadavg()]},
        "settings": {"configs": configs, "cin": args.cin, "hw": args.hw, "repeats": repeats,
                     "evaluator": ev.__dict__, "cores": [sorted(c) for c in cores], "tvm_num_threads": 1},
        "runs": [],
    }  # fmt: skip
    t0 = time.perf_counter()
    with LocalFleet(KEY, 2, cores=cores, threads=1) as fleet:
        print(
            f"tracker 127.0.0.1:{fleet.tracker_port}, servers {fleet.ports} "
            f"(up in {time.perf_counter() - t0:.0f} s)"
        )
        # Untimed warm-up: the first sweep of a process pays for TVM's lazy imports and LLVM's start-up.
        one_run(fleet, 2, space[: min(4, len(space))], ev, None)
        for r in range(repeats):
            for n in (1, 2) if r % 2 == 0 else (2, 1):  # alternate the order: no fleet size always goes first
                run = one_run(fleet, n, space, ev, None)
                run["repeat"] = r
                raw["runs"].append(run)
                print(
                    f"run {r + 1}/{repeats}, {n} server(s): {run['wall_s']:.1f} s, "
                    f"rows {run['rows_per_server']}"
                )
        kill = one_run(fleet, 2, space, ev, kill_after=max(1, configs // 3))
        print(f"kill run: {kill['wall_s']:.1f} s, lost sessions {len(kill['lost_sessions'])}, "
              f"requeued {kill['requeued']}, rows {kill['rows_per_server']}, lost rows {kill['lost_rows']}, "
              f"duplicated {kill['duplicated_rows']}")  # fmt: skip
    raw["kill_run"] = kill
    raw["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    raw["summary"] = {
        str(n): {**_spread([x["wall_s"] for x in raw["runs"] if x["servers"] == n]), "runs": repeats}
        for n in (1, 2)
    }
    raw["summary"]["speedup_median"] = round(raw["summary"]["1"]["median"] / raw["summary"]["2"]["median"], 3)
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    plot = None
    if not args.no_plot:
        last2 = [x for x in raw["runs"] if x["servers"] == 2][-1]
        plot = plot_timelines(
            {"2 servers": last2, "2 servers, one killed (dotted: session lost)": kill},
            out / "fleet_timeline.png",
        )
    (out / "bench_raw_fleet.json").write_text(json.dumps(raw, indent=2) + "\n")
    write_doc(out / "FLEET.md", markdown(raw, plot))
    print(f"speed-up (median 1 server / median 2 servers): {raw['summary']['speedup_median']:.2f}x")
    print(f"wrote {out / 'bench_raw_fleet.json'}, {out / 'FLEET.md'}" + (f", {plot}" if plot else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""TVM backend (apache-tvm 0.27): build a conv2d, optionally tune it with MetaSchedule, time it.

Locally (``rpc: null``) the module runs on this CPU; with ``rpc`` it is exported, uploaded to a
``tvm.rpc`` server (directly, or through a tracker with a ``key``) and timed there with
``time_evaluator``: that is how a board is measured from a host. The tracker protocol (which servers a key
has, a session on a free one) is :mod:`hwprune.measure.backends.tvm_rpc`.

Tuning is expensive (about 2 minutes for 32 trials of one 3x3 conv on 2 cores), so a sweep is frugal:
only the first ``tune_max_configs`` configs not already in the tuning database are tuned with
``tune_trials`` trials; the database (``database_dir``) persists across runs, so a config tuned once is
never tuned again; every other config is built untuned (plain TIR on CPU, dlight's fallback schedule on
GPUs). Each row's ``settings`` records ``tuned`` and the seconds spent tuning it.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hwprune.measure.backends.base import Backend, ModelRunner, RunResult
from hwprune.measure.backends.tvm_rpc import request_session

log = logging.getLogger(__name__)

__all__ = ["TVMBackend", "conv2d_primfunc"]

_DEFAULT_DB = Path(os.environ.get("HWPRUNE_TVM_DB", Path.home() / ".cache" / "hwprune" / "tvm_db"))

# TVM's Python front end keeps process-wide state while it builds (TOPI's tag scope raises "nested op_tag
# is not allowed" when two threads build at once), so host-side builds of concurrent fleet workers take
# turns; exporting, uploading and timing on the boards overlap (TVM's FFI calls release the GIL).
_BUILD_LOCK = threading.Lock()


def conv2d_primfunc(config: Mapping[str, int], dtype: str = "float32") -> tuple[Any, list[tuple[int, ...]]]:
    """A TIR PrimFunc ``main(data, kernel, out)`` for one NCHW conv2d, and its argument shapes.

    Args:
        config: Keys of :data:`~hwprune.contract.CONFIG_COLUMNS`.
        dtype: ``float32`` or ``float16``.

    Returns:
        ``(primfunc, [data_shape, kernel_shape, out_shape])``.

    Raises:
        ValueError: If ``groups`` does not divide the channels, or dtype is ``tf32``.
    """
    from tvm import te, topi

    if dtype not in ("float32", "float16"):
        raise ValueError(f"`dtype` must be 'float32' or 'float16' for TVM, got {dtype!r}")
    c = {k: int(v) for k, v in config.items() if k != "layer"}
    n, ci, co, h, w = c["batch"], c["in_channels"], c["out_channels"], c["height"], c["width"]
    k, s, p, g = c["kernel_size"], c["stride"], c["padding"], c["groups"]
    if ci % g or co % g:
        raise ValueError(f"`groups` must divide in/out channels, got {g} for {ci}->{co}")
    data = te.placeholder((n, ci, h, w), name="data", dtype=dtype)
    kern = te.placeholder((co, ci // g, k, k), name="kernel", dtype=dtype)
    if g == 1:
        out = topi.nn.conv2d_nchw(data, kern, s, p, 1, out_dtype=dtype)
    elif g == ci == co:
        out = topi.nn.depthwise_conv2d_nchw(
            data,
            te.compute((ci, 1, k, k), lambda a, b, y, x: kern[a, b, y, x], name="kw"),
            s,
            p,
            1,
            out_dtype=dtype,
        )
    else:
        out = topi.nn.group_conv2d_nchw(data, kern, s, p, 1, g, out_dtype=dtype)
    shapes = [tuple(int(x) for x in t.shape) for t in (data, kern, out)]
    return te.create_prim_func([data, kern, out]).with_attr("global_symbol", "main"), shapes


class TVMBackend(Backend):
    """apache-tvm 0.27: compile, optionally MetaSchedule-tune, and ``time_evaluator`` one conv2d.

    Options:
        target: TVM target as a JSON dict (0.27 takes only dicts), default ``{"kind": "llvm"}``.
        host: Host target JSON for GPU targets (e.g. ``{"kind": "llvm", "mtriple": "aarch64-linux-gnu"}``).
        rpc: ``null`` for local runs, or ``{host, port, key, tracker}``: with ``tracker: true`` ``host:port``
            is a tracker and ``key`` picks the board, else a server.
        cross_compiler: C++ compiler used to export the module for an RPC board (e.g.
            ``aarch64-linux-gnu-g++``); default: the host compiler.
        tune_trials: MetaSchedule trials per tuned config (0: never tune).
        tune_max_configs: How many configs of one sweep may be tuned (the rest stay untuned).
        tune_timeout_s: Builder/runner timeout per trial (default 120 s; MetaSchedule's 30 s is too short
            on a loaded 2-core machine).
        tune_cores: Parallel build workers while tuning (default 1).
        database_dir: Persistent MetaSchedule database (JSON), reused across runs. Unset, a tuning
            target (``tune_trials`` > 0) uses ``$HWPRUNE_TVM_DB`` (``~/.cache/hwprune/tvm_db``) and an
            untuned one uses no database at all, so it never applies schedules tuned by another target.
        rpc_retries: Reconnects tried when the RPC session fails while timing a config (default 2); the
            config is then timed again once on the new session. Bounded twice: per config, and by
            ``rpc_max_reconnects`` (default 6) per sweep, so a dead board fails each remaining config at
            once as an error row instead of stalling the sweep.
        rpc_retry_wait_s: Wait before the first reconnect, doubled after each (default 1.0).
        rpc_wait_s: Longest wait at the tracker for a free server (default: as long as it takes).
        fleet: Share one sweep between the tracker's servers of ``key``: a number of workers or ``auto``
            (one per server the tracker lists); see :mod:`hwprune.measure.fleet`. Null: one session.
        fleet_retries: A config whose session was lost is handed to another worker at most this many
            times (default 2), then written as an error row.
        fleet_wait_s: How long a fleet worker waits at the tracker for a free server (default 30 s).
    """

    kind = "tvm"
    tracker_sessions = True  # setup(connect=False), connect(stop), session, server: a fleet worker each

    @classmethod
    def times_models(cls, target: Any) -> bool:
        """A local TVM target (llvm here) with apache-tvm installed; a board behind RPC times layers only."""
        import importlib.util

        return not target.options.get("rpc") and importlib.util.find_spec("tvm") is not None

    def setup(self, *, connect: bool = True) -> None:
        """Prepare the TVM target and, for an RPC target, open the session.

        Args:
            connect: Open the RPC session now (fleet workers open it later with :meth:`connect`).
        """
        import tvm

        opts = self.target.options
        tjson = dict(opts.get("target") or {"kind": "llvm"})
        host = opts.get("host")
        self.tvm_target = (
            tvm.target.Target(tjson, host=tvm.target.Target(dict(host))) if host else tvm.target.Target(tjson)
        )
        self.kind_name = str(tjson.get("kind", "llvm"))
        self.trials = int(opts.get("tune_trials", 0) or 0)
        self.max_tuned = int(opts.get("tune_max_configs", 0) or 0)
        # An untuned target (tune_trials 0, no database_dir) must not pick up schedules that another
        # target tuned into the default database folder: its rows would be labelled untuned but run tuned.
        db = opts.get("database_dir") or (_DEFAULT_DB if self.trials > 0 else None)
        self.db_dir: Path | None = None if db is None else Path(db).expanduser()
        self.n_tuned = 0
        self.tune_seconds = 0.0
        self.rpc_cfg = dict(opts.get("rpc") or {})
        self.rpc_retries = int(opts.get("rpc_retries", 2))
        self.rpc_retry_wait_s = float(opts.get("rpc_retry_wait_s", 1.0))
        self.reconnects_left = int(opts.get("rpc_max_reconnects", 6))
        self.reconnects = 0
        self.server = ""
        self.stop: threading.Event | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="hwprune_tvm_")
        self.session = self._connect() if self.rpc_cfg and connect else None

    def connect(self, stop: threading.Event | None = None) -> str:
        """(Re)open the RPC session: through the tracker, on whichever server of the key it hands out.

        Args:
            stop: Set by another thread to give up waiting for a free server.

        Returns:
            The server's ``host:port``.

        Raises:
            RuntimeError: If the tracker or server is unreachable, or no server was free within
                ``rpc_wait_s``; ``TimeoutError`` if ``stop`` was set while waiting.
        """
        self.stop = stop
        self.session = None
        self.session = self._connect()
        return self.server

    def _connect(self) -> Any:
        from tvm import rpc

        host, port = str(self.rpc_cfg.get("host", "127.0.0.1")), int(self.rpc_cfg.get("port", 9190))
        try:
            return self._open(rpc, host, port)
        except (ValueError, KeyError):
            raise
        except TimeoutError as err:
            if self.stop is not None and self.stop.is_set():
                raise
            raise RuntimeError(
                f"{err}: every server of that key is busy or gone; start another with `python -m "
                f"tvm.exec.rpc_server --tracker {host}:{port} --key {self.rpc_cfg.get('key')}`, or raise "
                "`rpc_wait_s`"
            ) from err
        except Exception as err:  # tvm raises TVMError/RuntimeError subclasses that vary across versions
            how = "tracker" if self.rpc_cfg.get("tracker") else "server"
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise RuntimeError(
                f"TVM RPC {how} at {host}:{port} is unreachable ({type(err).__name__}: {first}); "
                "start it on the board with "
                f"`python -m tvm.exec.rpc_server --host 0.0.0.0 --port {port}`, or fix `rpc.host`/`rpc.port` "
                "in the device config"
            ) from err

    def _reconnect(self, err: Exception) -> bool:
        """Try up to ``rpc_retries`` reconnects (with backoff, within the sweep's budget); True on success."""
        host, port = self.rpc_cfg.get("host"), self.rpc_cfg.get("port")
        wait = self.rpc_retry_wait_s
        for attempt in range(1, self.rpc_retries + 1):
            if self.reconnects_left <= 0:
                return False
            self.reconnects_left -= 1
            self.reconnects += 1
            log.warning(
                "TVM RPC session to %s:%s failed (%s); reconnect %d/%d in %.1f s",
                host,
                port,
                err,
                attempt,
                self.rpc_retries,
                wait,
            )
            time.sleep(wait)
            wait *= 2
            try:
                self.session = self._connect()
                return True
            except RuntimeError as again:
                err = again
        return False

    def _open(self, rpc: Any, host: str, port: int) -> Any:
        if self.rpc_cfg.get("tracker"):
            key = self.rpc_cfg.get("key")
            if not key:
                raise ValueError("`rpc.key` must name the board's key when `rpc.tracker` is true, got none")
            wait = self.target.options.get("rpc_wait_s")
            session, self.server = request_session(
                host,
                port,
                str(key),
                session_timeout=int(self.rpc_cfg.get("timeout", 0)),
                wait_s=None if wait is None else float(wait),
                stop=self.stop,
            )
            return session
        self.server = f"{host}:{port}"
        return rpc.connect(host, port, key=str(self.rpc_cfg.get("key", "")))

    def close(self) -> None:
        tmp = getattr(self, "_tmp", None)
        if tmp is not None:
            tmp.cleanup()
        self.session = None

    def device_name(self) -> str:
        return self.hardware_name()

    def hardware_name(self) -> str:
        from hwprune.measure.device_info import cpu_model

        cfg = self.rpc_cfg
        if not cfg:
            return f"TVM {self.kind_name} on {cpu_model()}"
        where = f"{cfg.get('host')}:{cfg.get('port')}"
        if cfg.get("tracker"):  # the servers of one key are boards of one kind; rows name theirs in settings
            return f"TVM {self.kind_name} on rpc tracker {where} key {cfg.get('key')}"
        return f"TVM {self.kind_name} on rpc {where}"

    def versions(self) -> dict[str, str]:
        import tvm

        v = {"tvm": tvm.__version__, "tvm_target": str(self.tvm_target)}
        try:
            import tvm_ffi

            v["tvm_ffi"] = str(getattr(tvm_ffi, "__version__", "?"))
        except ImportError:
            pass
        return v

    def model_runner(self, model: Any, input_shape: tuple[int, ...]) -> ModelRunner:
        """The whole network through TVM on a local target: torch.export -> Relax -> ``tvm.compile`` -> VM.

        The build uses TVM's default schedules (no tuning), as the untuned targets' tables do. A board
        behind RPC is not supported here yet: its steps are planned open loop.

        Raises:
            NotImplementedError: If the target is reached over RPC.
        """
        import copy

        import torch
        import tvm
        from tvm import relax
        from tvm.relax.frontend.torch import from_exported_program

        if self.target.options.get("rpc"):
            raise NotImplementedError(
                f"target {self.target.name!r} is reached over TVM RPC: whole-model timing runs only on a "
                "local TVM target for now (plan open loop, or time the exported model on the board)"
            )
        m = copy.deepcopy(model).cpu().eval()
        shape = tuple(int(s) for s in input_shape)
        with torch.no_grad():
            ep = torch.export.export(m, (torch.zeros(*shape),))
        ex = tvm.compile(from_exported_program(ep, unwrap_unit_return_tuple=True), target=self.tvm_target)
        dev = self._dev()
        vm = relax.VirtualMachine(ex, dev)
        x = tvm.runtime.tensor(np.random.default_rng(0).standard_normal(shape).astype("float32"), dev)

        def fn() -> object:
            return vm["main"](x)

        return ModelRunner(fn, dev.sync)

    def _dev(self) -> Any:
        import tvm

        name = {"llvm": "cpu", "c": "cpu", "opencl": "cl"}.get(self.kind_name, self.kind_name)
        if self.session is not None:
            return self.session.device(name, 0)
        return tvm.device(name, 0)

    def _schedule(self, func: Any) -> tuple[Any, bool, float]:
        """Return (module to compile, tuned?, seconds spent tuning)."""
        import tvm.s_tir.meta_schedule as ms

        db_dir = self.db_dir
        db = None
        if db_dir is not None and (db_dir / "database_workload.json").is_file():
            db = ms.database.JSONDatabase(work_dir=str(db_dir))
            sch = ms.tir_integration.compile_tir(db, func, self.tvm_target)
            if sch is not None:
                return sch.mod, True, 0.0
        if db_dir is not None and self.trials > 0 and self.n_tuned < self.max_tuned:
            db_dir.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            runner: Any = "local"
            if self.rpc_cfg:
                if not self.rpc_cfg.get("tracker"):
                    raise ValueError("tuning over RPC needs a tracker: set `rpc.tracker: true` and `rpc.key`")
                runner = ms.runner.RPCRunner(
                    ms.runner.RPCConfig(
                        tracker_host=str(self.rpc_cfg["host"]),
                        tracker_port=int(self.rpc_cfg["port"]),
                        tracker_key=str(self.rpc_cfg["key"]),
                        session_timeout_sec=120,
                    )
                )
            timeout = int(self.target.options.get("tune_timeout_s", 120))
            if runner == "local":  # 30 s default timeouts are too short on a loaded 2-core machine
                runner = ms.runner.LocalRunner(timeout_sec=timeout)
            db = ms.tune_tir(
                func,
                self.tvm_target,
                str(db_dir),
                max_trials_global=self.trials,
                num_trials_per_iter=min(self.trials, 64),
                runner=runner,
                builder=ms.builder.LocalBuilder(timeout_sec=timeout),
                num_tuning_cores=int(self.target.options.get("tune_cores", 1)),
            )
            spent = time.perf_counter() - t0
            self.n_tuned += 1
            self.tune_seconds += spent
            sch = ms.tir_integration.compile_tir(db, func, self.tvm_target)
            if sch is not None:
                log.info("tuned in %.1f s (%d trials)", spent, self.trials)
                return sch.mod, True, spent
            log.warning(
                "tuning (%d trials, %.1f s) found no valid schedule; building untuned", self.trials, spent
            )
        if self.kind_name != "llvm":
            import tvm
            from tvm.s_tir import dlight

            mod = tvm.IRModule({"main": func})
            with self.tvm_target:
                mod = dlight.ApplyDefaultSchedule(dlight.gpu.Fallback())(mod)
            return mod, False, 0.0
        return func, False, 0.0

    def run(self, config: Mapping[str, int]) -> RunResult:
        import tvm

        with _BUILD_LOCK:
            func, shapes = conv2d_primfunc(config, self.target.dtype)
            before = self.tune_seconds
            mod, tuned, spent = self._schedule(func)
            spent = spent or (self.tune_seconds - before)
            ex = tvm.compile(mod, target=self.tvm_target)
        retried = 0
        if self.session is None and self.rpc_cfg:
            before = self.reconnects
            if not self._reconnect(RuntimeError("no session (an earlier reconnect failed)")):
                where = f"{self.rpc_cfg.get('host')}:{self.rpc_cfg.get('port')}"
                if self.reconnects == before:
                    raise RuntimeError(
                        f"TVM RPC server {where} is gone and the sweep's reconnect budget is spent "
                        f"({self.reconnects} reconnects tried); this config is recorded as an error, the "
                        "sweep goes on (re-run with `retry_errors=True` once the board is back)"
                    )
                n = self.reconnects - before
                raise RuntimeError(
                    f"TVM RPC server {where} is gone: {n} reconnect attempt(s) failed; this config is "
                    "recorded as an error, the sweep goes on (re-run with `retry_errors=True` once the board "
                    "is back)"
                )
            retried = self.reconnects - before
        try:
            res = self._time_remote(ex, shapes)
        except Exception as err:
            if not self.rpc_cfg:
                raise
            self.session = None
            before = self.reconnects
            where = self.server or f"{self.rpc_cfg.get('host')}:{self.rpc_cfg.get('port')}"
            if self.rpc_retries <= 0:  # a fleet worker: it hands the config to another session itself
                raise RuntimeError(
                    f"TVM RPC session to {where} failed ({type(err).__name__}: {str(err).strip()[:200]}); "
                    "no reconnect tried (rpc_retries: 0)"
                ) from err
            if not self._reconnect(err):
                raise RuntimeError(
                    f"TVM RPC session to {where} failed "
                    f"({type(err).__name__}: {str(err).strip()[:200]}) and {self.reconnects - before} "
                    "reconnect attempt(s) failed; this config is recorded as an error, the sweep goes on "
                    "(re-run with `retry_errors=True` once the board is back)"
                ) from err
            retried += self.reconnects - before
            # One more try on the fresh session; if it fails too, the config is an error row.
            res = self._time_remote(ex, shapes)
        from hwprune.measure.evaluator import summarize

        t = summarize(res, self.evaluator.number)
        settings: dict[str, Any] = {
            "tuned": tuned,
            "tune_s": round(spent, 1),
            "trials": self.trials if spent else 0,
            "rpc": bool(self.rpc_cfg),
        }
        if self.rpc_cfg:
            settings["server"] = self.server
        if retried:
            settings["rpc_reconnects"] = retried
        return RunResult(t.median_ms, t.iqr_ms, t.repeats, None, settings)

    def _time_remote(self, ex: Any, shapes: list[tuple[int, ...]]) -> list[float]:
        """Upload (over RPC) and time the compiled module; return the samples in ms."""
        import tvm

        dev = self._dev()
        if self.session is not None:
            # A fresh name per upload: loading a replaced .so under a name the remote process has already
            # loaded crashes its session (kShutdown), e.g. when a noisy config is timed again.
            self._uploads = getattr(self, "_uploads", 0) + 1
            name = f"conv_{abs(hash(tuple(shapes)))}_{self._uploads}.so"
            path = Path(self._tmp.name) / name
            cc = self.target.options.get("cross_compiler")
            if cc:
                from tvm.contrib import cc as tcc

                ex.mod.export_library(str(path), fcompile=tcc.cross_compiler(str(cc)))
            else:
                ex.mod.export_library(str(path))
            self.session.upload(str(path))
            rmod = self.session.load_module(name)
        else:
            rmod = ex.mod
        npdt = np.float16 if self.target.dtype == "float16" else np.float32
        rng = np.random.default_rng(0)
        args = [tvm.runtime.tensor(rng.standard_normal(s).astype(npdt), dev) for s in shapes]
        ev = self.evaluator
        if ev.warmup:  # untimed warm-up runs, in one call on the device (no RPC round trips)
            rmod.time_evaluator(rmod.entry_name, dev, number=ev.warmup, repeat=1)(*args)
        timer = rmod.time_evaluator(
            rmod.entry_name, dev, number=ev.number, repeat=ev.repeat, min_repeat_ms=int(ev.min_repeat_ms)
        )
        return [r * 1e3 for r in timer(*args).results]

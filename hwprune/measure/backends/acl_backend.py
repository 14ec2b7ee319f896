"""ACL backend: PyArmNN in a worker subprocess run by the system python3.

Debian's ``python3-pyarmnn`` is built for the system interpreter, not the venv, so the timing runs in
:mod:`hwprune.measure.backends.acl_worker` (``/usr/bin/python3 acl_worker.py``) and this side talks JSON
lines with it over stdin/stdout. On a board, ``compute: [GpuAcc]`` is ACL's OpenCL backend and
``[CpuAcc]`` its NEON backend; on this x86 machine only ``CpuRef`` exists, which runs ArmNN's reference
C++ kernels: it exercises the plumbing, not ACL.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hwprune.measure.backends.base import Backend, RunResult

log = logging.getLogger(__name__)

__all__ = ["WORKER", "ACLBackend", "armnn_available"]

WORKER = Path(__file__).with_name("acl_worker.py")


def armnn_available(python: str = "/usr/bin/python3") -> bool:
    """Whether ``python`` can import pyarmnn."""
    try:
        return (
            subprocess.run([python, "-c", "import pyarmnn"], capture_output=True, timeout=60).returncode == 0
        )
    except (OSError, subprocess.SubprocessError):
        return False


class ACLBackend(Backend):
    """Times a one-Convolution2d ArmNN network per config in a PyArmNN worker process.

    Options: ``compute`` (list of ArmNN backend ids in preference order, default ``[CpuRef]``),
    ``python`` (interpreter with pyarmnn, default ``/usr/bin/python3``), ``timeout_s`` (per config, 600).
    """

    kind = "acl"

    def setup(self) -> None:
        python = str(self.target.options.get("python", "/usr/bin/python3"))
        if not armnn_available(python):
            raise RuntimeError(
                f"backend 'acl' needs PyArmNN, but `{python} -c 'import pyarmnn'` fails (the interpreter is "
                "missing or lacks pyarmnn): install Debian's python3-pyarmnn and an ArmNN backend "
                "(`apt-get install python3-pyarmnn libarmnn-cpuref-backend22`), or set the target's "
                "`options.python` to an interpreter that can import pyarmnn"
            )
        self._proc = subprocess.Popen(
            [python, str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self._info = self._ask({"cmd": "info"})
        if not self._info.get("ok"):
            raise RuntimeError(f"PyArmNN worker failed to start: {self._info.get('error')}")

    def _ask(self, req: Mapping[str, Any]) -> dict[str, Any]:
        proc = self._proc
        if proc.poll() is not None or proc.stdin is None or proc.stdout is None:
            raise RuntimeError(
                f"PyArmNN worker exited with code {proc.returncode} (is python3-pyarmnn installed?)"
            )
        proc.stdin.write(json.dumps(req) + "\n")
        proc.stdin.flush()
        while True:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"PyArmNN worker exited with code {proc.wait()} during {req.get('cmd')}")
            if line.startswith("{"):
                return json.loads(line)

    def close(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is None:
            return
        try:
            if proc.poll() is None:
                self._ask({"cmd": "quit"})
                proc.wait(timeout=10)
        except (RuntimeError, OSError, subprocess.SubprocessError, ValueError):
            proc.kill()
            proc.wait()

    def device_name(self) -> str:
        return self.hardware_name()

    def hardware_name(self) -> str:
        from hwprune.measure.device_info import cpu_model

        # Which ArmNN backend ran each conv is per row (`settings.compute`, read from ArmNN's profiler).
        return f"ArmNN {self._info.get('armnn', '?')} on {cpu_model()}"

    def versions(self) -> dict[str, str]:
        return {"armnn": str(self._info.get("armnn")), "armnn_backends": str(self._info.get("backends"))}

    def run(self, config: Mapping[str, int]) -> RunResult:
        compute = list(self.target.options.get("compute", ["CpuRef"]))
        rep = self._ask(
            {
                "cmd": "run",
                "config": {k: int(v) for k, v in config.items() if k != "layer"},
                "compute": compute,
                "dtype": self.target.dtype,
                "evaluator": dict(self.evaluator.__dict__),
            }
        )
        if not rep.get("ok"):
            return RunResult(None, None, 0, str(rep.get("error"))[:500], {"compute": compute})
        return RunResult(
            float(rep["latency_ms"]),
            float(rep["spread_ms"]),
            int(rep["repeats"]),
            None,
            {"compute": rep.get("backends") or [], "requested": compute, "number": rep.get("number")},
        )

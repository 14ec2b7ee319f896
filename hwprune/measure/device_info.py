"""Device inventory: CPU, torch CUDA devices, OpenCL platforms (pyopencl), library versions.

Used by ``hwprune devices`` and written as the sidecar JSON next to every measurement table. Every probe
is optional: a missing library shows up as ``None``/absent, never as a crash.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["collect", "cpu_model", "format_inventory", "load_snapshot", "opencl_devices", "write_sidecar"]

_LIBS = (
    "torch",
    "torchvision",
    "numpy",
    "pandas",
    "tvm",
    "tvm_ffi",
    "pyopencl",
    "pytorch_lightning",
    "sklearn",
)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else :func:`platform.processor`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return sorted(f for f in line.split(":", 1)[1].split() if f.startswith(("avx", "amx", "fma")))
    except OSError:
        pass
    return []


def opencl_devices() -> list[dict[str, Any]]:
    """OpenCL platforms and devices through pyopencl (empty if pyopencl or an ICD is missing)."""
    try:
        import pyopencl as cl
    except ImportError:
        return []
    out: list[dict[str, Any]] = []
    try:
        platforms = cl.get_platforms()
    except Exception as err:  # noqa: BLE001 - no ICD installed raises a pyopencl LogicError
        log.debug("no OpenCL platform: %s", err)
        return []
    for p in platforms:
        for d in p.get_devices():
            out.append(
                {
                    "platform": p.name,
                    "platform_version": p.version,
                    "device": d.name.strip(),
                    "type": cl.device_type.to_string(d.type),
                    "version": d.version,
                    "driver": d.driver_version,
                    "compute_units": d.max_compute_units,
                    "clock_mhz": d.max_clock_frequency,
                    "global_mem_mb": d.global_mem_size // 2**20,
                    "local_mem_kb": d.local_mem_size // 1024,
                    "max_work_group_size": d.max_work_group_size,
                }
            )
    return out


def _cuda() -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        return {}
    info: dict[str, Any] = {
        "available": torch.cuda.is_available(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "devices": [],
    }
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            info["devices"].append(
                {
                    "index": i,
                    "name": p.name,
                    "memory_mb": p.total_memory // 2**20,
                    "capability": f"{p.major}.{p.minor}",
                    "sms": p.multi_processor_count,
                }
            )
        try:
            info["driver"] = (
                subprocess.run(
                    ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                    capture_output=True,
                    text=True,
                    timeout=20,
                )
                .stdout.strip()
                .splitlines()[0]
            )
        except (OSError, subprocess.SubprocessError, IndexError):
            info["driver"] = None
    return info


def _armnn_version(python: str = "/usr/bin/python3") -> str | None:
    try:
        r = subprocess.run(
            [python, "-c", "import pyarmnn; print(pyarmnn.ARMNN_VERSION)"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return r.stdout.strip().splitlines()[-1] if r.returncode == 0 and r.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


@functools.lru_cache(maxsize=4)
def _collect_cached(armnn: bool) -> str:
    return json.dumps(_collect(armnn=armnn), default=str)


def collect(*, armnn: bool = True) -> dict[str, Any]:
    """Gather the inventory (probed once per process, then cached).

    Args:
        armnn: Also ask the system python3 for the PyArmNN version (a subprocess, ~1 s).

    Returns:
        A JSON-serialisable dict: host, cpu (model, logical cores, torch threads, flags), cuda, opencl,
        versions.

    Example:
        >>> "cpu" in collect(armnn=False)
        True
    """
    return json.loads(_collect_cached(armnn))


def _collect(*, armnn: bool = True) -> dict[str, Any]:
    """Gather the inventory uncached (see :func:`collect`)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _LIBS:
        try:
            mod = importlib.import_module(name)
            versions[name] = str(getattr(mod, "__version__", "?"))
        except Exception:  # noqa: BLE001 - any import failure just means "not available"
            versions[name] = None
    if armnn:
        versions["armnn"] = _armnn_version()
    threads = None
    try:
        import torch

        threads = torch.get_num_threads()
    except ImportError:
        pass
    return {
        "collected": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "cpu": {
            "model": cpu_model(),
            "logical_cores": os.cpu_count(),
            "torch_threads": threads,
            "flags": _cpu_flags(),
        },
        "cuda": _cuda(),
        "opencl": opencl_devices(),
        "versions": versions,
    }


def format_inventory(info: dict[str, Any]) -> str:
    """Human-readable text of :func:`collect`'s output."""
    lines = [
        f"CPU: {info['cpu']['model']} ({info['cpu']['logical_cores']} logical cores, "
        f"torch threads {info['cpu']['torch_threads']}, {' '.join(info['cpu']['flags'])})"
    ]
    cuda = info.get("cuda") or {}
    if cuda.get("devices"):
        for d in cuda["devices"]:
            lines.append(
                f"CUDA {d['index']}: {d['name']} ({d['memory_mb']} MiB, sm_{d['capability']}, "
                f"{d['sms']} SMs), CUDA {cuda['cuda']}, cuDNN {cuda['cudnn']}, driver {cuda.get('driver')}"
            )
    else:
        lines.append("CUDA: no device")
    if info["opencl"]:
        for d in info["opencl"]:
            lines.append(
                f"OpenCL: {d['platform']} / {d['device']} ({d['type']}, {d['compute_units']} CUs, "
                f"{d['global_mem_mb']} MiB, max work-group {d['max_work_group_size']}, {d['version']})"
            )
    else:
        lines.append("OpenCL: no platform (install pyopencl and an ICD such as pocl-opencl-icd)")
    lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v))
    missing = [k for k, v in info["versions"].items() if not v]
    if missing:
        lines.append("not available: " + ", ".join(missing))
    return "\n".join(lines)


def write_sidecar(csv_path: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> Path:
    """Write ``<table>.json`` next to ``csv_path``: the inventory plus ``extra``, keeping earlier runs.

    Args:
        csv_path: The table's path.
        extra: Keys to add (target, load_note, ...); a ``run`` key is appended to the ``runs`` list.

    Returns:
        The sidecar's path.
    """
    side = Path(csv_path).with_suffix(".json")
    old: dict[str, Any] = {}
    if side.is_file():
        try:
            old = json.loads(side.read_text())
        except json.JSONDecodeError:
            old = {}
    info = collect()
    extra = dict(extra or {})
    run = extra.pop("run", None)
    runs = list(old.get("runs", []))
    if run is not None:
        runs.append(run)
    merged = {**old, **info, **extra, "runs": runs}
    side.write_text(json.dumps(merged, indent=2, default=str) + "\n")
    return side


def _cpu_mhz() -> list[float] | None:
    """Current frequency of each CPU in MHz (cpufreq where the kernel exposes it, else /proc/cpuinfo)."""
    freqs = []
    for f in sorted(Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_cur_freq")):
        try:
            freqs.append(int(f.read_text().strip()) / 1000.0)
        except (OSError, ValueError):
            continue
    if freqs:
        return freqs
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    mhz = [float(line.split(":", 1)[1]) for line in text.splitlines() if line.startswith("cpu MHz")]
    return mhz or None


def _gpu_clocks() -> list[dict[str, str]] | None:
    """SM clock, its maximum, temperature and throttle reasons of each NVIDIA GPU, through nvidia-smi."""
    fields = "index,clocks.sm,clocks.max.sm,temperature.gpu,clocks_throttle_reasons.active"
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    names = fields.split(",")
    return [dict(zip(names, (v.strip() for v in line.split(",")), strict=False)) for line in out.splitlines()]


def load_snapshot(*, gpu: bool = False) -> dict[str, Any]:
    """What else the machine was doing: load average, CPU frequency and (``gpu``) GPU clocks, now.

    A sweep records one snapshot at its start and one at its end in the sidecar, so a table measured on a
    busy or throttled machine says so.

    Args:
        gpu: Also query NVIDIA GPU clocks (``nvidia-smi``); None where unavailable.

    Returns:
        ``{"time", "loadavg" (1, 5, 15 min), "cpus", "cpu_mhz" (per CPU or None), "gpu_clocks"}``.

    Example:
        >>> sorted(load_snapshot())[:2]
        ['cpu_mhz', 'cpus']
    """
    try:
        loadavg: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        loadavg = None
    return {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "loadavg": loadavg,
        "cpus": os.cpu_count(),
        "cpu_mhz": _cpu_mhz(),
        "gpu_clocks": _gpu_clocks() if gpu else None,
    }

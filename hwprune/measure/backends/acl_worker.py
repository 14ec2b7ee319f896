"""PyArmNN worker: time one Convolution2d network per request. Run by the system python3, not the venv.

It imports only the standard library, numpy and pyarmnn (Debian ``python3-pyarmnn``), never hwprune or
torch, because the system interpreter has neither. The parent (:mod:`hwprune.measure.backends.acl_backend`)
writes one JSON request per line on stdin and reads one JSON reply per line on stdout:

- ``{"cmd": "info"}`` -> ``{"ok": true, "armnn": "22.0.0", "backends": [...]}``
- ``{"cmd": "run", "config": {...}, "compute": ["CpuRef"], "dtype": "float32", "evaluator": {...}}``
  -> ``{"ok": true, "latency_ms": .., "spread_ms": .., "repeats": .., "number": .., "backends": [..],
  "requested": [..]}``: ``backends`` are those ArmNN assigned the conv to (read from its profiler),
  ``requested`` the preference list``
  or ``{"ok": false, "error": "..."}``
- ``{"cmd": "quit"}``

Each run builds an INetwork with an input, one Convolution2d (or DepthwiseConvolution2d when
in = out = groups) and an output layer, optimises it for the compute backends named (GpuAcc = ACL OpenCL,
CpuAcc = ACL NEON, CpuRef = ArmNN's reference C++ code, which is no ACL), loads it and times
``EnqueueWorkload`` with the wall clock.
"""

import json
import math
import os
import statistics
import sys
import time

_OUT = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
sys.stdout = sys.stderr  # pyarmnn prints import notes on stdout: keep the reply channel clean
import numpy as np  # noqa: E402
import pyarmnn as ann  # noqa: E402


def _reply(obj):
    _OUT.write(json.dumps(obj) + "\n")
    _OUT.flush()


def _network(c, dtype):
    n, ci, co, h, w = c["batch"], c["in_channels"], c["out_channels"], c["height"], c["width"]
    k, s, p, g = c["kernel_size"], c["stride"], c["padding"], c["groups"]
    dt = ann.DataType_Float16 if dtype == "float16" else ann.DataType_Float32
    npdt = np.float16 if dtype == "float16" else np.float32
    depthwise = g > 1 and g == ci == co
    if g != 1 and not depthwise:
        raise ValueError(f"`groups` must be 1 or in = out = groups (depthwise) for ArmNN, got {g}")
    net = ann.INetwork()
    desc = ann.DepthwiseConvolution2dDescriptor() if depthwise else ann.Convolution2dDescriptor()
    desc.m_PadLeft = desc.m_PadRight = desc.m_PadTop = desc.m_PadBottom = p
    desc.m_StrideX = desc.m_StrideY = s
    desc.m_BiasEnabled = False
    desc.m_DataLayout = ann.DataLayout_NCHW
    rng = np.random.default_rng(0)
    if depthwise:
        # ArmNN releases before 22.02 (library version 22.0.0 is release 20.08) take [M, I, H, W];
        # newer ones take [1, H, W, I*M]. Ask for the old layout where the library is old.
        wshape = (1, ci, k, k) if int(ann.GetMajorVersion()) <= 27 else (1, k, k, co)
    else:
        wshape = (co, ci, k, k)
    try:
        winfo = ann.TensorInfo(ann.TensorShape(wshape), dt, 0.0, 0, True)  # newer: constant flag
    except TypeError:
        winfo = ann.TensorInfo(ann.TensorShape(wshape), dt)
    weights = ann.ConstTensor(winfo, rng.standard_normal(wshape).astype(npdt))
    inp = net.AddInputLayer(0, "x")
    conv = (
        net.AddDepthwiseConvolution2dLayer(desc, weights, None, "conv")
        if depthwise
        else net.AddConvolution2dLayer(desc, weights, None, "conv")
    )
    out = net.AddOutputLayer(0, "y")
    ho = (h + 2 * p - k) // s + 1
    wo = (w + 2 * p - k) // s + 1
    inp.GetOutputSlot(0).Connect(conv.GetInputSlot(0))
    conv.GetOutputSlot(0).Connect(out.GetInputSlot(0))
    inp.GetOutputSlot(0).SetTensorInfo(ann.TensorInfo(ann.TensorShape((n, ci, h, w)), dt))
    conv.GetOutputSlot(0).SetTensorInfo(ann.TensorInfo(ann.TensorShape((n, co, ho, wo)), dt))
    return net, npdt, (n, ci, h, w)


# ArmNN names each workload after the backend that runs it: RefConvolution2dWorkload on CpuRef,
# NeonConvolution2dWorkload on CpuAcc (ACL NEON), ClConvolution2dWorkload on GpuAcc (ACL OpenCL).
_WORKLOAD_BACKENDS = (("Ref", "CpuRef"), ("Neon", "CpuAcc"), ("Cl", "GpuAcc"))


def _workload_names(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if "Workload" in key:
                yield key
            yield from _workload_names(value)


def assigned_backends(profile_json):
    """The backends that ran the conv, from ArmNN's profiler JSON (what Optimize assigned, not asked for).

    >>> assigned_backends('{"ArmNN": {"x": {"RefConvolution2dWorkload_Execute_#8": {}}}}')
    ['CpuRef']
    """
    found = []
    for name in _workload_names(json.loads(profile_json)):
        if "Convolution2d" not in name:
            continue
        for prefix, backend in _WORKLOAD_BACKENDS:
            if name.startswith(prefix) and backend not in found:
                found.append(backend)
    return found


def _run(req, runtime):
    c = {k: int(v) for k, v in req["config"].items()}
    ev = req.get("evaluator", {})
    warmup, number, repeat = int(ev.get("warmup", 3)), int(ev.get("number", 1)), int(ev.get("repeat", 7))
    min_ms, max_number = float(ev.get("min_repeat_ms", 20.0)), int(ev.get("max_number", 10000))
    net, npdt, in_shape = _network(c, req.get("dtype", "float32"))
    prefs = [ann.BackendId(b) for b in req.get("compute", ["CpuRef"])]
    opt, messages = ann.Optimize(net, prefs, runtime.GetDeviceSpec(), ann.OptimizerOptions())
    net_id, _ = runtime.LoadNetwork(opt)
    try:
        in_info = runtime.GetInputTensorInfo(net_id, 0)
        out_info = runtime.GetOutputTensorInfo(net_id, 0)
        x = np.random.default_rng(1).standard_normal(in_shape).astype(npdt)
        inputs = ann.make_input_tensors([(0, in_info)], [x])
        outputs = ann.make_output_tensors([(0, out_info)])

        def clock(nrun):
            t0 = time.perf_counter_ns()
            for _ in range(nrun):
                runtime.EnqueueWorkload(net_id, inputs, outputs)
            return (time.perf_counter_ns() - t0) / 1e6

        # One profiled run records which backend each workload landed on; timing runs unprofiled.
        profiler = runtime.GetProfiler(net_id)
        profiler.EnableProfiling(True)
        runtime.EnqueueWorkload(net_id, inputs, outputs)
        assigned = assigned_backends(profiler.as_json())
        profiler.EnableProfiling(False)
        for _ in range(warmup):
            runtime.EnqueueWorkload(net_id, inputs, outputs)
        one = clock(1)
        nrun = max_number if one <= 0 else min(max_number, max(number, math.ceil(min_ms / one)))
        samples = sorted(clock(nrun) / nrun for _ in range(repeat))
        q = statistics.quantiles(samples, n=4, method="inclusive")
        return {
            "ok": True,
            "latency_ms": statistics.median(samples),
            "spread_ms": max(0.0, q[2] - q[0]),
            "repeats": repeat,
            "number": nrun,
            "backends": assigned,
            "requested": [str(b) for b in prefs],
            "messages": [str(m) for m in (messages or [])][:5],
        }
    finally:
        runtime.UnloadNetwork(net_id)


def main():
    runtime = ann.IRuntime(ann.CreationOptions())
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            if req.get("cmd") == "quit":
                _reply({"ok": True})
                return
            if req.get("cmd") == "info":
                spec = runtime.GetDeviceSpec()
                _reply({"ok": True, "armnn": ann.ARMNN_VERSION, "backends": str(spec)})
                continue
            _reply(_run(req, runtime))
        except Exception as err:  # noqa: BLE001 - results are data; the parent records the error
            _reply({"ok": False, "error": f"{type(err).__name__}: {err}"})


if __name__ == "__main__":
    main()

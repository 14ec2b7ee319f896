"""Runtimes (eager, cuda_graph, inductor, native): validation, and the CPU's inductor for real."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from hwprune.measure import Target, can_time_models, load_target, time_models
from hwprune.measure.runtimes import (
    RUNTIMES,
    Runtime,
    default_runtime,
    launch_free_runtimes,
    runtime_for,
)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"backend": "torch_cpu", "runtime": "cuda_graph"},
            r"`runtime` 'cuda_graph' cannot drive backend 'torch_cpu'",
        ),
        ({"backend": "tvm", "runtime": "inductor"}, r"backend 'tvm' supports runtime \['native'\]"),
        ({"backend": "cudnn", "runtime": "native"}, r"`runtime` 'native' cannot drive backend 'cudnn'"),
        ({"backend": "cudnn", "runtime": "jit"}, r"`runtime` must be one of .*'inductor'.*got 'jit'"),
        (
            {"backend": "torch_cpu", "runtime": "inductor", "options": {"compile_mode": "reduce-overhead"}},
            r"`compile_mode` 'reduce-overhead' replays CUDA graphs and needs backend 'cudnn'",
        ),
        (
            {"backend": "cudnn", "runtime": "inductor", "options": {"compile_mode": "fast"}},
            r"`compile_mode` must be one of",
        ),
        (
            {"backend": "cudnn", "runtime": "inductor", "options": {"recompile_limit": 0}},
            r"`recompile_limit` must be an int >= 1, got 0",
        ),
        (
            {"backend": "cudnn", "runtime": "cuda_graph", "options": {"graph_warmup": 0}},
            r"`graph_warmup` must be an int >= 1, got 0",
        ),
    ],
)
def test_invalid_runtime_combinations_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Target(name="t", **kwargs)


def test_each_backend_gets_its_default_runtime_and_the_catalogue_names_valid_ones() -> None:
    assert default_runtime("torch_cpu") == default_runtime("cudnn") == "eager"
    assert default_runtime("tvm") == default_runtime("acl") == "native"
    assert load_target("cpu_torch").runtime == "eager"
    assert load_target("cpu_torch_inductor").runtime == "inductor"
    assert load_target("cuda_cudnn_fp16_cl_graph").runtime == "cuda_graph"
    ind = load_target("cuda_cudnn_fp16_cl_inductor")
    assert (ind.runtime, ind.dtype, ind.options["channels_last"]) == ("inductor", "float16", True)
    assert runtime_for(ind).mode_for("cuda") == "reduce-overhead"
    assert runtime_for(load_target("cpu_torch_inductor")).mode_for("cpu") == "default"
    assert set(RUNTIMES) == {"eager", "cuda_graph", "inductor", "native"}
    assert launch_free_runtimes("cudnn") == ["cuda_graph", "inductor"]
    assert launch_free_runtimes("torch_cpu") == ["inductor"] and launch_free_runtimes("tvm") == []
    with pytest.raises(ValueError, match="Unknown runtime: 'x'"):
        Runtime.create("x")


def test_inductor_layers_are_timed_as_the_kernels_inductor_calls() -> None:
    ind = runtime_for(load_target("cuda_cudnn_fp16_cl_inductor"))
    assert ind.layer_runtime("cuda").kind == "cuda_graph"  # cuDNN conv, replayed launch-free
    assert ind.layer_runtime("cpu").kind == "eager"  # oneDNN conv, the same kernel eagerly


def test_cuda_graph_on_a_cpu_tensor_says_why() -> None:
    rt = Runtime.create("cuda_graph")
    with pytest.raises(RuntimeError, match="runtime 'cuda_graph' needs a CUDA input"):
        rt.prepare(nn.Conv2d(2, 2, 3), torch.randn(1, 2, 8, 8))


class _Net(nn.Module):
    """A class of its own: dynamo counts recompiles per code object, so no other test shares this one."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.head = nn.Conv2d(width, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)))


def test_inductor_on_the_cpu_compiles_and_matches_eager() -> None:
    import torch._dynamo

    torch._dynamo.reset()
    m, x = _Net(8).eval(), torch.randn(1, 3, 16, 16)
    p = Runtime.create("inductor", {"compile_mode": "default"}).prepare(m, x)
    # dynamo really captured the forward as one graph (no silent eager fallback)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1
    assert p.build_s > 0 and p.runs_per_call == 1
    with torch.inference_mode():
        torch.testing.assert_close(p.fn(), m(x), rtol=1e-4, atol=1e-5)


def test_a_recompile_limit_hit_raises_instead_of_running_eager() -> None:
    """After `recompile_limit` variants of one architecture, dynamo would run the next one eagerly without a
    word (seen on the H200: 9 'compiled' ResNet-18 variants all timed like eager); here it is an error."""
    import torch._dynamo

    torch._dynamo.reset()
    rt = Runtime.create("inductor", {"compile_mode": "default", "recompile_limit": 1})
    x = torch.randn(1, 3, 16, 16)
    rt.prepare(_Net(8).eval(), x)
    with pytest.raises(
        RuntimeError, match=r"runtime 'inductor' \(mode 'default'\): compile failed.*(recompile|cache)"
    ):
        rt.prepare(_Net(12).eval(), x)
    torch._dynamo.reset()
    roomy = Runtime.create("inductor", {"compile_mode": "default", "recompile_limit": 4})
    for w in (8, 12):
        roomy.prepare(_Net(w).eval(), x)  # the default limit (64) leaves room for a closed loop's variants


def test_whole_model_timing_in_the_cpu_inductor_runtime(caplog: pytest.LogCaptureFixture) -> None:
    from hwprune.models import build_model
    from hwprune.verify.calibration import calibration_variants

    assert can_time_models("cpu_torch_inductor")
    wide = build_model("small_resnet")
    (thin,) = calibration_variants(wide, (1, 1, 28, 28), ratios=(0.3,))
    caplog.set_level(logging.INFO, logger="hwprune.measure.model_timing")
    tw, tt = time_models("cpu_torch_inductor", [wide, thin], (1, 1, 28, 28), rounds=3)
    assert tw.build_s > 0 and tt.build_s > 0  # each network compiled, the compile time kept apart
    assert tt.median_ms < tw.median_ms  # ratios, never absolute times
    assert "prepared in" in caplog.text


def test_a_compile_failure_is_named_not_a_dead_sweep(tmp_path: Path) -> None:
    from hwprune.measure.model_timing import ModelTimingError

    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:  # data-dependent control flow: no full graph
                return x
            return -x

    with pytest.raises(ModelTimingError, match=r"network 0 of 1 failed on target 'cpu_torch_inductor'") as ei:
        time_models("cpu_torch_inductor", [Broken()], (1, 1, 4, 4), rounds=1)
    assert ei.value.index == 0


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.cuda
@cuda
def test_a_cuda_graph_replays_the_network_and_removes_the_launches() -> None:
    from hwprune.models import build_model

    m = build_model("small_resnet").cuda().eval()
    x = torch.randn(1, 1, 28, 28, device="cuda")
    p = Runtime.create("cuda_graph", {"graph_min_us": 0}).prepare(m, x)
    assert p.runs_per_call == 1
    with torch.inference_mode():
        ref = m(x)
    p.fn()
    torch.cuda.synchronize()
    eager_t, graph_t = (
        time_models(Target(name="e", backend="cudnn", dtype="float32"), [m], (1, 1, 28, 28), rounds=3)[0],
        time_models(
            Target(name="g", backend="cudnn", dtype="float32", runtime="cuda_graph"),
            [m],
            (1, 1, 28, 28),
            rounds=3,
        )[0],
    )
    assert graph_t.median_ms < eager_t.median_ms  # batch 1 eager is launch-bound on a fast GPU
    assert ref.shape == (1, 10)


@pytest.mark.cuda
@cuda
def test_cuda_graph_layer_rows_name_their_runtime(tmp_path: Path, make_conv) -> None:  # noqa: ANN001
    from hwprune.measure import EvaluatorConfig, measure, read_table

    tgt = load_target("cuda_cudnn_fp16_cl_graph")
    space = [make_conv(64, 64, hw=56, b=32), make_conv(64, 256, hw=56, b=32)]
    ev = EvaluatorConfig(warmup=3, number=1, repeat=5, min_repeat_ms=2.0)
    s = measure(tgt, space, tmp_path / "g.csv", evaluator=ev, progress=False)
    df = read_table(tmp_path / "g.csv")
    assert s.measured == 2 and (df["latency_ms"] > 0).all()
    assert df["settings"].str.contains('"layer_runtime": "cuda_graph"').all()
    assert df["latency_ms"].iloc[1] > 0.8 * df["latency_ms"].iloc[0]  # 4x the MACs is not faster


@pytest.mark.cuda
@cuda
def test_inductor_on_the_gpu_times_the_compiled_network() -> None:
    from hwprune.models import build_model

    (t,) = time_models("cuda_cudnn_fp16_cl_inductor", [build_model("small_resnet")], (8, 1, 28, 28), rounds=2)
    assert t.median_ms > 0 and t.build_s > 0

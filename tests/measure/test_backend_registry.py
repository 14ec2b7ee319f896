"""Capabilities are asked of the backend class, found through the lazy registry (issue 20).

No backend is created and no device touched: each registered class answers what it can do, looking the
classes up imports neither torch, tvm nor pyarmnn, and a backend added as one module plus one registry line
is driven by the runtimes its capabilities fit, with no list of backend names edited anywhere else.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hwprune.measure import Backend, Target
from hwprune.measure.backends import registry
from hwprune.measure.backends.registry import BACKENDS, REGISTRY, backend_class
from hwprune.measure.runtimes import default_runtime, launch_free_runtimes

REPO = Path(__file__).resolve().parents[2]

# kind: (is_gpu, runs_torch, dtypes, tracker_sessions)
EXPECTED = {
    "torch_cpu": (False, True, ("float32",), False),
    "cudnn": (True, True, ("float32", "float16", "tf32"), False),
    "tvm": (False, False, ("float32", "float16", "tf32"), True),
    "acl": (False, False, ("float32", "float16", "tf32"), False),
    "imported": (False, False, ("float32", "float16", "tf32"), False),
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_each_registered_class_answers_its_capabilities(kind: str) -> None:
    cls = backend_class(kind)
    assert issubclass(cls, Backend) and cls.kind == kind
    assert (cls.is_gpu, cls.runs_torch, cls.dtypes, cls.tracker_sessions) == EXPECTED[kind]
    assert Backend.backend_class(kind) is cls and Target(name="t", backend=kind).backend_class() is cls


def test_every_backend_is_registered_once_and_tested_here() -> None:
    assert BACKENDS == tuple(REGISTRY) and set(BACKENDS) == set(EXPECTED)


def test_the_classes_answer_whether_they_time_whole_models_here() -> None:
    import torch

    assert backend_class("torch_cpu").times_models(Target(name="c", backend="torch_cpu"))
    assert backend_class("cudnn").times_models(Target(name="g", backend="cudnn")) == torch.cuda.is_available()
    board = Target(name="b", backend="tvm", options={"rpc": {"host": "h", "port": 9190}})
    assert not backend_class("tvm").times_models(board)
    for kind in ("acl", "imported"):
        assert not backend_class(kind).times_models(Target(name="x", backend=kind))


@pytest.mark.parametrize("lookup", [backend_class, Backend.backend_class, Backend.create])
def test_an_unknown_backend_kind_is_refused_by_name(lookup: object) -> None:
    with pytest.raises(ValueError, match=r"Unknown backend: nope \(`backend` must be one of .*'torch_cpu'"):
        lookup("nope")  # type: ignore[operator]
    with pytest.raises(ValueError, match=r"`backend` must be one of .*'imported'\), got 'nope'"):
        Target(name="t", backend="nope")


def test_the_dtypes_a_target_may_take_come_from_its_backend_class() -> None:
    with pytest.raises(ValueError, match=r"`dtype` must be 'float32' for backend 'torch_cpu', got 'tf32'"):
        Target(name="t", backend="torch_cpu", dtype="tf32")
    assert Target(name="t", backend="cudnn", dtype="tf32").dtype == "tf32"


_NO_HEAVY_IMPORTS = """
import sys
from hwprune.measure.backends.registry import BACKENDS, backend_class
from hwprune.measure.targets import load_target, CONF_DEVICE_DIR
answers = {k: (backend_class(k).is_gpu, backend_class(k).runs_torch) for k in BACKENDS}
built = []
for path in sorted(CONF_DEVICE_DIR.glob("*.yaml")):
    try:
        built.append(load_target(path).backend)
    except ValueError as err:  # a board's YAML leaves its address to the user (???)
        assert "(???)" in str(err), err
print(sorted(m for m in ("torch", "tvm", "pyarmnn") if m in sys.modules), len(answers), sorted(set(built)))
"""


def test_asking_the_classes_and_building_the_catalogue_targets_imports_no_torch_tvm_or_pyarmnn() -> None:
    res = subprocess.run(
        [sys.executable, "-c", _NO_HEAVY_IMPORTS], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().split(maxsplit=2) == [
        "[]",
        str(len(EXPECTED)),
        "['acl', 'cudnn', 'torch_cpu', 'tvm']",
    ]


_NEW_BACKEND = """
from hwprune.measure.backends.base import Backend, RunResult


class GpuBackend(Backend):
    kind = "{gpu}"
    runs_torch = True
    is_gpu = True

    def run(self, config):
        return RunResult(1.0, 0.0, 1)


class BoardBackend(Backend):
    kind = "{board}"
    dtypes = ("float16",)

    def run(self, config):
        return RunResult(1.0, 0.0, 1)
"""


def test_a_new_backend_is_one_module_and_one_registry_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runtimes and the targets follow the new classes' capabilities; no other list names them."""
    mod = f"hwprune_test_backend_{abs(hash(str(tmp_path)))}"
    (tmp_path / f"{mod}.py").write_text(textwrap.dedent(_NEW_BACKEND.format(gpu="npu", board="board")))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry.REGISTRY, "npu", f"{mod}:GpuBackend")
    monkeypatch.setitem(registry.REGISTRY, "board", f"{mod}:BoardBackend")
    try:
        gpu = Target(name="n", backend="npu", dtype="float16", runtime="cuda_graph")
        assert gpu.backend_class().is_gpu and default_runtime("npu") == "eager"
        assert launch_free_runtimes("npu") == ["cuda_graph", "inductor"]
        Target(name="n", backend="npu", runtime="inductor", options={"compile_mode": "reduce-overhead"})
        board = Target(name="b", backend="board", dtype="float16")
        assert board.runtime == "native" and launch_free_runtimes("board") == []
        with pytest.raises(ValueError, match=r"`dtype` must be 'float16' for backend 'board', got 'float32'"):
            Target(name="b", backend="board")
        with pytest.raises(ValueError, match=r"`runtime` 'eager' cannot drive backend 'board'"):
            Target(name="b", backend="board", dtype="float16", runtime="eager")
        with pytest.raises(ValueError, match=r"needs backend 'cudnn' or 'npu'; on backend 'torch_cpu'"):
            Target(
                name="c", backend="torch_cpu", runtime="inductor", options={"compile_mode": "max-autotune"}
            )
    finally:
        sys.modules.pop(mod, None)

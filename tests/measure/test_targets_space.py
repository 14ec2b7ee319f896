"""Target validation, the hwprune/conf/device catalogue (plain YAML and Hydra), model_space and grid_space."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from hwprune.measure import Target, grid_space, load_target, model_space
from hwprune.measure.targets import CONF_DEVICE_DIR

BOARDS = [
    "jetson_nano_cudnn",
    "jetson_tx2_cudnn",
    "jetson_orin_cudnn",
    "hikey970_acl_gpu",
    "odroid_xu4_acl_gpu",
    "rpi4_acl_cpu",
    "hikey970_tvm_opencl",
    "rpi4_tvm_llvm",
]
HERE = ["cpu_torch", "cpu_tvm_llvm", "cuda_cudnn_fp32", "cuda_cudnn_fp16"]
NEEDS_HOST = {"hikey970_tvm_opencl", "rpi4_tvm_llvm"}  # the RPC tracker host is ??? (required)


@pytest.mark.parametrize("name", HERE + BOARDS)
def test_catalogue_yaml(name: str) -> None:
    path = CONF_DEVICE_DIR / f"{name}.yaml"
    text = path.read_text()
    # every top-level key carries a comment
    keys = [ln for ln in text.splitlines() if ln and not ln.startswith((" ", "#"))]
    assert all("#" in ln for ln in keys), [ln for ln in keys if "#" not in ln]
    if name in NEEDS_HOST:
        with pytest.raises(ValueError, match=r"`options.rpc.host` is required"):
            load_target(name)
        cfg = OmegaConf.load(path)
        cfg.options.rpc.host = "10.0.0.2"
        t = instantiate(cfg, _convert_="all")
    else:
        t = load_target(name)
        assert t == instantiate(OmegaConf.load(path))  # Hydra builds the same object
    assert isinstance(t, Target) and t.name == name and t.how_to_measure
    assert isinstance(t.options, dict)


def test_default_target_is_cpu_torch() -> None:
    t = load_target("cpu_torch")
    assert (t.backend, t.dtype, t.batch) == ("torch_cpu", "float32", 1)


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        (
            {"backend": "x"},
            r"`backend` must be one of \('torch_cpu', 'cudnn', 'tvm', 'acl', 'imported'\), got 'x'",
        ),
        ({"dtype": "int8"}, r"`dtype` must be one of .*got 'int8'"),
        ({"batch": 0}, r"`batch` must be an int >= 1 or None, got 0"),
        ({"name": " "}, r"`name` must be a non-empty string"),
        ({"options": [1]}, r"`options` must be a mapping"),
        ({"dtype": "float16"}, r"`dtype` must be 'float32' for backend 'torch_cpu'"),
    ],
)
def test_target_validation(kwargs: dict, msg: str) -> None:
    args = {"name": "t", "backend": "torch_cpu", **kwargs}
    with pytest.raises(ValueError, match=msg):
        Target(**args)


def test_unknown_target_lists_catalogue() -> None:
    with pytest.raises(ValueError, match=r"`target` must be a YAML file or one of \[.*'cpu_torch'"):
        load_target("nope")


def test_model_space_sweeps_from_floor_to_original() -> None:
    space = model_space(
        "small_resnet", (1, 1, 28, 28), floor=0.25, step=1, layers=["layers.2.conv2"], sweep_in="coupled"
    )
    outs = [c["out_channels"] for c in space]
    assert outs == list(range(32, 129))  # 25% .. 100% of 128, every count
    assert {c["in_channels"] for c in space} == {128}
    assert {c["layer"] for c in space} == {"layers.2.conv2"}
    coarse = model_space(
        "small_resnet", (1, 1, 28, 28), step=16, layers=["layers.2.conv2"], sweep_in="coupled"
    )
    assert [c["out_channels"] for c in coarse] == [32, 48, 64, 80, 96, 112, 128]


def test_model_space_couples_depthwise_and_merges_duplicates() -> None:
    space = model_space("mobilenet_v2", (1, 3, 224, 224), step=8, layers=["features.5.conv.1.0"])
    assert all(c["in_channels"] == c["out_channels"] == c["groups"] for c in space)
    assert max(c["groups"] for c in space) == 192 and min(c["groups"] for c in space) == 48
    full = model_space("resnet18", (1, 3, 224, 224), step=64)
    keys = [tuple(sorted((k, v) for k, v in c.items() if k != "layer")) for c in full]
    assert len(keys) == len(set(keys))
    assert any(";" in c["layer"] for c in full)  # identical convs of several layers share one row


def test_model_space_2d_is_the_default_and_samples_both_dimensions() -> None:
    space = model_space("small_resnet", (1, 1, 28, 28), step=16, layers=["layers.2.conv2"], pairs=64)
    pairs = {(c["in_channels"], c["out_channels"]) for c in space}
    assert {(128, 32), (32, 128), (128, 128)} <= pairs  # out sweep at dense in, in sweep at dense out
    both_cut = [(i, o) for i, o in pairs if i < 128 and o < 128]
    assert len(both_cut) >= 50  # 64 drawn, a few may coincide
    # Every residue mod 8 on each side, and all 64 combinations, appear among the pairs.
    assert {i % 8 for i, _ in both_cut} == set(range(8)) == {o % 8 for _, o in both_cut}
    assert len({(i % 8, o % 8) for i, o in both_cut}) == 64
    assert min(i for i, _ in both_cut) < 48  # small counts are sampled (log-uniform draw)
    assert all(32 <= i <= 128 and 32 <= o <= 128 for i, o in both_cut)  # floor 0.25 of 128
    again = model_space("small_resnet", (1, 1, 28, 28), step=16, layers=["layers.2.conv2"], pairs=64)
    assert again == space  # seeded by the layer shape: a resumed sweep skips what it measured


def test_model_space_never_sweeps_the_image_channels() -> None:
    space = model_space("small_resnet", (1, 1, 28, 28), step=4, layers=["stem.0"])
    assert {c["in_channels"] for c in space} == {1}


def test_model_space_sweep_in_all() -> None:
    space = model_space("small_resnet", (1, 1, 28, 28), step=32, layers=["layers.2.conv2"], sweep_in="all")
    assert {(c["in_channels"], c["out_channels"]) for c in space} >= {(32, 128), (128, 32), (128, 128)}


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"floor": 0}, r"`floor` must be in \(0, 1\], got 0"),
        ({"step": 0}, r"`step` must be an integer >= 1, got 0"),
        ({"sweep_in": "x"}, r"`sweep_in` must be one of"),
        ({"pairs": -1}, r"`pairs` must be an integer >= 0, got -1"),
        ({"layers": ["nope"]}, r"`layers` must name convs of the model"),
    ],
)
def test_model_space_validation(kwargs: dict, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        model_space("small_resnet", (1, 1, 28, 28), **kwargs)


def test_grid_space(tmp_path: Path) -> None:
    p = tmp_path / "grid.yaml"
    p.write_text(
        "grids:\n"
        "  - {layer: a, in_channels: 64, out_channels: {start: 16, stop: 64, step: 16}, height: 28,"
        " width: 28, kernel_size: [1, 3], stride: 1}\n"
        "  - {layer: dw, depthwise: true, out_channels: [32, 64], height: 14, width: 14,"
        " kernel_size: 3, stride: 2}\n"
    )
    space = grid_space(p)
    assert len(space) == 4 * 2 + 2
    assert {c["padding"] for c in space if c["kernel_size"] == 3} == {1}
    dw = [c for c in space if c["layer"] == "dw"]
    assert all(c["in_channels"] == c["groups"] == c["out_channels"] for c in dw)
    p.write_text("{in_channels: 8, out_channels: 8.5, height: 4, width: 4, kernel_size: 3, stride: 1}\n")
    with pytest.raises(
        ValueError, match=r"`out_channels` must be an int, a list of ints or a range, got 8.5"
    ):
        grid_space(p)
    p.write_text("{in_channels: 8, height: 4, width: 4, kernel_size: 3, stride: 1, dilation: 2}\n")
    with pytest.raises(ValueError, match=r"got unknown \['dilation'\]"):
        grid_space(p)


@pytest.mark.parametrize("device", HERE)
def test_real_config_composes(compose_cfg, device: str) -> None:
    cfg = compose_cfg(f"device={device}")
    assert instantiate(cfg.device).name == device
    ev = instantiate(cfg.measure.evaluator)
    assert ev.repeat >= 3 and cfg.measure.floor == 0.25 and cfg.measure.step == 1

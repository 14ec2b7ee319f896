"""benchmarks.measure_tables: the device scripts' sweeps as YAML stages, planned and measured."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import measure_tables
from benchmarks.common import load_config
from hwprune.measure import model_space, read_table


def test_shipped_configs_plan_what_the_scripts_measured() -> None:
    cudnn = list(measure_tables.jobs(load_config("tables_cudnn"), Path("t")))
    # fine then coarse; within each: fp32 then fp16, batch 1 then 32, resnet18 then mobilenet_v2
    assert [(j.stage, j.target.name, j.target.batch, j.model) for j in cudnn[:3]] == [
        ("fine", "cuda_cudnn_fp32", 1, "resnet18"),
        ("fine", "cuda_cudnn_fp32", 1, "mobilenet_v2"),
        ("fine", "cuda_cudnn_fp32", 32, "resnet18"),
    ]
    assert len(cudnn) == 16 and cudnn[-1].table == Path("t/cuda_cudnn_fp16/mobilenet_v2_224.csv")
    assert cudnn[0].spaces[0]["layers"] == [
        "layer1.0.conv1",
        "layer2.0.conv2",
        "layer3.0.conv2",
        "layer4.0.conv2",
    ]
    assert cudnn[-1].input_shape == (32, 3, 224, 224) and cudnn[-1].spaces == ({"step": 16},)
    tvm = list(measure_tables.jobs(load_config("tables_tvm_llvm", overrides=["trials=3"]), Path("tables")))
    tune, sweep = tvm
    assert len(tune.configs()) == 1 and tune.target.options["tune_trials"] == 3  # one unpruned config tuned
    assert sweep.target.options["tune_trials"] == 0 and tune.table == sweep.table and len(sweep.spaces) == 4
    fm = list(measure_tables.jobs(load_config("tables_cudnn_fmnist", overrides=["step=8"]), Path("o")))
    assert fm[0].table == Path("o/cuda_cudnn_fp32_heuristics/resnet18_28_b256.csv")
    assert fm[0].input_shape == (256, 1, 28, 28) and fm[0].spaces == ({"floor": 0.25, "step": 8},)


def test_a_stage_is_measured_into_its_table(tmp_path: Path) -> None:
    conf = tmp_path / "tiny.yaml"
    conf.write_text(
        "evaluator: {warmup: 1, number: 1, repeat: 3, min_repeat_ms: 1.0, retime: 0}\n"
        "stages:\n"
        "  - {name: s, targets: [cpu_torch], batches: [1], input: [1, 28, 28],\n"
        "     table: '{target}/{model}.csv', where: {in_channels: 64},\n"
        "     models: {small_resnet: [{step: 32, layers: [layers.2.conv2]}]}}\n"
    )
    assert measure_tables.main(["--config", str(conf), "--out", str(tmp_path)]) == 0
    df = read_table(tmp_path / "cpu_torch" / "small_resnet.csv")
    want = [c for c in model_space("small_resnet", (1, 1, 28, 28), step=32, layers=["layers.2.conv2"])]
    want = [c for c in want if c["in_channels"] == 64]
    assert want and len(df) == len(want) and set(df["in_channels"]) == {64} and (df["latency_ms"] > 0).all()
    bad = tmp_path / "bad.yaml"
    bad.write_text("evaluator: {}\nstages: [{targets: [cpu_torch]}]\n")
    with pytest.raises(ValueError, match=r"`stages\[0\]` must set \['batches', 'input', 'models'\]"):
        measure_tables.main(["--config", str(bad), "--dry-run"])

"""The measure-stage CLI: hwprune measure / devices / staircase, through hwprune.cli.main."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwprune.cli import main
from hwprune.measure import read_table
from hwprune.measure.plot import friendly


def test_devices_lists_pocl_cpu_and_versions(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pyopencl", reason="pyopencl is not installed")
    assert main(["devices"]) == 0
    text = capsys.readouterr().out
    assert "CPU:" in text and "versions:" in text and "torch" in text
    assert "OpenCL: Portable Computing Language" in text  # PoCL (Debian pocl-opencl-icd)
    assert main(["devices", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert any("Portable Computing Language" in d["platform"] for d in info["opencl"])
    assert info["cpu"]["logical_cores"] >= 1


def test_measure_grid_then_staircase(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grid = tmp_path / "g.yaml"
    grid.write_text(
        "{layer: g, in_channels: 8, out_channels: {start: 4, stop: 12, step: 4}, height: 8, width: 8,"
        " kernel_size: 3, stride: 1}\n"
    )
    out = tmp_path / "t.csv"
    args = [
        "measure",
        "--target",
        "cpu_torch",
        "--grid",
        str(grid),
        "--out",
        str(out),
        "--repeat",
        "3",
        "--min-repeat-ms",
        "1",
        "--warmup",
        "1",
        "--no-progress",
        "--load-note",
        "test",
    ]
    assert main(args) == 0
    assert "measured 3, failed 0, skipped 0" in capsys.readouterr().out
    assert main(args) == 0
    assert "measured 0, failed 0, skipped 3" in capsys.readouterr().out
    df = read_table(out)
    assert sorted(df["out_channels"]) == [4, 8, 12] and set(df["target"]) == {"cpu_torch"}
    assert json.loads(out.with_suffix(".json").read_text())["load_note"] == "test"
    png = tmp_path / "s.png"
    assert main(["staircase", "--table", str(out), "--layer", "g", "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["staircase", "--table", str(out), "--layer", "nope", "--out", str(png)]) == 2


def test_measure_model_with_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.csv"
    assert (
        main(
            [
                "measure",
                "--model",
                "small_resnet",
                "--input",
                "1,1,28,28",
                "--step",
                "32",
                "--layers",
                "layers.2.conv2",
                "--limit",
                "2",
                "--repeat",
                "3",
                "--min-repeat-ms",
                "1",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "measured 2" in capsys.readouterr().out
    assert read_table(out)["layer"].tolist() == ["layers.2.conv2"] * 2


def test_bad_input_shape_is_a_usage_error() -> None:
    with pytest.raises(SystemExit):
        main(["measure", "--input", "1,28,28"])


def test_friendly_counts_helper() -> None:
    assert friendly({4: 1.0, 8: 1.0, 12: 2.0, 16: 1.5, 20: 3.0}) == [8, 16, 20]

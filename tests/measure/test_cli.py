"""The measure-stage CLI: hwprune measure / devices / staircase, through hwprune.cli.main."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwprune.cli import main
from hwprune.measure import read_table


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


_SMALL = [
    "--model",
    "small_resnet",
    "--input",
    "1,1,28,28",
    "--step",
    "32",
    "--layers",
    "layers.2.conv2",
    "--limit",
    "1",
    "--repeat",
    "3",
    "--min-repeat-ms",
    "1",
    "--no-progress",
]


def test_measure_without_out_writes_to_the_cache_not_a_shipped_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 12, item 6: no `--out` never writes the target's `table` path relative to the current folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["measure", "--target", "cpu_torch", *_SMALL]) == 0
    cached = tmp_path / "cache" / "hwprune" / "tables" / "cpu_torch" / "small_resnet_28.csv"
    assert str(cached) in capsys.readouterr().out and len(read_table(cached)) == 1
    assert not (tmp_path / "tables").exists()  # the target's `table` (tables/cpu_torch/...) untouched
    space = json.loads(cached.with_suffix(".json").read_text())["space"]
    assert space == {"model": "small_resnet", "input": [1, 1, 28, 28]}  # `hwprune prune` reads it


def test_measure_refuses_to_mix_targets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other.yaml"
    other.write_text(
        (Path(__file__).resolve().parents[2] / "hwprune" / "conf" / "device" / "cpu_torch.yaml")
        .read_text()
        .replace("name: cpu_torch", "name: cpu_torch_other")
    )
    out = tmp_path / "t.csv"
    assert main(["measure", "--target", "cpu_torch", *_SMALL, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["measure", "--target", str(other), *_SMALL, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "must hold one target's rows, got rows of ['cpu_torch'] and a sweep of 'cpu_torch_other'" in err
    assert "--allow-mixed-targets" in err
    assert set(read_table(out)["target"]) == {"cpu_torch"}  # nothing appended
    assert main(["measure", "--target", str(other), *_SMALL, "--out", str(out), "--allow-mixed-targets"]) == 0
    assert set(read_table(out, allow_mixed_targets=True)["target"]) == {"cpu_torch", "cpu_torch_other"}


def test_measure_has_one_flag_per_budget() -> None:
    """Issue 18, item 9: `--budget-s`, `--time-budget` and `--budget` were three budget-like flags."""
    from hwprune.cli import build_parser

    parser = build_parser()
    help_text = parser._subparsers._group_actions[0].choices["measure"].format_help()  # type: ignore[union-attr]
    assert "--budget-s" in help_text and "--adapt-budget" in help_text
    assert "--time-budget" not in help_text and "--budget " not in help_text
    args = parser.parse_args(["measure", "--adaptive", "--time-budget", "30"])  # an old spelling still works
    assert args.budget_s == 30.0
    assert parser.parse_args(["measure", "--budget", "7"]).adapt_budget == 7


def test_ctrl_c_in_measure_exits_130_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 18, item 9: Ctrl-C printed a 50-line traceback (the table was intact: rows are fsynced)."""
    from hwprune.cli import main
    from hwprune.measure import sweep

    def interrupted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "measure", interrupted)
    out = tmp_path / "t.csv"
    assert main(["measure", "--out", str(out), "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "run the same command again to resume" in err and "Traceback" not in err

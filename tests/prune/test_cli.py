"""`hwprune prune` plans for the model the predictor was measured on, or says why not (issue 12, item 7)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from hwprune.cli import main

MEASURE = [
    "measure",
    "--target",
    "cpu_torch",
    "--model",
    "small_resnet",
    "--input",
    "1,1,28,28",
    "--step",
    "16",
    "--layers",
    "layers.1.conv2,layers.2.conv2",
    "--repeat",
    "3",
    "--min-repeat-ms",
    "1",
    "--warmup",
    "1",
    "--no-progress",
]


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real table of two layers of small_resnet at 28x28, with the sidecar `hwprune measure` writes."""
    out = tmp_path_factory.mktemp("prune_cli") / "t.csv"
    assert main([*MEASURE, "--out", str(out)]) == 0
    return out


def test_model_and_input_come_from_the_table(
    table: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # Most of the model's latency lies on shapes the table never measured: refused unless opted in.
    assert main(["prune", "--table", str(table), "--latency-ratio", "0.8"]) == 2
    err = capsys.readouterr().err
    assert "the predictor must have measured the layer shapes of small_resnet at (1, 1, 28, 28)" in err
    assert "--allow-unmeasured" in err
    with caplog.at_level(logging.WARNING, logger="hwprune"):
        rc = main(["prune", "--table", str(table), "--latency-ratio", "0.8", "--allow-unmeasured"])
    assert rc == 0
    assert capsys.readouterr().out.startswith("small_resnet (1, 1, 28, 28): predicted")
    warned = [r.getMessage() for r in caplog.records if "there the predictor guesses" in r.getMessage()]
    assert len(warned) == 1
    # The stem and layers.0 were never measured; layers.1.conv2 and layers.2.conv2 were.
    assert (
        "stem.0 (" in warned[0]
        and "layers.0.conv1 (" in warned[0]
        and "of the predicted latency" in warned[0]
    )
    assert "layers.1.conv2 (" not in warned[0]


def test_a_missed_budget_exits_non_zero(table: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 18, item 8: `--latency-ms 0.00001` printed "NOT met" and exited 0."""
    rc = main(["prune", "--table", str(table), "--latency-ms", "0.00001", "--allow-unmeasured"])
    out, err = capsys.readouterr()
    assert rc == 1 and "NOT met" in out
    assert "hwprune prune: budget NOT met: the plan predicts" in err and "--min-channel-ratio" in err


def test_predictor_alone_requires_model_and_input(
    table: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pred = tmp_path / "p.skops"
    assert (
        main(
            [
                "fit",
                str(table),
                "--out",
                str(pred),
                "--estimator",
                "extra_trees",
                "--transform",
                "log",
                "--cv-folds",
                "0",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["prune", "--predictor", str(pred), "--latency-ratio", "0.8"]) == 2
    err = capsys.readouterr().err
    assert "`--model` and `--input` must be given (no --table was given), got model=None, input=None" in err
    assert (
        main(
            [
                "prune",
                "--predictor",
                str(pred),
                "--model",
                "small_resnet",
                "--input",
                "1,1,28,28",
                "--latency-ratio",
                "0.8",
                "--allow-unmeasured",
            ]
        )
        == 0
    )


def test_table_without_space_requires_model(
    table: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bare = tmp_path / "bare.csv"
    bare.write_text(table.read_text())
    side = json.loads(table.with_suffix(".json").read_text())
    side.pop("space")
    bare.with_suffix(".json").write_text(json.dumps(side))
    assert main(["prune", "--table", str(bare), "--latency-ratio", "0.8"]) == 2
    assert f"the sidecar of {bare} records no model space" in capsys.readouterr().err

"""`hwprune fit` and `hwprune report` warn on a table with many noisy rows (issue 12, item 15)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from hwprune.cli import main
from hwprune.measure.table import warn_if_noisy


def _marked(table: Path, out: Path, share: float) -> Path:
    """A copy of a real table with ``share`` of its rows marked noisy, as a busy sweep marks them."""
    df = pd.read_csv(table)
    n = int(round(share * len(df)))
    df.loc[: n - 1, "settings"] = [
        json.dumps({**json.loads(s), "noisy": True, "retimed": 2}) for s in df.loc[: n - 1, "settings"]
    ]
    df.to_csv(out, index=False)
    return out


def test_fit_and_report_warn_on_many_noisy_rows(
    tiny_table: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    table = _marked(tiny_table, tmp_path / "noisy.csv", 0.3)
    pred = tmp_path / "p.skops"
    with caplog.at_level(logging.WARNING, logger="hwprune"):
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
        assert main(["report", str(pred), str(table)]) == 0
    warned = [r.getMessage() for r in caplog.records if "stayed noisy when measured" in r.getMessage()]
    assert len(warned) == 2 and all(str(table) in m for m in warned)
    caplog.clear()
    clean = pd.DataFrame({"settings": ['{"threads": 1}'] * 19 + ['{"noisy": true}']})  # 5%: at the limit
    assert warn_if_noisy(clean, "clean") == 1
    assert not [r for r in caplog.records if "stayed noisy" in r.getMessage()]

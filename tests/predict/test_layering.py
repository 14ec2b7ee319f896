"""Layering: the layer contract is defined once, at the bottom; the predictor needs no torch for a table."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import hwprune.contract as contract
import hwprune.measure as measure
import hwprune.measure.table as table
import hwprune.predict.features as features

REPO = Path(__file__).resolve().parents[2]

_NO_TORCH = """
import sys
import pandas as pd
from hwprune.predict.predictor import LatencyPredictor
assert "torch" not in sys.modules, "importing the predictor imported torch"
pred = LatencyPredictor(estimator="extra_trees", target_transform="log", cv_folds=0, n_estimators=8)
pred.fit(sys.argv[1])
ms = pred.predict(pd.read_csv(sys.argv[1]).head(5))
assert len(ms) == 5 and (ms > 0).all(), ms
assert "torch" not in sys.modules, "fitting or predicting a table imported torch"
print("ok")
"""


def test_fitting_and_predicting_a_table_imports_no_torch(tiny_table: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-c", _NO_TORCH, str(tiny_table)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_the_layer_contract_has_one_definition() -> None:
    assert table.CONFIG_COLUMNS is contract.CONFIG_COLUMNS
    assert features.CONFIG_COLUMNS is contract.CONFIG_COLUMNS
    assert measure.CONFIG_COLUMNS is contract.CONFIG_COLUMNS  # the package's public names
    assert measure.conv_layer_configs is contract.conv_layer_configs


def test_measure_is_a_plain_package_and_hydra_gets_target_by_its_path() -> None:
    from hydra.utils import get_class

    from hwprune.measure.targets import Target

    assert type(measure) is types.ModuleType and not callable(measure)
    assert get_class("hwprune.measure.targets.Target") is Target
    assert get_class("hwprune.measure.Target") is Target  # the short re-export still resolves
    cpu_torch = REPO / "hwprune/conf/device/cpu_torch.yaml"
    assert "_target_: hwprune.measure.targets.Target" in cpu_torch.read_text()
    assert Target.from_yaml(cpu_torch).name == "cpu_torch"

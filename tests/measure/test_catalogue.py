"""The target catalogue and its shipped tables are package data, found from any directory (issue 20).

The wheel itself is checked by scripts/wheel_check.sh (CI: .ci/run): build, install in a fresh venv, run
``hwprune measure --target cpu_torch`` from a temporary folder.
"""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from omegaconf import DictConfig

from hwprune.cli import catalogue
from hwprune.measure import read_table
from hwprune.measure.targets import CONF_DEVICE_DIR, CONF_DIR, catalogue_names, load_target, resolve_table

REPO = Path(__file__).resolve().parents[2]


def _shipped_tables() -> dict[str, str]:
    """Target name -> the ``table:`` its catalogue YAML names (targets with ``table: null`` left out)."""
    tables = {}
    for name in catalogue_names():
        table = yaml.safe_load(CONF_DEVICE_DIR.joinpath(f"{name}.yaml").read_text())["table"]
        if table:
            tables[name] = table
    return tables


def test_cpu_torch_and_its_table_resolve_from_another_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    target = load_target("cpu_torch")
    assert target.table == "tables/cpu_torch/small_resnet_28.csv"  # as written in the YAML
    path = target.table_path
    assert path is not None and path.is_absolute() and path.is_file()
    assert path.with_suffix(".json").is_file()  # the device sidecar ships with it
    assert len(read_table(path)) > 100
    assert "cpu_torch" in catalogue("device") and "small_resnet" in catalogue("model")


def test_the_catalogue_lies_in_the_package_not_beside_it() -> None:
    import hwprune

    package = Path(hwprune.__file__).parent
    assert Path(str(CONF_DIR)) == package / "conf" and Path(str(CONF_DEVICE_DIR)) == package / "conf/device"
    assert not (REPO / "conf").exists()  # one config tree, inside the package
    assert catalogue("device") == catalogue_names() and len(catalogue_names()) >= 19


def test_a_relative_table_not_shipped_is_read_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tables" / "mine").mkdir(parents=True)
    (tmp_path / "tables" / "mine" / "t.csv").write_text("x\n")
    assert resolve_table("tables/mine/t.csv") == Path("tables/mine/t.csv")  # the user's own file
    assert resolve_table("missing.csv") == Path("missing.csv")  # as written, for the caller's message
    assert resolve_table(tmp_path / "tables/mine/t.csv") == tmp_path / "tables/mine/t.csv"
    assert resolve_table("../outside.csv") == Path("../outside.csv")  # never looked up in the package


def test_every_catalogue_table_is_shipped_as_package_data() -> None:
    """Each ``table:`` of the catalogue exists, and pyproject's package-data puts it (and its sidecar) in
    the wheel; a new shipped table must be added to both."""
    tables = _shipped_tables()
    assert "cpu_torch" in tables
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "hwprune"
    ]
    for name, table in tables.items():
        path = resolve_table(table)
        assert path.is_absolute() and path.is_file(), f"{name}: {table} is not shipped"
        for member in (table, str(Path(table).with_suffix(".json"))):
            assert any(fnmatch.fnmatch(member, p) for p in patterns), f"{name}: {member} not in package-data"
    assert "conf/*/*.yaml" in patterns and "conf/*.yaml" in patterns


def test_hydra_composes_the_package_config_from_another_directory(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = compose_cfg("device=cpu_torch_inductor", "model=resnet18", "devices=[cpu_torch,cuda_cudnn_tf32]")
    assert cfg.device.name == "cpu_torch_inductor" and cfg.model.name == "resnet18"
    assert list(cfg.devices) == ["cpu_torch", "cuda_cudnn_tf32"]


def test_an_unknown_target_names_the_catalogue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    names = r"\[.*'cpu_torch'.*\]"
    with pytest.raises(ValueError, match=rf"`target` must be a YAML file or one of {names}, got 'cpu'"):
        load_target("cpu")

"""`devices=[a,b]`: a plain list of device-group names, loaded from the one catalogue (issue 20)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import DictConfig

from hwprune.callbacks import PredictorFactory, predictor_factories
from hwprune.measure.targets import CONF_DEVICE_DIR


def test_the_catalogue_has_one_yaml_per_target_and_no_mirror_group() -> None:
    conf = CONF_DEVICE_DIR.parent
    assert not conf.joinpath("devices").is_dir()  # the mirror set of issue 20 is gone
    assert conf.joinpath("device", "cpu_torch.yaml").is_file()


def test_devices_default_is_the_single_device(compose_cfg: Callable[..., DictConfig]) -> None:
    cfg = compose_cfg()
    assert cfg.devices is None
    factory = instantiate(cfg.pruning.callbacks.hw_aware.predictor)
    assert isinstance(factory, PredictorFactory) and factory.target.name == "cpu_torch"


def test_devices_list_follows_the_device_group_names(compose_cfg: Callable[..., DictConfig]) -> None:
    cfg = compose_cfg("devices=[cuda_cudnn_tf32,cpu_torch_inductor]", "device=cpu_torch_inductor")
    factories = instantiate(cfg.pruning.callbacks.hw_aware.predictor)
    assert list(factories) == ["cuda_cudnn_tf32", "cpu_torch_inductor"]  # the list's order
    assert factories["cpu_torch_inductor"].target.runtime == "inductor"


def test_devices_list_takes_a_yaml_path(tmp_path: Path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text(
        CONF_DEVICE_DIR.joinpath("cpu_torch.yaml").read_text().replace("name: cpu_torch", "name: my_cpu")
    )
    factories = predictor_factories("cpu_torch", targets=["cpu_torch", str(mine)])
    assert isinstance(factories, dict) and list(factories) == ["cpu_torch", "my_cpu"]


@pytest.mark.parametrize(
    ("targets", "match"),
    [
        ("cpu_torch", r"must be a non-empty list of target names, got 'cpu_torch' \(on the command"),
        ([], r"`targets` must be a non-empty list of target names, got \[\]"),
        (["cpu_torch", "cpu_torch"], r"`targets` must name each target once, got 'cpu_torch' twice"),
        (["cpu_tourch"], r"`target` must be a YAML file or one of \[.*'cpu_torch'.*\], got 'cpu_tourch'"),
    ],
)
def test_bad_devices_lists_raise_clear_errors(targets: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        predictor_factories("cpu_torch", targets=targets)  # type: ignore[arg-type]

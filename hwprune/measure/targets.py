"""Targets: a device with a backend, one Hydra ``hwprune/conf/device/<name>.yaml`` each (the catalogue).

The catalogue and the tables it names are package data: they are found through :mod:`importlib.resources`,
so an installed wheel resolves ``cpu_torch`` and its shipped table from any working directory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath
from typing import Any, Literal, get_args

from hwprune.measure.backends.registry import REGISTRY, BackendTraits, backend_class

log = logging.getLogger(__name__)

__all__ = [
    "CONF_DEVICE_DIR",
    "CONF_DIR",
    "BackendKind",
    "DType",
    "Target",
    "catalogue_names",
    "load_target",
    "resolve_table",
]

BackendKind = str
"""A backend kind: one of :data:`~hwprune.measure.backends.registry.BACKENDS`, the keys of
:data:`hwprune.measure.backends.registry.REGISTRY` (checked when a :class:`Target` is built, so that a new
backend is one registry line, not two lists)."""
DType = Literal["float32", "float16", "tf32"]
#: The package's Hydra config tree ``hwprune/conf`` (package data; a plain :class:`~pathlib.Path` when the
#: package lies on disk, as it does from a checkout or an installed wheel).
CONF_DIR: Traversable = resources.files("hwprune").joinpath("conf")
#: The target catalogue: one ``<name>.yaml`` per target in the ``device`` group of :data:`CONF_DIR`.
CONF_DEVICE_DIR: Traversable = CONF_DIR.joinpath("device")


def _plain(obj: Any) -> Any:
    """OmegaConf containers (from Hydra) to plain dicts/lists, recursively."""
    if hasattr(obj, "_metadata") and hasattr(obj, "_get_node"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(obj, resolve=True)
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


@dataclass(frozen=True)
class Target:
    """A device with a backend, and how to measure it.

    Args:
        name: Target id written in every table row (e.g. ``cpu_torch``).
        backend: One of :data:`~hwprune.measure.backends.registry.BACKENDS` (``torch_cpu``, ``cudnn``,
            ``tvm``, ``acl``, ``imported``).
        dtype: ``float32``, ``float16`` or ``tf32`` (tf32: fp32 tensors, TF32 tensor-core math); one the
            backend's class lists in its ``dtypes`` (``torch_cpu``: ``float32`` only).
        batch: Batch size used for every configuration; ``None`` keeps the space's batch.
        options: Backend settings. torch_cpu: ``threads``, ``channels_last``. cudnn: ``benchmark``,
            ``channels_last``, ``device_index``. tvm: ``target`` (JSON dict), ``rpc`` (``{host, port, key,
            tracker: bool}`` or null), ``tune_trials``, ``tune_configs``, ``database_dir``. acl:
            ``compute`` (list such as ``[GpuAcc, CpuAcc]``), ``python`` (interpreter holding pyarmnn).
        table: Path of this target's measurement table (or ``None``).
        device: Human-readable device name (boards); backends fill it in from the hardware when empty.
        how_to_measure: Board notes: what to install there and how to run the sweep.
        runtime: How the network is executed there (:mod:`hwprune.measure.runtimes`): ``eager``,
            ``cuda_graph`` (cudnn only) or ``inductor`` (``torch.compile``; option ``compile_mode``) for
            the torch backends, ``native`` for TVM, ACL and imported tables. ``None``: the backend's
            default (``eager`` / ``native``). Tables, calibration, the closed loop and verify all time in it.

    Raises:
        ValueError: If ``name`` is empty, ``backend``, ``dtype`` or ``runtime`` is unknown, the backend
            cannot time the dtype, the runtime cannot drive the backend, ``batch`` < 1 or ``options`` is
            not a mapping.

    Example:
        >>> Target(name="cpu", backend="torch_cpu").dtype
        'float32'
    """

    name: str
    backend: BackendKind
    dtype: DType = "float32"
    batch: int | None = 1
    options: Mapping[str, Any] = field(default_factory=dict)
    table: str | None = None
    device: str = ""
    how_to_measure: str = ""
    runtime: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"`name` must be a non-empty string, got {self.name!r}")
        if self.backend not in REGISTRY:
            raise ValueError(f"`backend` must be one of {tuple(REGISTRY)}, got {self.backend!r}")
        if self.dtype not in get_args(DType):
            raise ValueError(f"`dtype` must be one of {get_args(DType)}, got {self.dtype!r}")
        if self.batch is not None and (isinstance(self.batch, bool) or int(self.batch) < 1):
            raise ValueError(f"`batch` must be an int >= 1 or None, got {self.batch!r}")
        opts = _plain(self.options) if self.options is not None else {}
        if not isinstance(opts, Mapping):
            raise ValueError(f"`options` must be a mapping, got {type(self.options).__name__}")
        object.__setattr__(self, "options", dict(opts))
        if self.batch is not None:
            object.__setattr__(self, "batch", int(self.batch))
        dtypes = self.backend_class().dtypes
        if self.dtype not in dtypes:
            want = repr(dtypes[0]) if len(dtypes) == 1 else f"one of {dtypes}"
            raise ValueError(f"`dtype` must be {want} for backend {self.backend!r}, got {self.dtype!r}")
        from hwprune.measure.runtimes import RUNTIMES, Runtime, default_runtime

        if self.runtime is None:
            object.__setattr__(self, "runtime", default_runtime(self.backend))
        elif self.runtime not in RUNTIMES:
            raise ValueError(f"`runtime` must be one of {RUNTIMES} or null, got {self.runtime!r}")
        Runtime.create(str(self.runtime), self.options).check_backend(self.backend)

    def backend_class(self) -> type[BackendTraits]:
        """The class of this target's backend (its module imported on first use): ask it what it can do.

        Example:
            >>> Target(name="gpu", backend="cudnn").backend_class().is_gpu  # doctest: +SKIP
            True
        """
        return backend_class(self.backend)

    @property
    def table_path(self) -> Path | None:
        """:attr:`table` as a file (:func:`resolve_table`), or ``None`` when the target names no table."""
        return resolve_table(self.table) if self.table else None

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str] | Traversable) -> Target:
        """Build a target from a catalogue YAML without Hydra (``_target_`` is checked, then dropped).

        Args:
            path: YAML file: a path, or a :class:`~importlib.resources.abc.Traversable` of the catalogue.

        Returns:
            The target.

        Raises:
            ValueError: If the file's ``_target_`` is not ``hwprune.measure.targets.Target`` (or the
                short re-export ``hwprune.measure.Target``) or a required
                value is still ``???``.
        """
        import yaml

        src = path if isinstance(path, Traversable) else Path(path)
        data = yaml.safe_load(src.read_text(encoding="utf-8")) or {}
        tgt = data.pop("_target_", "hwprune.measure.targets.Target")
        if tgt not in ("hwprune.measure.targets.Target", "hwprune.measure.Target"):
            raise ValueError(f"`_target_` must be hwprune.measure.targets.Target in {path}, got {tgt!r}")
        missing = _missing(data)
        if missing:
            raise ValueError(
                f"`{missing[0]}` is required (???) in {path}: set it in the YAML or with a "
                f"Hydra override such as device.{missing[0]}=..."
            )
        return cls(**data)


def _missing(node: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose value is Hydra's ``???`` (required)."""
    if isinstance(node, Mapping):
        return [m for k, v in node.items() for m in _missing(v, f"{prefix}{k}.")]
    return [prefix[:-1]] if node == "???" else []


def catalogue_names() -> list[str]:
    """The names of the catalogue's targets (the ``device`` group's YAML stems), sorted.

    Example:
        >>> "cpu_torch" in catalogue_names()
        True
    """
    return sorted(f.name.rsplit(".", 1)[0] for f in CONF_DEVICE_DIR.iterdir() if f.name.endswith(".yaml"))


def resolve_table(table: str | os.PathLike[str]) -> Path:
    """A target's ``table`` path as a file: the shipped copy first, then the current directory.

    A relative path such as ``tables/cpu_torch/small_resnet_28.csv`` names a table shipped inside the package
    (``hwprune/tables/...``, package data); a wheel installed anywhere finds it there. When the package holds
    no such file, the path is taken relative to the current directory, so a user's own relative path keeps
    working. Absolute paths (and ``~``) are taken as they are.

    Args:
        table: The ``table`` value of a target (or any table path).

    Returns:
        The shipped file when there is one, else the path as given (``~`` expanded), which may not exist:
        callers that need the file check ``exists()`` and report the path the user wrote.

    Example:
        >>> resolve_table("tables/cpu_torch/small_resnet_28.csv").is_file()
        True
    """
    path = Path(table).expanduser()
    if not path.is_absolute() and ".." not in path.parts:
        shipped = resources.files("hwprune").joinpath(*PurePosixPath(path.as_posix()).parts)
        # Only a real file helps the table readers (pandas, the sidecar JSON); a package imported from a
        # zip archive falls through to the current directory.
        if isinstance(shipped, Path) and shipped.is_file():
            return shipped
    return path


def load_target(name_or_path: str | os.PathLike[str] | Target) -> Target:
    """Resolve ``cpu_torch``, a YAML path or a :class:`Target` to a :class:`Target`.

    Args:
        name_or_path: A catalogue name (``hwprune/conf/device/<name>.yaml``, found from any directory), a
            YAML path, or a target.

    Returns:
        The target.

    Raises:
        ValueError: If the name is not in the catalogue (the message lists the names).

    Example:
        >>> load_target("cpu_torch").backend
        'torch_cpu'
    """
    if isinstance(name_or_path, Target):
        return name_or_path
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return Target.from_yaml(p)
    cand = CONF_DEVICE_DIR.joinpath(f"{name_or_path}.yaml")
    if "/" not in str(name_or_path) and cand.is_file():
        return Target.from_yaml(cand)
    raise ValueError(
        f"`target` must be a YAML file or one of {catalogue_names()}, got {str(name_or_path)!r} "
        f"(the catalogue is {CONF_DEVICE_DIR}; a YAML path is read relative to {Path.cwd()})"
    )

"""The backend registry: each backend kind's class, imported on first use, and what every class can tell.

A caller that needs to know what a backend can do asks its class (:func:`backend_class`), never its name:
whether it times on this machine's CUDA GPU (:attr:`BackendTraits.is_gpu`), which dtypes it takes, whether
torch's runtimes drive it, whether it can time a whole network here. So adding a backend is one module with
its :class:`~hwprune.measure.backends.base.Backend` subclass, one line in :data:`REGISTRY` and its
``conf/device`` YAML.

This module imports no backend, no torch and nothing else of hwprune: the targets and the runtimes, which
the backends import themselves, look the capabilities up here.

Example:
    >>> backend_class("cudnn").is_gpu, backend_class("tvm").runs_torch  # doctest: +SKIP
    (True, False)
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

__all__ = ["BACKENDS", "REGISTRY", "BackendTraits", "backend_class"]

REGISTRY: dict[str, str] = {
    "torch_cpu": "hwprune.measure.backends.torch_backend:TorchCPUBackend",
    "cudnn": "hwprune.measure.backends.torch_backend:CudnnBackend",
    "tvm": "hwprune.measure.backends.tvm_backend:TVMBackend",
    "acl": "hwprune.measure.backends.acl_backend:ACLBackend",
    "imported": "hwprune.measure.backends.imported:ImportedBackend",
}
"""Backend kind -> ``"module:Class"``. The modules import lazily, so torch, tvm and pyarmnn load only where
a backend of theirs is used."""

BACKENDS: tuple[str, ...] = tuple(REGISTRY)
"""The known backend kinds, in registry order (a target's ``backend`` must be one of them)."""

_ALL_DTYPES: tuple[str, ...] = ("float32", "float16", "tf32")


class BackendTraits:
    """What a backend can do, answered by its class before any instance (or device) exists.

    :class:`~hwprune.measure.backends.base.Backend` derives from this; each backend class overrides the
    answers that differ from these defaults (a backend that runs no torch, on no GPU, in every dtype).
    """

    #: The kind it is registered under in :data:`REGISTRY`.
    kind: ClassVar[str] = ""
    #: Whether it times on this machine's CUDA GPU: the sweep's load snapshots then read the GPU clocks, a
    #: network planned for it is exported on CUDA, and the runtimes that replay CUDA graphs can drive it.
    is_gpu: ClassVar[bool] = False
    #: Whether it runs torch modules in this process on this machine: torch's runtimes (``eager``,
    #: ``cuda_graph``, ``inductor``) drive it, and setting it up touches no board and starts no worker, so
    #: naming its hardware is cheap.
    runs_torch: ClassVar[bool] = False
    #: The target dtypes it can time (a target with another one is refused when it is built).
    dtypes: ClassVar[tuple[str, ...]] = _ALL_DTYPES
    #: Whether it reaches boards through a TVM RPC tracker, one session per worker, so that a sweep can be
    #: shared by a fleet of them (:mod:`hwprune.measure.fleet`). Such a class has ``setup(connect=False)``,
    #: ``connect(stop)``, ``session`` and ``server``.
    tracker_sessions: ClassVar[bool] = False

    @classmethod
    def times_models(cls, target: Any) -> bool:
        """Whether this backend can time a whole network on ``target`` in this process (default: no).

        Backends that override :meth:`~hwprune.measure.backends.base.Backend.model_runner` override this
        too; :func:`hwprune.measure.can_time_models` asks it, so no caller lists backends by name.
        """
        del target
        return False


def backend_class(kind: str) -> type[BackendTraits]:
    """The class registered under ``kind``, its module imported on first use.

    Args:
        kind: A backend kind, one of :data:`BACKENDS`.

    Returns:
        The class (a :class:`~hwprune.measure.backends.base.Backend` subclass); ask it what the backend can
        do without creating one.

    Raises:
        ValueError: ``Unknown backend: {kind}``, with the known kinds.

    Example:
        >>> backend_class("torch_cpu").dtypes  # doctest: +SKIP
        ('float32',)
    """
    if kind not in REGISTRY:
        raise ValueError(f"Unknown backend: {kind} (`backend` must be one of {BACKENDS}, got {kind!r})")
    mod_name, cls_name = REGISTRY[kind].split(":")
    cls = getattr(importlib.import_module(mod_name), cls_name)
    if not (isinstance(cls, type) and issubclass(cls, BackendTraits)):
        raise TypeError(f"`{REGISTRY[kind]}` must name a Backend class, got {cls!r}")
    return cls

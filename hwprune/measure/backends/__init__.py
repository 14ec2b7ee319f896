"""Backends: one small interface (:class:`Backend`), a registry (:mod:`.registry`), lazy imports.

The names load on first use, so that the targets and the runtimes can ask the registry what a backend can do
(:func:`backend_class`) without importing the interface, which imports them.
"""

from __future__ import annotations

from hwprune._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "Backend": "hwprune.measure.backends.base",
    "RunResult": "hwprune.measure.backends.base",
    "BACKENDS": "hwprune.measure.backends.registry",
    "BackendTraits": "hwprune.measure.backends.registry",
    "backend_class": "hwprune.measure.backends.registry",
}

__all__ = ["BACKENDS", "Backend", "BackendTraits", "RunResult", "backend_class"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)

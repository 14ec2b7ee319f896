"""Backends: one small interface (:class:`Backend`), a registry (:meth:`Backend.create`), lazy imports."""

from hwprune.measure.backends.base import Backend, RunResult

__all__ = ["Backend", "RunResult"]

"""Lazy re-exports for a package ``__init__``: names load on first use (PEP 562).

So that ``hwprune --help`` and fitting a table import no torch, the subpackages re-export their names
lazily. Each ``__init__`` declares ``_EXPORTS = {name: module}`` and ends with
``__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str], public: Sequence[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return the package's ``__getattr__`` and ``__dir__``.

    Args:
        package: The package's ``__name__``.
        exports: Name -> module that defines it.
        public: The package's ``__all__``.

    Returns:
        ``(__getattr__, __dir__)``: the first imports a name's module on first use and caches the name in
        the package; an unknown name raises ``AttributeError`` as a module would.
    """

    def __getattr__(name: str) -> Any:  # noqa: N807 - the module hook's name
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:  # noqa: N807
        return sorted(public)

    return __getattr__, __dir__

"""Both Lightning packages: ``lightning.pytorch`` (``import lightning as L``) and ``pytorch_lightning``.

The two ship the same classes under different names, and a Trainer of one does not accept the callbacks
of the other (``is_overridden`` and the callback checks use ``isinstance`` on the Trainer's own
``Callback``). So hwprune's callbacks derive from the ``Callback`` of *every* installed package, and at
``setup`` they switch their rank-zero utilities to the package that the user's Trainer comes from: each
package keeps its own ``rank_zero_only.rank``, set only by its own Trainer.

Example:
    >>> from hwprune.callbacks._lightning import CALLBACK_BASES, package_of
    >>> len(CALLBACK_BASES) >= 1
    True
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

__all__ = [
    "CALLBACK_BASES",
    "PACKAGES",
    "LightningPackage",
    "console_info",
    "installed_packages",
    "package_of",
    "rank_zero_only",
    "use_package_of",
]

PACKAGES: tuple[str, ...] = ("lightning.pytorch", "pytorch_lightning")

T = TypeVar("T")


@dataclass(frozen=True)
class LightningPackage:
    """The parts of one Lightning package that hwprune uses.

    Attributes:
        name: ``"lightning.pytorch"`` or ``"pytorch_lightning"``.
        module: The imported package.
        callback: Its ``Callback`` class.
        lightning_module: Its ``LightningModule`` class.
        trainer: Its ``Trainer`` class.
        rank_zero_only: Its ``rank_zero_only`` decorator (holds the process rank that its Trainer sets).
    """

    name: str
    module: ModuleType
    callback: type
    lightning_module: type
    trainer: type
    rank_zero_only: Any


def _load(name: str) -> LightningPackage | None:
    try:
        mod = importlib.import_module(name)
        utilities = importlib.import_module(f"{name}.utilities")
    except ImportError:
        return None
    return LightningPackage(
        name=name,
        module=mod,
        callback=mod.Callback,
        lightning_module=mod.LightningModule,
        trainer=mod.Trainer,
        rank_zero_only=utilities.rank_zero_only,
    )


@functools.cache
def installed_packages() -> tuple[LightningPackage, ...]:
    """Return the Lightning packages that import here, ``lightning.pytorch`` first.

    Returns:
        One :class:`LightningPackage` per installed package.

    Raises:
        ImportError: If neither ``lightning`` nor ``pytorch_lightning`` is installed.

    Example:
        >>> [p.name for p in installed_packages()]  # doctest: +SKIP
        ['lightning.pytorch', 'pytorch_lightning']
    """
    found = tuple(p for p in (_load(n) for n in PACKAGES) if p is not None)
    if not found:
        raise ImportError(
            "hwprune's callbacks need Lightning: `pip install lightning` (or `pytorch-lightning`), "
            "got neither `lightning.pytorch` nor `pytorch_lightning` importable"
        )
    return found


CALLBACK_BASES: tuple[type, ...] = tuple(p.callback for p in installed_packages())


def package_of(obj: Any) -> LightningPackage:
    """Return the Lightning package that a Trainer (or a LightningModule, or a class) comes from.

    Args:
        obj: A Trainer, LightningModule or callback instance, or a class.

    Returns:
        The matching installed package.

    Raises:
        ValueError: If ``obj`` comes from neither package.

    Example:
        >>> import pytorch_lightning as pl  # doctest: +SKIP
        >>> package_of(pl.Trainer()).name  # doctest: +SKIP
        'pytorch_lightning'
    """
    cls = obj if isinstance(obj, type) else type(obj)
    for pkg in installed_packages():
        if issubclass(cls, pkg.trainer | pkg.lightning_module):
            return pkg
    names = [p.name for p in installed_packages()]
    raise ValueError(
        f"`trainer` must be a Trainer of one of {names}, got {cls.__module__}.{cls.__qualname__}"
    )


_active: list[LightningPackage] = []


def use_package_of(trainer: Any) -> LightningPackage:
    """Route :func:`rank_zero_only` through the package of ``trainer`` from now on.

    Args:
        trainer: The user's Trainer (from either package).

    Returns:
        Its package.

    Raises:
        ValueError: If ``trainer`` comes from neither package.
    """
    pkg = package_of(trainer)
    _active[:] = [pkg]
    return pkg


def _rank() -> int:
    pkg = _active[0] if _active else installed_packages()[0]
    return int(getattr(pkg.rank_zero_only, "rank", 0) or 0)


def rank_zero_only(fn: Callable[..., T]) -> Callable[..., T | None]:
    """Like Lightning's ``rank_zero_only``, using the rank that the active Trainer's package holds.

    Args:
        fn: A function to call on global rank 0 only.

    Returns:
        The wrapped function; on other ranks it returns ``None`` without calling ``fn``.

    Example:
        >>> import logging
        >>> rank_zero_only(logging.getLogger("x").info)("only on rank 0")
    """

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> T | None:
        if _rank() == 0:
            return fn(*args, **kwargs)
        return None

    return wrapped


def console_info(message: str) -> None:
    """Show ``message`` on the console on rank 0, as Lightning shows its own notes (``rank_zero_info``).

    Logging through ``logging.getLogger(__name__)`` at INFO shows nothing in a plain user script (Python's
    default level is WARNING); Lightning's ``rank_zero`` logger has a console handler, so an outcome the
    user must see (the budget met) goes there, as ``EarlyStopping(verbose=True)`` reports its stops.

    Args:
        message: The line.
    """
    pkg = _active[0] if _active else installed_packages()[0]
    importlib.import_module(f"{pkg.name}.utilities.rank_zero").rank_zero_info(message)

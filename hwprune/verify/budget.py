"""The latency budget: a share of dense or milliseconds, per target, validated and converted in one place.

A budget is given as ``latency_ratio`` (a fraction in (0, 1) of the dense model's latency) or
``latency_ms`` (an absolute latency), exactly one of the two. With several targets either may be one value
for every target or a mapping target name -> value. :class:`Budget` checks that once and answers every
question the stages ask of it: the final budget of a target in ms, a step's budget ``fraction`` of the way
from dense to it, and a step's share of dense (judged on the measured share where the target is timed).

Example:
    >>> b = Budget.parse(latency_ratio=0.5)
    >>> b.step_ms("cpu_torch", dense_ms=10.0, fraction=0.5)
    7.5
    >>> b.step_share("cpu_torch", fraction=0.5)
    0.75
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Budget"]


def _names(arg: Any) -> list[str]:
    return [str(k) for k in arg]


@dataclass(frozen=True)
class Budget:
    """A latency budget per target: ``ratio`` (share of dense) or ``ms``, one value for all or per target.

    Build it with :meth:`parse`, which validates.

    Attributes:
        ratio: The ``latency_ratio``: a fraction, a mapping target name -> fraction, or None.
        ms: The ``latency_ms``: ms, a mapping target name -> ms, or None.
    """

    ratio: float | Mapping[str, float] | None = None
    ms: float | Mapping[str, float] | None = None

    @classmethod
    def parse(
        cls,
        latency_ratio: Any = None,
        latency_ms: Any = None,
        names: Sequence[str] | None = None,
    ) -> Budget:
        """Validate a budget as the callback and the CLI take it.

        Args:
            latency_ratio: A fraction in (0, 1), or (several targets) a mapping target name -> fraction.
            latency_ms: A latency in ms (> 0), or a mapping target name -> ms.
            names: The targets' names, where known (a mapping must name exactly these).

        Returns:
            The budget.

        Raises:
            ValueError: If both or neither are given, a value is out of range, or a mapping names other
                targets than ``names``.
        """
        if (latency_ratio is None) == (latency_ms is None):
            raise ValueError(
                "exactly one of `latency_ratio` and `latency_ms` must be given, got "
                f"latency_ratio={latency_ratio!r}, latency_ms={latency_ms!r}"
            )
        for what, arg in (("latency_ratio", latency_ratio), ("latency_ms", latency_ms)):
            if arg is None:
                continue
            if isinstance(arg, Mapping):
                if not arg:
                    raise ValueError(f"`{what}` must name at least one target, got an empty mapping")
                if names is not None and sorted(_names(arg)) != sorted(names):
                    raise ValueError(
                        f"`{what}` must name the same targets as `predictor` ({list(names)}), "
                        f"got {_names(arg)}"
                    )
                for name, value in arg.items():
                    _check_value(what, value, f"[{str(name)!r}]")
            else:
                _check_value(what, arg, "")
        ratio = dict(latency_ratio) if isinstance(latency_ratio, Mapping) else latency_ratio
        ms = dict(latency_ms) if isinstance(latency_ms, Mapping) else latency_ms
        return cls(
            ratio={str(k): float(v) for k, v in ratio.items()} if isinstance(ratio, dict) else _num(ratio),
            ms={str(k): float(v) for k, v in ms.items()} if isinstance(ms, dict) else _num(ms),
        )

    @property
    def per_target(self) -> bool:
        """Whether the values are given per target (a mapping)."""
        return isinstance(self.ratio, Mapping) or isinstance(self.ms, Mapping)

    def ratio_of(self, name: str) -> float | None:
        """The target's ``latency_ratio``, or None (a budget in ms)."""
        return _pick(self.ratio, name)

    def ms_of(self, name: str) -> float | None:
        """The target's ``latency_ms``, or None (a share of dense)."""
        return _pick(self.ms, name)

    def final_ms(self, name: str, dense_ms: float) -> float:
        """The target's final budget in ms, given the dense model's latency there."""
        ms = self.ms_of(name)
        if ms is not None:
            return float(ms)
        ratio = self.ratio_of(name)
        assert ratio is not None  # parse() guarantees one of the two
        return float(ratio) * float(dense_ms)

    def step_ms(self, name: str, dense_ms: float, fraction: float) -> float:
        """A step's budget in ms: ``fraction`` of the way from the dense latency to the final budget."""
        d = float(dense_ms)
        return d - float(fraction) * (d - self.final_ms(name, d))

    def step_share(self, name: str, fraction: float) -> float | None:
        """A step's budget as a share of dense (``latency_ratio`` budgets), or None for a budget in ms."""
        ratio = self.ratio_of(name)
        return None if ratio is None else 1.0 - float(fraction) * (1.0 - float(ratio))

    def one(self) -> tuple[float | None, float | None]:
        """``(latency_ratio, latency_ms)`` as single floats; None where absent or given per target."""
        return _num(None if isinstance(self.ratio, Mapping) else self.ratio), _num(
            None if isinstance(self.ms, Mapping) else self.ms
        )


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


def _pick(v: float | Mapping[str, float] | None, name: str) -> float | None:
    if isinstance(v, Mapping):
        return None if v.get(name) is None else float(v[name])
    return None if v is None else float(v)


def _check_value(what: str, value: Any, where: str) -> None:
    ok_type = isinstance(value, int | float) and not isinstance(value, bool)
    if what == "latency_ratio":
        if not (ok_type and 0.0 < float(value) < 1.0):
            raise ValueError(f"`latency_ratio{where}` must be a fraction in (0, 1), got {value!r}")
    elif not (ok_type and math.isfinite(value) and value > 0):
        raise ValueError(f"`latency_ms{where}` must be a latency in ms (> 0), got {value!r}")

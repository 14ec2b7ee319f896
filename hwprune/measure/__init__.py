"""measure: time conv2d layer configurations on a target and keep them in a validated table.

The first stage of the data flow (DESIGN.md): its tables are the ground truth every predictor is fitted on.

Example:
    >>> from hwprune.measure import load_target, measure, model_space, read_table
    >>> space = model_space("small_resnet", (1, 1, 28, 28), step=8)  # doctest: +SKIP
    >>> measure(load_target("cpu_torch"), space, "t.csv")  # doctest: +SKIP
    >>> read_table("t.csv").latency_ms.min() > 0  # doctest: +SKIP
    True
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

# Loaded on first use, so that `hwprune --help` and `import hwprune.measure.cli` import no torch.
_EXPORTS: dict[str, str] = {
    "Backend": "hwprune.measure.backends.base",
    "RunResult": "hwprune.measure.backends.base",
    "EvaluatorConfig": "hwprune.measure.evaluator",
    "Timing": "hwprune.measure.evaluator",
    "ModelTiming": "hwprune.measure.model_timing",
    "can_time_models": "hwprune.measure.model_timing",
    "time_models": "hwprune.measure.model_timing",
    "ConvLayer": "hwprune.measure.space",
    "conv_layer_configs": "hwprune.measure.space",
    "grid_space": "hwprune.measure.space",
    "model_space": "hwprune.measure.space",
    "MeasureSummary": "hwprune.measure.sweep",
    "measure": "hwprune.measure.sweep",
    "CONFIG_COLUMNS": "hwprune.measure.table",
    "TABLE_COLUMNS": "hwprune.measure.table",
    "TableError": "hwprune.measure.table",
    "TableWriter": "hwprune.measure.table",
    "import_table": "hwprune.measure.table",
    "read_table": "hwprune.measure.table",
    "BACKENDS": "hwprune.measure.targets",
    "Target": "hwprune.measure.targets",
    "load_target": "hwprune.measure.targets",
}

__all__ = [
    "BACKENDS",
    "CONFIG_COLUMNS",
    "TABLE_COLUMNS",
    "Backend",
    "ConvLayer",
    "EvaluatorConfig",
    "MeasureSummary",
    "ModelTiming",
    "RunResult",
    "TableError",
    "TableWriter",
    "Target",
    "Timing",
    "can_time_models",
    "conv_layer_configs",
    "grid_space",
    "import_table",
    "load_target",
    "measure",
    "model_space",
    "read_table",
    "time_models",
]


class _CallableModule(types.ModuleType):
    """Lets ``hwprune.measure(...)`` call :func:`measure` while ``hwprune.measure`` stays the subpackage.

    The public API names ``measure`` at the top level, and Hydra resolves ``_target_:
    hwprune.measure.Target`` through ``getattr(hwprune, "measure")``: both must work, so the name is the
    module, and calling the module calls the function.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from hwprune.measure.sweep import measure

        return measure(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name in _EXPORTS:
            value = getattr(importlib.import_module(_EXPORTS[name]), name)
            setattr(self, name, value)
            return value
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *__all__})


sys.modules[__name__].__class__ = _CallableModule

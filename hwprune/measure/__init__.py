"""measure: time conv2d layer configurations on a target and keep them in a validated table.

The first stage of the data flow (DESIGN.md): its tables are the ground truth every predictor is fitted on.

Example:
    >>> from hwprune.measure import load_target, measure, model_space, read_table
    >>> space = model_space("small_resnet", (1, 1, 28, 28), step=8)  # doctest: +SKIP
    >>> measure(load_target("cpu_torch"), space, "t.csv")  # doctest: +SKIP
    >>> read_table("t.csv").latency_ms.min() > 0  # doctest: +SKIP
    True
"""

import sys
import types
from typing import Any

from hwprune.measure.backends.base import Backend, RunResult
from hwprune.measure.evaluator import EvaluatorConfig, Timing
from hwprune.measure.model_timing import ModelTiming, can_time_models, time_models
from hwprune.measure.space import ConvLayer, conv_layer_configs, grid_space, model_space
from hwprune.measure.sweep import MeasureSummary, measure
from hwprune.measure.table import (
    CONFIG_COLUMNS,
    TABLE_COLUMNS,
    TableError,
    TableWriter,
    import_table,
    read_table,
)
from hwprune.measure.targets import BACKENDS, Target, load_target

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

    def __call__(self, *args: Any, **kwargs: Any) -> MeasureSummary:
        return measure(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

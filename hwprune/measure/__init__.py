"""measure: time conv2d layer configurations on a target and keep them in a validated table.

The first stage of the data flow (DESIGN.md): its tables are the ground truth every predictor is fitted on.
The layer contract the tables share with the later stages (:data:`CONFIG_COLUMNS`,
:func:`conv_layer_configs`) lives in :mod:`hwprune.contract` and is re-exported here.

``hwprune.measure`` is this package; the sweep itself is :func:`hwprune.measure.measure`. Hydra configs name
classes by their defining module (``hwprune.measure.targets.Target``), though the short names re-exported
here resolve too.

Example:
    >>> from hwprune.measure import load_target, measure, model_space, read_table
    >>> space = model_space("small_resnet", (1, 1, 28, 28), step=8)  # doctest: +SKIP
    >>> measure(load_target("cpu_torch"), space, "t.csv")  # doctest: +SKIP
    >>> read_table("t.csv").latency_ms.min() > 0  # doctest: +SKIP
    True
"""

from __future__ import annotations

from hwprune._lazy import lazy_exports

# Loaded on first use, so that `hwprune --help` and `import hwprune.measure.cli` import no torch.
_EXPORTS: dict[str, str] = {
    "Backend": "hwprune.measure.backends.base",
    "RunResult": "hwprune.measure.backends.base",
    "EvaluatorConfig": "hwprune.measure.evaluator",
    "Timing": "hwprune.measure.evaluator",
    "ModelTiming": "hwprune.measure.model_timing",
    "can_time_models": "hwprune.measure.model_timing",
    "time_models": "hwprune.measure.model_timing",
    "ConvLayer": "hwprune.contract",
    "conv_layer_configs": "hwprune.contract",
    "grid_space": "hwprune.measure.space",
    "model_space": "hwprune.measure.space",
    "MeasureSummary": "hwprune.measure.sweep",
    "measure": "hwprune.measure.sweep",
    "CONFIG_COLUMNS": "hwprune.contract",
    "TABLE_COLUMNS": "hwprune.measure.table_schema",
    "TableError": "hwprune.measure.table_checks",
    "TableWriter": "hwprune.measure.table",
    "import_table": "hwprune.measure.table",
    "read_table": "hwprune.measure.table",
    "BACKENDS": "hwprune.measure.backends.registry",
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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)

"""predict: fit a per-target latency predictor on a measurement table, save it safely, report its error.

It reads the layer contract from :mod:`hwprune.contract` and tables through :mod:`hwprune.measure.table`;
fitting and predicting a table import no torch. Adaptive sampling, which fits predictors to decide what to
measure (``hwprune measure --adaptive`` and ``--adapt-from``), is :mod:`hwprune.predict.adapt`.

Example:
    >>> from hwprune.predict import LatencyPredictor
    >>> pred = LatencyPredictor().fit("tables/cpu_torch/small_resnet_28.csv")  # doctest: +SKIP
    >>> pred.save("pred.skops")  # doctest: +SKIP
"""

from __future__ import annotations

from hwprune._lazy import lazy_exports

# Loaded on first use, so that `hwprune --help` imports neither scikit-learn nor torch.
_EXPORTS: dict[str, str] = {
    "FEATURE_SCHEMA_VERSION": "hwprune.predict.features",
    "TILE_SIZES": "hwprune.predict.features",
    "DevicePeaks": "hwprune.predict.features",
    "build_features": "hwprune.predict.features",
    "feature_names": "hwprune.predict.features",
    "TRUSTED_TYPES": "hwprune.predict.io",
    "PredictorFileError": "hwprune.predict.io",
    "LatencyPredictor": "hwprune.predict.predictor",
    "load_table": "hwprune.predict.tables",
    "within_share": "hwprune.predict.tables",
    "PredictorReport": "hwprune.predict.report",
    "evaluate": "hwprune.predict.report",
    "friendly_mask": "hwprune.staircase",
    "held_out_predictions": "hwprune.predict.report",
}

__all__ = [
    "FEATURE_SCHEMA_VERSION",
    "TILE_SIZES",
    "TRUSTED_TYPES",
    "DevicePeaks",
    "LatencyPredictor",
    "PredictorFileError",
    "PredictorReport",
    "build_features",
    "evaluate",
    "feature_names",
    "friendly_mask",
    "held_out_predictions",
    "load_table",
    "within_share",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)

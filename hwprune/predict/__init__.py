"""predict: fit a per-target latency predictor on a measurement table, save it safely, report its error.

Example:
    >>> from hwprune.predict import LatencyPredictor
    >>> pred = LatencyPredictor().fit("tables/cpu_torch/small_resnet_28.csv")  # doctest: +SKIP
    >>> pred.save("pred.skops")  # doctest: +SKIP
"""

from hwprune.predict.features import (
    FEATURE_SCHEMA_VERSION,
    TILE_SIZES,
    DevicePeaks,
    build_features,
    feature_names,
)
from hwprune.predict.io import TRUSTED_TYPES, PredictorFileError
from hwprune.predict.predictor import LatencyPredictor, load_table, within_share

__all__ = [
    "FEATURE_SCHEMA_VERSION",
    "TILE_SIZES",
    "TRUSTED_TYPES",
    "DevicePeaks",
    "LatencyPredictor",
    "PredictorFileError",
    "build_features",
    "feature_names",
    "load_table",
    "within_share",
]

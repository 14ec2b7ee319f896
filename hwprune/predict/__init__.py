"""predict: fit a per-target latency predictor on a measurement table, save it safely, report its error.

Example:
    >>> from hwprune.predict import LatencyPredictor
    >>> pred = LatencyPredictor().fit("tables/cpu_torch/small_resnet_28.csv")  # doctest: +SKIP
    >>> pred.save("pred.skops")  # doctest: +SKIP
"""

from hwprune.predict.adaptive import AdaptiveResult, AdaptiveRound, adaptive_measure, replay_adaptive
from hwprune.predict.features import (
    FEATURE_SCHEMA_VERSION,
    TILE_SIZES,
    DevicePeaks,
    build_features,
    feature_names,
)
from hwprune.predict.io import TRUSTED_TYPES, PredictorFileError
from hwprune.predict.predictor import LatencyPredictor, load_table, within_share
from hwprune.predict.report import PredictorReport, evaluate, friendly_mask, held_out_predictions

__all__ = [
    "FEATURE_SCHEMA_VERSION",
    "TILE_SIZES",
    "TRUSTED_TYPES",
    "AdaptiveResult",
    "AdaptiveRound",
    "DevicePeaks",
    "LatencyPredictor",
    "PredictorFileError",
    "PredictorReport",
    "adaptive_measure",
    "build_features",
    "evaluate",
    "feature_names",
    "friendly_mask",
    "held_out_predictions",
    "load_table",
    "replay_adaptive",
    "within_share",
]

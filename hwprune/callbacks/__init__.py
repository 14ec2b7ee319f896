"""callbacks: the Lightning side of hwprune (the main job's pruning, and the baselines it is compared with).

Example:
    >>> from hwprune.callbacks import HardwareAwarePruning
    >>> cb = HardwareAwarePruning("pred.skops", (1, 1, 28, 28), latency_ratio=0.5)  # doctest: +SKIP
"""

from hwprune.callbacks.hw_pruning import HardwareAwarePruning
from hwprune.callbacks.predictor_factory import PredictorFactory, ensure_predictor, predictor_factories
from hwprune.callbacks.uninstructed import UninstructedPruning
from hwprune.prune.bundle import load_pruned
from hwprune.prune.optim import remap_optimizer_state
from hwprune.verify.report import PruneStepLog

__all__ = [
    "HardwareAwarePruning",
    "PredictorFactory",
    "PruneStepLog",
    "UninstructedPruning",
    "ensure_predictor",
    "predictor_factories",
    "load_pruned",
    "remap_optimizer_state",
]

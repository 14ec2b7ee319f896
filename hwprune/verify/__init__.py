"""verify: the stage that makes a prune step hardware-aware. Plan, time on every target, accept or refuse.

For one target or several (one target is a list of one):

- :mod:`~hwprune.verify.budget`: the budget (:class:`Budget`: a share of dense or ms, per target),
  validated and converted in one place;
- :mod:`~hwprune.verify.sides`: each target's predictor, batch and the Target it is timed on here
  (:class:`TargetSide`), its whole-model calibration and what its budget is a share of;
- :mod:`~hwprune.verify.step`: :func:`decide`, the one decision path of a prune step;
- :mod:`~hwprune.verify.loop`: the closed loop under it (:func:`verify_plan`; :func:`plan_and_verify` for
  one predictor);
- :mod:`~hwprune.verify.stopwatch` and :mod:`~hwprune.verify.calibration`: how every whole-model check
  times a model against the dense one, and how a predictor learns the whole model;
- :mod:`~hwprune.verify.report`: the report rows (:class:`PruneStepLog`, each target's final figures).

It sits above ``prune`` (which plans) and below ``callbacks`` (the Lightning hooks, state, schedule and
rollback, which call into it).

Example:
    >>> from hwprune.verify import Budget, TargetSide, decide
    >>> side = TargetSide("cpu_torch", predictor, batch=1)  # doctest: +SKIP
    >>> d = decide(net, [side], (1, 1, 28, 28), {"cpu_torch": 0.2}, planner_options={})  # doctest: +SKIP
"""

from __future__ import annotations

from hwprune._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "Budget": "hwprune.verify.budget",
    "TargetSide": "hwprune.verify.sides",
    "PruneDecision": "hwprune.verify.step",
    "decide": "hwprune.verify.step",
    "LoopRound": "hwprune.verify.rounds",
    "VerifiedPlan": "hwprune.verify.loop",
    "plan_and_verify": "hwprune.verify.loop",
    "verify_plan": "hwprune.verify.loop",
    "PruneStepLog": "hwprune.verify.report",
    "calibrate_on_target": "hwprune.verify.calibration",
    "STOPWATCH": "hwprune.verify.stopwatch",
    "time_against_dense": "hwprune.verify.stopwatch",
}

__all__ = [
    "Budget",
    "LoopRound",
    "PruneDecision",
    "PruneStepLog",
    "STOPWATCH",
    "TargetSide",
    "VerifiedPlan",
    "calibrate_on_target",
    "decide",
    "plan_and_verify",
    "time_against_dense",
    "verify_plan",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)

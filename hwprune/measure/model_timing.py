"""Whole-network timing on a target: what the closed loop, ``verify`` and the calibration measure.

Single layers are timed by the backends' :meth:`~hwprune.measure.Backend.run`; a pruned model's real
latency also holds BatchNorm, activations, adds, pooling, the classifier and every launch between them, so
the plan is checked by timing the whole network with the target's own settings (threads on a CPU; dtype,
TF32 and ``cudnn.benchmark`` on a GPU). Several models are timed in *interleaved rounds*: each round takes
one sample of every model, so a burst of load on a shared machine slows all of them alike and their ratio
stays true.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from hwprune.measure import contention
from hwprune.measure.backends.base import Backend
from hwprune.measure.evaluator import EvaluatorConfig, summarize, time_callable
from hwprune.measure.targets import Target, load_target

log = logging.getLogger(__name__)

__all__ = ["ModelTiming", "ModelTimingError", "can_time_models", "time_models"]


class ModelTimingError(RuntimeError):
    """A network could not be prepared or run on the target (a failed graph capture or compile).

    Attributes:
        index: The failing network's position in the ``models`` passed to :func:`time_models`.
    """

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


@dataclass(frozen=True)
class ModelTiming:
    """One model's whole-network latency on a target, over interleaved rounds.

    Attributes:
        median_ms: Median over rounds of each round's median forward time.
        iqr_ms: Inter-quartile range over the rounds.
        rounds_ms: Each round's sample.
        build_s: Seconds the target's runtime took to prepare the network (graph capture, compile).
        slowdowns: Each round's stretch by the timing thread's waits for a CPU (None: unknown; see
            :mod:`hwprune.measure.contention`); empty when not measured.
    """

    median_ms: float
    iqr_ms: float
    rounds_ms: tuple[float, ...]
    build_s: float = 0.0
    slowdowns: tuple[float | None, ...] = ()

    def speedup_over(self, reference: ModelTiming) -> tuple[float, float]:
        """Median and IQR of the per-round ratio ``reference / self`` (rounds are paired in time).

        Load on a shared machine comes in bursts that slow one round of every model alike, so the ratio
        within a round is steadier than the ratio of the medians.
        """
        ratios = [r / s for r, s in zip(reference.rounds_ms, self.rounds_ms, strict=True)]
        t = summarize(ratios, 1)
        return float(statistics.median(ratios)), t.iqr_ms

    @property
    def spread(self) -> float:
        """Relative spread, IQR / median."""
        return self.iqr_ms / self.median_ms if self.median_ms > 0 else float("inf")


def can_time_models(target: Target | str) -> bool:
    """Whether this process can time a whole network on ``target``.

    The backend answers (:meth:`~hwprune.measure.Backend.times_models`): torch CPU always; cuDNN with a
    GPU; TVM on a local target (not over RPC) when apache-tvm is installed.

    Example:
        >>> can_time_models("cpu_torch")
        True
    """
    target = load_target(target)
    return Backend.backend_class(target.backend).times_models(target)


def time_models(
    target: Target | str,
    models: Sequence[nn.Module],
    input_shape: Sequence[int],
    *,
    rounds: int = 5,
    evaluator: EvaluatorConfig | None = None,
    progress: bool = False,
) -> list[ModelTiming]:
    """Time whole networks on ``target`` in interleaved rounds.

    Each round takes one :func:`~hwprune.measure.evaluator.time_callable` sample per model (warm-up,
    then ``evaluator.repeat`` samples of at least ``min_repeat_ms``; the round keeps their median). The
    models are copied, so the caller's modules are not moved, cast or switched to eval mode.

    Args:
        target: A :class:`Target` or catalogue name; its backend must time whole models here
            (:func:`can_time_models`).
        models: The networks.
        input_shape: ``(batch, channels, height, width)``; the batch is the deployment batch.
        rounds: Interleaved rounds (>= 1).
        evaluator: Settings of each round's sample (default: 1 warm-up, 3 samples of >= 50 ms; short
            samples of a launch-bound GPU network spread by 20-60% on the lent H200).
        progress: Show a progress bar while the networks are prepared, in a runtime that compiles them
            (a ``torch.compile`` takes 6-17 s a network on the H200, 3-20 s on this CPU).

    Returns:
        One :class:`ModelTiming` per model, in order.

    Raises:
        ValueError: If ``rounds`` < 1 or ``models`` is empty.
        NotImplementedError: If the backend cannot time a whole model in this process.
        ModelTimingError: If a network cannot be prepared or run in the target's runtime (a failed graph
            capture or compile); its ``index`` names the network and the message holds the error.
        RuntimeError: If the backend cannot start (no GPU for a cuDNN target).

    Example:
        >>> from hwprune.models import build_model
        >>> t = time_models("cpu_torch", [build_model("small_resnet")], (1, 1, 28, 28), rounds=1)
        >>> t[0].median_ms > 0
        True
    """
    if isinstance(rounds, bool) or int(rounds) < 1:
        raise ValueError(f"`rounds` must be an int >= 1, got {rounds!r}")
    if not models:
        raise ValueError("`models` must hold at least one network, got none")
    target = load_target(target)
    cfg = evaluator or EvaluatorConfig(warmup=1, number=1, repeat=3, min_repeat_ms=50.0)
    backend = Backend.create(target.backend, target, cfg)
    shape = tuple(int(s) for s in input_shape)
    backend.setup()
    try:
        runners = []
        from tqdm.auto import tqdm

        from hwprune.measure.runtimes import runtime_for

        bar = tqdm(
            list(enumerate(models)),
            desc=f"{target.name}: preparing ({target.runtime})",
            unit="net",
            disable=not (progress and runtime_for(target).compiles),
            leave=False,
        )
        for i, m in bar:
            try:
                r = backend.model_runner(m, shape)
                # first calls build kernels / pick algorithms: keep them out of every round
                time_callable(
                    r.fn, EvaluatorConfig(warmup=2, number=1, repeat=3, min_repeat_ms=0.0), sync=r.sync
                )
            except NotImplementedError:
                raise
            except Exception as err:
                raise ModelTimingError(
                    i,
                    f"network {i} of {len(models)} failed on target {target.name!r} (runtime "
                    f"{target.runtime!r}): {type(err).__name__}: {err}",
                ) from err
            if r.build_s > 0:
                log.info(
                    "target %s: network %d prepared in %.1f s (%s)", target.name, i, r.build_s, target.runtime
                )
            runners.append(r)
        samples: list[list[float]] = [[] for _ in models]
        waits: list[list[float | None]] = [[] for _ in models]
        for _ in range(int(rounds)):
            for i, r in enumerate(runners):
                with contention.watch() as span:  # a busy neighbour stretches every sample alike
                    samples[i].append(time_callable(r.fn, cfg, sync=r.sync, timer=r.timer).median_ms)
                waits[i].append(span.slowdown)
    finally:
        backend.close()
    load = contention.summarize_contention([w for ws in waits for w in ws], cfg.max_slowdown)
    if load.contended:
        log.warning("whole-model timing on %s: %s", target.name, load.describe("samples"))
    out = []
    for s, r, w in zip(samples, runners, waits, strict=True):
        t = summarize(s, 1)
        out.append(ModelTiming(float(statistics.median(s)), t.iqr_ms, tuple(s), float(r.build_s), tuple(w)))
    return out

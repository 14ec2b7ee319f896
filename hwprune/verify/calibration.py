"""Whole-model calibration on the target: time the dense network and pruned variants end to end.

A conv table knows the convs. The rest of a network's time (BatchNorm, activations, adds, pooling, the
classifier, launches) is 22-42% of a ResNet on a GPU and a third of the main job's model on a CPU
(DESIGN.md). :func:`calibrate_on_target` times the dense network and a few randomly pruned variants of it
on the target itself and fits the predictor's whole-model terms
(:meth:`hwprune.predict.LatencyPredictor.calibrate`). The variants' widths are random, odd counts
included, so they also yield the conv configs that pruned models really contain (:func:`variant_configs`),
which the layer-space sweep measures with the rest.
"""

from __future__ import annotations

import copy
import logging
import random
from collections.abc import Sequence
from typing import Any

from torch import nn

from hwprune.contract import conv_layer_configs
from hwprune.prune.graph import apply_removals, build_groups

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_RATIOS",
    "LAUNCH_BOUND_SHARE",
    "calibrate_on_target",
    "calibration_variants",
    "launch_bound_warning",
    "variant_configs",
]

LAUNCH_BOUND_SHARE = 0.5
"""A target whose calibrated dispatch floor or fixed overhead is more than this share of the dense model's
measured latency is launch-bound: pruning channels cannot remove that time."""

DEFAULT_RATIOS: tuple[float, ...] = (0.85, 0.7, 0.55, 0.4, 0.3)
"""Mean kept share of channels of each calibration variant (the dense model is always measured too)."""


def calibration_variants(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    seed: int = 0,
    ignored_layers: Sequence[str | nn.Module] = (),
    jitter: float = 0.2,
) -> list[nn.Module]:
    """Pruned copies of ``model``: each prunable group keeps a random share of its channels near a ratio.

    Every group of variant ``i`` keeps ``round(width * ratios[i] * u)`` channels, ``u`` uniform in
    ``[1 - jitter, 1 + jitter]``, at least one, at most its width; which channels go is random too. The
    counts are deliberately not rounded to any multiple: the calibration must see what odd widths cost.

    Args:
        model: The dense model (not modified).
        input_shape: Input shape including batch.
        ratios: One kept share in (0, 1] per variant.
        seed: Seed of the widths and channel choice.
        ignored_layers: As for :func:`hwprune.prune.graph.build_groups`.
        jitter: Relative spread of each group's share around its variant's ratio, in [0, 1).

    Returns:
        One pruned copy per ratio.

    Raises:
        ValueError: If a ratio is not in (0, 1] or ``jitter`` not in [0, 1).

    Example:
        >>> from hwprune.models import build_model
        >>> vs = calibration_variants(build_model("small_resnet"), (1, 1, 28, 28), ratios=(0.5,))
        >>> sum(p.numel() for p in vs[0].parameters()) < 309_162
        True
    """
    if not 0 <= jitter < 1:
        raise ValueError(f"`jitter` must be in [0, 1), got {jitter!r}")
    bad = [r for r in ratios if not (isinstance(r, int | float) and 0 < r <= 1)]
    if bad:
        raise ValueError(f"`ratios` must be fractions in (0, 1], got {bad}")
    rng = random.Random(seed)
    out = []
    for ratio in ratios:
        m = copy.deepcopy(model).cpu()
        gm = build_groups(m, input_shape, ignored_layers)
        removals: dict[str, list[int]] = {}
        for g in gm.groups:
            if not g.prunable or g.width < 2:
                continue
            keep = round(g.width * ratio * rng.uniform(1 - jitter, 1 + jitter))
            keep = min(g.width, max(1, keep))
            if keep < g.width:
                removals[g.root] = sorted(rng.sample(range(g.width), g.width - keep))
        apply_removals(gm, removals)
        out.append(m)
    return out


def variant_configs(variants: Sequence[nn.Module], input_shape: Sequence[int]) -> list[dict[str, Any]]:
    """The conv configs of the variants, as layer-space rows (``layer`` = ``variant<i>:<conv>``).

    Example:
        >>> rows = variant_configs(vs, (1, 1, 28, 28))  # doctest: +SKIP
    """
    rows: list[dict[str, Any]] = []
    for i, m in enumerate(variants):
        for layer in conv_layer_configs(m, tuple(int(s) for s in input_shape)):
            rows.append({**layer.config, "layer": f"variant{i}:{layer.name}"})
    return rows


def calibrate_on_target(
    predictor: Any,
    target: Any,
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    variants: Sequence[nn.Module] | None = None,
    rounds: int = 5,
    seed: int = 0,
    retries: int = 2,
) -> list[tuple[nn.Module, float]]:
    """Time the dense model and pruned variants on ``target``; fit ``predictor``'s whole-model terms.

    Args:
        predictor: A fitted :class:`~hwprune.predict.LatencyPredictor` (calibrated in place).
        target: A :class:`~hwprune.measure.Target` or catalogue name that can time whole models here
            (:func:`hwprune.measure.model_timing.can_time_models`).
        model: The dense model.
        input_shape: Input shape including batch (the deployment batch).
        variants: Pruned copies to time (default: :func:`calibration_variants` of ``model``).
        rounds: Interleaved timing rounds.
        seed: Seed of the default variants.
        retries: Times a network whose rounds spread by more than
            :data:`hwprune.verify.stopwatch.NOISY_SPREAD` is timed again (the steadiest timing is kept).

    Returns:
        ``(network, measured ms)`` for the dense model and each variant.

    Raises:
        NotImplementedError: If the target cannot time a whole model in this process.

    Example:
        >>> model = build_model("small_resnet")
        >>> calibrate_on_target(pred, "cpu_torch", model, (1, 1, 28, 28))  # doctest: +SKIP
    """
    from hwprune.measure.model_timing import time_models
    from hwprune.verify.stopwatch import NOISY_SPREAD

    shape = tuple(int(s) for s in input_shape)
    nets = [model, *(variants if variants is not None else calibration_variants(model, shape, seed=seed))]
    timings = time_models(target, nets, shape, rounds=rounds, progress=True)
    for _ in range(retries):
        # Load on a shared machine comes in bursts: time a network whose rounds spread too much again,
        # and keep its steadiest timing (a median inflated by a burst would teach a false overhead).
        noisy = [i for i, t in enumerate(timings) if t.spread > NOISY_SPREAD]
        if not noisy:
            break
        again = time_models(target, [nets[i] for i in noisy], shape, rounds=rounds)
        for i, t in zip(noisy, again, strict=True):
            if t.spread < timings[i].spread:
                timings[i] = t
    pairs = [(n, t.median_ms) for n, t in zip(nets, timings, strict=True)]
    predictor.calibrate([(n, shape, ms) for n, ms in pairs])
    build = sum(t.build_s for t in timings)
    if build > 1.0:
        log.info("calibration: the target's runtime spent %.1f s preparing %d networks", build, len(nets))
    msg = launch_bound_warning(predictor, target, pairs[0][1])
    if msg:
        log.warning(msg)
    for (n, ms), t in zip(pairs, timings, strict=True):
        log.info(
            "calibration: measured %.4g ms (spread %.1f%%), predicted %.4g ms",
            ms,
            100 * t.spread,
            predictor.predict_model(n, shape),
        )
    return pairs


def launch_bound_warning(
    predictor: Any, target: Any, dense_ms: float, share: float = LAUNCH_BOUND_SHARE
) -> str:
    """A warning when the calibrated floor or overhead is most of the dense model's time, else ``""``.

    On a fast GPU in eager PyTorch, Python's kernel dispatch sets a floor that no pruning removes (the
    lent H200: 4.42 ms of ResNet-50's 5.25 ms at batch 32). The message gives the numbers and names the
    runtimes that drive the target's backend without per-op launches.

    Args:
        predictor: A calibrated :class:`~hwprune.predict.LatencyPredictor`.
        target: The :class:`~hwprune.measure.Target` (or catalogue name) it was calibrated on.
        dense_ms: The dense model's measured latency there.
        share: The share of ``dense_ms`` above which the target counts as launch-bound.

    Returns:
        The warning, or an empty string.

    Example:
        >>> launch_bound_warning(pred, "cuda_cudnn_tf32", 5.25)  # doctest: +SKIP
        'target cuda_cudnn_tf32 (runtime eager) is launch-bound: ...'
    """
    from hwprune.measure.runtimes import launch_free_runtimes
    from hwprune.measure.targets import load_target

    if not dense_ms > 0:
        return ""
    target = load_target(target)
    floor = float(getattr(predictor, "floor_ms_", 0.0) or 0.0)
    overhead = float(getattr(predictor, "overhead_ms_", 0.0) or 0.0)
    worst, what = max((floor, "dispatch floor"), (overhead, "fixed overhead"))
    if worst <= share * dense_ms:
        return ""
    if target.runtime in launch_free_runtimes(target.backend):
        # No per-op launches here: the floor is what the smallest calibrated variant still costs (work that
        # channel pruning does not thin, such as depthwise convs, normalisation and memory traffic).
        return (
            f"target {target.name} (runtime {target.runtime}, launch-free) is floor-bound: the calibrated "
            f"{what.replace('dispatch ', '')} is {worst:.4g} ms of the dense model's measured "
            f"{dense_ms:.4g} ms ({100 * worst / dense_ms:.0f}%): not launches in this runtime, but time that "
            f"channel pruning down to the floor does not remove, so a budget below "
            f"~{worst / dense_ms:.2f} of dense cannot be met by pruning channels; lower "
            f"`min_channel_ratio` or give a larger budget"
        )
    others = [r for r in launch_free_runtimes(target.backend) if r != target.runtime]
    hint = (
        f"time and deploy it in a launch-free runtime: a target with `runtime: {' or '.join(others)}` "
        f"(`hwprune --help` lists the catalogue)"
        if others
        else "a larger batch, or a backend with less per-op cost"
    )
    return (
        f"target {target.name} (runtime {target.runtime}) is launch-bound: the calibrated {what} is "
        f"{worst:.4g} ms of the dense model's measured {dense_ms:.4g} ms ({100 * worst / dense_ms:.0f}%), "
        f"which pruning channels cannot remove, so a budget below ~{worst / dense_ms:.2f} of dense cannot be "
        f"met; {hint}"
    )

"""Steps 1-2 of the main job: measure a model's layer space on a target (cached), then fit a predictor."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from torch import nn

from hwprune.measure import EvaluatorConfig, Target, load_target, measure, model_space, read_table
from hwprune.measure.table import warn_if_inconsistent
from hwprune.options import DEFAULT_MIN_CHANNEL_RATIO

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_CACHE_DIR",
    "FAST_PREDICTOR",
    "PredictorFactory",
    "cache_table_path",
    "ensure_predictor",
    "layer_space_digest",
    "predictor_factories",
]


DEFAULT_CACHE_DIR = "~/.cache/hwprune/tables"
"""Where measured tables are cached unless told otherwise: the folder that the README,
``hwprune/conf/pruning/hw_aware.yaml`` and ``hwprune measure`` (without ``--out``) use, never a folder
relative to where the script runs."""


def _first_error(table: Path) -> str | None:
    """The first error recorded in a table, or None."""
    df = read_table(table, keep_errors=True, check_units=False)
    if "error" not in df.columns:
        return None
    errors = [str(e) for e in df["error"].fillna("") if str(e).strip()]
    return errors[0] if errors else None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "_", text).strip("_")[:60] or "unknown"


def layer_space_digest(model: nn.Module, input_shape: tuple[int, ...]) -> str:
    """Eight hex digits that name ``model``'s conv layer space at ``input_shape``.

    The digest covers every conv's name and configuration (in and out channels, size, kernel, stride,
    padding, groups) in execution order, so two architectures of one class (ResNet-18 and ResNet-50 are
    both ``ResNet``) or one architecture at two widths never share a cached table.

    Example:
        >>> from hwprune.models import build_model
        >>> a = layer_space_digest(build_model("resnet18"), (1, 1, 28, 28))
        >>> b = layer_space_digest(build_model("resnet50"), (1, 1, 28, 28))
        >>> len(a) == 8 and a != b
        True
    """
    import hashlib
    import json

    from hwprune.contract import conv_layer_configs

    layers = [[c.name, sorted(dict(c.config).items())] for c in conv_layer_configs(model, input_shape)]
    return hashlib.sha1(json.dumps(layers).encode(), usedforsecurity=False).hexdigest()[:8]


def cache_table_path(
    target: Target, model: nn.Module, input_shape: tuple[int, ...], cache_dir: str | os.PathLike[str]
) -> Path:
    """Where a model's freshly measured table is cached: keyed by target, device, library, model, size, batch.

    ``<cache_dir>/<target>/<device>__<torch version>/<model class>_<h>_b<batch>_<digest>.csv``, the
    digest being :func:`layer_space_digest`: a table measured on another card, batch, library version or
    architecture is never reused as if it were this one's.

    Example:
        >>> model = build_model("small_resnet")
        >>> cache_table_path(load_target("cpu_torch"), model, (1, 1, 28, 28), "t")  # doctest: +SKIP
        PosixPath('t/cpu_torch/Intel_R_Xeon_R_..._2.14.1/smallresnet_28_b1_3f1c9a2e.csv')
    """
    import torch

    from hwprune.measure import Backend

    if target.backend_class().runs_torch:
        with Backend.create(target.backend, target) as backend:  # the name the hardware reports
            device = backend.hardware_name()
    else:  # a board behind RPC or a worker: do not connect just to name it
        device = target.device or target.backend
    name = re.sub(r"[^A-Za-z0-9_]+", "_", type(model).__name__.lower())
    folder = (
        Path(os.path.expanduser(str(cache_dir)))
        / target.name
        / f"{_slug(device)}__{_slug(torch.__version__)}"
    )
    # Traced at batch 1 (the batch is in the name already): a ResNet-50 forward at batch 32 costs seconds.
    digest = layer_space_digest(model, (1, *(int(s) for s in input_shape[1:])))
    return folder / f"{name}_{int(input_shape[-1])}_b{int(input_shape[0])}_{digest}.csv"


def _measured_frame(
    target: Target,
    model: nn.Module,
    space: list[dict[str, Any]],
    table: Path,
    evaluator: EvaluatorConfig | None,
    *,
    progress: bool,
    use_shipped: bool,
) -> Any:
    """Measure ``space`` into ``table`` (cached rows skipped) and read it back (with the shipped table).

    Returns:
        The timed rows as one DataFrame.


    Raises:
        RuntimeError: If fewer than 2 configurations could be timed (the backend's first error is named).
    """
    import pandas as pd
    import torch

    threads = torch.get_num_threads()
    try:
        # Failed configs are timed again: a cached failure (a board that was down, a backend that was not
        # installed) must not fail every later run the same way.
        summary = measure(target, space, table, evaluator=evaluator, progress=progress, retry_errors=True)
    finally:
        torch.set_num_threads(threads)  # the backend may pin threads for timing; training needs them back
    log.info(
        "layer space of %s on %s: %d measured now, %d cached (%s)",
        type(model).__name__,
        target.name,
        summary.measured,
        summary.skipped,
        table,
    )
    frames = [read_table(table)]
    if len(frames[0]) < 2:
        raise RuntimeError(
            f"target {target.name} ({target.backend}): no configuration of {type(model).__name__}'s layer "
            f"space could be timed ({summary.failed} failed now, {len(frames[0])} timed rows in {table}); "
            f"the backend said: {summary.first_error or _first_error(table) or 'nothing'}; fix the backend "
            f"(see `hwprune devices`, and the target's how_to_measure: {target.how_to_measure.strip()!r})"
        )
    # table_path: the copy shipped in the package first, then the working directory (resolve_table).
    if use_shipped and (shipped_path := target.table_path) is not None and shipped_path.exists():
        shipped = read_table(shipped_path)
        log.warning(
            "fitting %s on its shipped table %s too: measured on %s, the fresh table on %s",
            target.name,
            shipped_path,
            sorted(pd.unique(shipped["device"].astype(str))),
            sorted(pd.unique(frames[0]["device"].astype(str))),
        )
        frames.append(shipped)
    return pd.concat(frames, ignore_index=True)


def ensure_predictor(
    target: Target | str,
    model: nn.Module,
    input_shape: tuple[int, ...],
    cache_dir: str | os.PathLike[str] = DEFAULT_CACHE_DIR,
    *,
    step: int = 3,
    floor: float = DEFAULT_MIN_CHANNEL_RATIO,
    pairs: int = 24,
    evaluator: EvaluatorConfig | None = None,
    predictor_kwargs: Mapping[str, Any] | None = None,
    calibrate: bool = True,
    use_shipped_table: bool = False,
    adapt_from: str | os.PathLike[str] | None = None,
    adapt_budget: int = 300,
    progress: bool = True,
) -> Any:
    """Return a :class:`~hwprune.predict.LatencyPredictor` for ``model`` on ``target``, at the run's batch.

    1. The model's 2-D layer space (:func:`hwprune.measure.model_space` with ``sweep_in="2d"``: out and in
       sweeps and (in, out) pairs over every residue mod 8), plus the conv configs of randomly pruned
       variants of it (:func:`hwprune.verify.calibration.calibration_variants`: what pruned models really
       contain), is measured on ``target`` at batch ``input_shape[0]`` into :func:`cache_table_path`.
       Configurations already there are skipped, so a second run measures nothing.
    2. A predictor is fitted on that table.
    3. Where this process can time whole models on the target (this CPU, a local GPU), the dense model
       and the variants are timed end to end and the predictor's whole-model terms are calibrated
       (:meth:`~hwprune.predict.LatencyPredictor.calibrate`), so ``predict_model`` is the network's time,
       not its convs' sum.

    Args:
        target: A :class:`~hwprune.measure.Target` or catalogue name.
        model: The dense model.
        input_shape: Its input shape including batch (the deployment batch: the sweep uses it).
        cache_dir: Root of the cached tables (default :data:`DEFAULT_CACHE_DIR`, ``~`` expanded).
        step: Channel step of the 1-D sweeps (odd steps visit every residue mod 8).
        floor: Smallest fraction of each conv's channels swept.
        pairs: (in, out) pairs per conv shape.
        evaluator: Timing settings (default :class:`~hwprune.measure.EvaluatorConfig`).
        predictor_kwargs: Arguments of :class:`~hwprune.predict.LatencyPredictor`.
        calibrate: Calibrate the whole-model terms where the target can be timed here.
        use_shipped_table: Also fit on the target's shipped table (``target.table_path``). Off by default: a
            shipped table comes from another machine (the ``cpu_torch`` ones from an Intel Xeon), and
            mixing it in is logged with both devices named.
        adapt_from: Another target's predictor file or table: measure only ``adapt_budget``
            configurations of the space, chosen by :func:`hwprune.predict.adapt.select_configs`, and
            fit an :class:`~hwprune.predict.adapt.AdaptedPredictor` with it as prior
            (``predictor_kwargs`` then does not apply).
        adapt_budget: Most configurations to measure with ``adapt_from`` (>= 1).
        progress: Show the measuring progress bar (:class:`PredictorFactory` passes False when the
            run's Trainer hides its own, ``enable_progress_bar=False``).

    Returns:
        The fitted predictor; ``source_table_`` names the table it was fitted on.

    Raises:
        ValueError: If ``step``, ``floor`` or ``pairs`` is out of range (see
            :func:`hwprune.measure.model_space`).
        RuntimeError: If fewer than 2 configurations could be timed: the message gives the backend's
            first error (the table's ``error`` column), not the fit's.

    Example:
        >>> model = build_model("small_resnet")
        >>> pred = ensure_predictor("cpu_torch", model, (1, 1, 28, 28))  # doctest: +SKIP
    """
    import dataclasses

    import torch

    from hwprune.measure.model_timing import can_time_models
    from hwprune.predict import LatencyPredictor
    from hwprune.verify.calibration import calibrate_on_target, calibration_variants, variant_configs

    shape = tuple(int(s) for s in input_shape)
    target = load_target(target)
    if target.batch is not None and target.batch != shape[0]:
        log.info(
            "target %s: measuring at the run's batch %d (the target's default is %d)",
            target.name,
            shape[0],
            target.batch,
        )
    target = dataclasses.replace(target, batch=shape[0])
    table = cache_table_path(target, model, shape, cache_dir)
    table.parent.mkdir(parents=True, exist_ok=True)
    variants = calibration_variants(model, shape)
    space = model_space(model, shape, floor=floor, step=step, pairs=pairs) + variant_configs(variants, shape)
    prior = None
    if adapt_from is not None:
        from hwprune.predict.adapt import load_prior, select_configs

        prior = load_prior(adapt_from)
        space = select_configs(prior, space, adapt_budget)
    threads = torch.get_num_threads()
    df = _measured_frame(
        target, model, space, table, evaluator, progress=progress, use_shipped=use_shipped_table
    )
    warn_if_inconsistent(df, str(table))
    if prior is not None:
        from hwprune.predict.adapt import AdaptedPredictor

        pred = AdaptedPredictor(prior=prior).fit(df)
    else:
        pred = LatencyPredictor(**dict(predictor_kwargs or FAST_PREDICTOR)).fit(df)
    pred.source_table_ = str(table)
    if calibrate and can_time_models(target):
        try:
            calibrate_on_target(pred, target, model, shape, variants=variants)
        finally:
            torch.set_num_threads(threads)
    return pred


FAST_PREDICTOR: Mapping[str, Any] = MappingProxyType(
    {
        "estimator": "extra_trees",
        "target_transform": "log_per_flop",
        "cv_folds": 0,
        "n_estimators": 100,
    }
)
"""The one fast preset of :class:`~hwprune.predict.LatencyPredictor`: ``LatencyPredictor(**FAST_PREDICTOR)``.

Extra trees on log latency per FLOP, 100 trees, no cross-validated model search: a fit takes seconds
where the class defaults (model chosen by grouped CV, 200 trees) take minutes. The training path
(:func:`ensure_predictor`), ``hwprune prune``, the benchmarks and the test fixtures use it; read-only, so
a caller changes a copy (``{**FAST_PREDICTOR, "n_estimators": 50}``), never the preset.
"""


@dataclass(frozen=True)
class PredictorFactory:
    """A picklable ``(model, input_shape) -> predictor`` for :class:`HardwareAwarePruning` configs.

    Args:
        target: The device target (a :class:`~hwprune.measure.Target` or catalogue name).
        cache_dir: Root of the cached tables (default :data:`DEFAULT_CACHE_DIR`, ``~`` expanded).
        step: Channel step of the 1-D sweeps.
        floor: Smallest fraction of each conv's channels swept.
        pairs: (in, out) pairs per conv shape of the 2-D space.
        calibrate: Calibrate whole-model latency on the target where it can be timed here.
        repeat: Timing samples per configuration.
        min_repeat_ms: Shortest sample, in ms.
        predictor_kwargs: Arguments of :class:`~hwprune.predict.LatencyPredictor`.
        adapt_from: Another target's predictor file or table to adapt from, measuring only
            ``adapt_budget`` configurations (see :func:`ensure_predictor`).
        adapt_budget: Most configurations to measure with ``adapt_from``.
        progress: Show the measuring progress bar; None (default) follows the Trainer's
            ``enable_progress_bar`` when :class:`HardwareAwarePruning` calls the factory (else shown).

    Example:
        >>> factory = PredictorFactory("cpu_torch")
        >>> pred = factory(build_model("small_resnet"), (1, 1, 28, 28))  # doctest: +SKIP
    """

    target: Target | str
    cache_dir: str = DEFAULT_CACHE_DIR
    step: int = 3
    floor: float = DEFAULT_MIN_CHANNEL_RATIO
    pairs: int = 24
    calibrate: bool = True
    repeat: int = 5
    min_repeat_ms: float = 10.0
    predictor_kwargs: Mapping[str, Any] = field(default_factory=dict)
    adapt_from: str | None = None
    adapt_budget: int = 300
    progress: bool | None = None

    def __call__(self, model: nn.Module, input_shape: tuple[int, ...]) -> Any:
        """Measure (what is not cached) and fit; see :func:`ensure_predictor`."""
        return ensure_predictor(
            self.target,
            model,
            input_shape,
            self.cache_dir,
            step=self.step,
            floor=self.floor,
            pairs=self.pairs,
            calibrate=self.calibrate,
            evaluator=EvaluatorConfig(repeat=self.repeat, min_repeat_ms=self.min_repeat_ms),
            predictor_kwargs=dict(self.predictor_kwargs) or None,
            adapt_from=self.adapt_from,
            adapt_budget=self.adapt_budget,
            progress=self.progress is not False,
        )


def predictor_factories(
    target: Any, targets: Sequence[Any] | None = None, **kwargs: Any
) -> PredictorFactory | dict[str, PredictorFactory]:
    """One :class:`PredictorFactory` for a target, or one per target for several targets.

    What ``hwprune/conf/pruning/hw_aware.yaml`` instantiates: ``target`` is the ``device`` group's target;
    with ``devices=[cpu_torch,cuda_cudnn_tf32]`` on the command line ``targets`` lists those names, each is
    loaded from the catalogue (:func:`~hwprune.measure.load_target`), and :class:`HardwareAwarePruning`
    plans one model for every target. The catalogue thus keeps one YAML per target.

    Args:
        target: A target (a :class:`~hwprune.measure.Target` or catalogue name), or a mapping name -> target.
        targets: Several targets, each a catalogue name, a YAML path or a Target; when given (not ``None``)
            they replace ``target``, keyed by each target's ``name`` in the list's order.
        **kwargs: :class:`PredictorFactory`'s other arguments, shared by every target.

    Returns:
        The factory, or a dict name -> factory in the mapping's (or the list's) order.

    Raises:
        ValueError: If ``target`` is an empty mapping, or ``targets`` is not a non-empty list or names a
            target twice (an unknown name lists the catalogue's names).

    Example:
        >>> sorted(predictor_factories({"cpu_torch": "cpu_torch", "cuda_cudnn_tf32": "cuda_cudnn_tf32"}))
        ['cpu_torch', 'cuda_cudnn_tf32']
        >>> list(predictor_factories("cpu_torch", targets=["cuda_cudnn_tf32", "cpu_torch"]))
        ['cuda_cudnn_tf32', 'cpu_torch']
    """
    if targets is not None:
        return {name: PredictorFactory(t, **kwargs) for name, t in _targets_by_name(targets).items()}
    if isinstance(target, Mapping):
        if not target:
            raise ValueError("`target` must name at least one target, got an empty mapping")
        return {str(name): PredictorFactory(_as_target(t), **kwargs) for name, t in target.items()}
    return PredictorFactory(_as_target(target), **kwargs)


def _targets_by_name(targets: Any) -> dict[str, Target]:
    """``devices=[a,b]`` (catalogue names, YAML paths or Targets) -> name -> Target, in the list's order."""
    from omegaconf import ListConfig, OmegaConf

    if isinstance(targets, ListConfig):
        targets = OmegaConf.to_container(targets, resolve=True)
    if isinstance(targets, str | bytes | Mapping) or not isinstance(targets, Sequence) or not targets:
        raise ValueError(
            f"`targets` must be a non-empty list of target names, got {targets!r} "
            "(on the command line: devices=[cpu_torch,cuda_cudnn_tf32])"
        )
    loaded: dict[str, Target] = {}
    for item in targets:
        tgt = load_target(_as_target(item))
        if tgt.name in loaded:
            raise ValueError(
                f"`targets` must name each target once, got {tgt.name!r} twice in {list(targets)!r}"
            )
        loaded[tgt.name] = tgt
    return loaded


def _as_target(target: Any) -> Any:
    """A target as Hydra hands it inside a mapping or list -> the Target (a name or path stays as it is).

    Hydra instantiates each ``_target_: ...Target`` node of a config mapping of targets, then stores the
    dataclass back into the config node as a structured config: ``OmegaConf.to_object`` gives it back.
    """
    from omegaconf import DictConfig, OmegaConf

    if isinstance(target, DictConfig):
        target = OmegaConf.to_object(target)
    if isinstance(target, Mapping) and "_target_" in target:
        from hydra.utils import instantiate

        return instantiate(target)
    return target

"""What several benchmarks share; everything else they take from hwprune, like any user of the library.

* experiment configs: :func:`load_config` reads ``benchmarks/conf/<name>.yaml`` with OmegaConf (its
  ``quick:`` section merged on top for a smoke run, then ``key=value`` overrides);
* provenance of every raw file and report: :func:`stamp` (date, commit, machine, torch);
* the uninstructed baseline: :func:`uninstructed` (Torch-Pruning, L1 group magnitude) and
  :func:`matched_uninstructed` (the pruning ratio whose parameter count matches a hwprune model's);
* timing, all through :mod:`hwprune.measure`: whole models in interleaved rounds (:func:`time_rounds`,
  on :func:`hwprune.measure.time_models`) and every layer decision against its dense layer
  (:func:`time_decisions`, on :func:`hwprune.measure.measure`).

Example:
    >>> cfg = load_config("zoo", quick=True)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from hwprune.contract import CONFIG_COLUMNS, conv_layer_configs
from hwprune.measure import EvaluatorConfig, Target, load_target, measure, read_table, time_models
from hwprune.measure.device_info import cpu_model

log = logging.getLogger(__name__)

__all__ = [
    "CONF_DIR",
    "ROOT",
    "Decision",
    "changed_convs",
    "commit",
    "load_config",
    "load_note",
    "machine",
    "matched_uninstructed",
    "n_params",
    "stamp",
    "time_decisions",
    "time_rounds",
    "uninstructed",
]

ROOT = Path(__file__).resolve().parents[1]
"""The repository root (tables, docs and conf are found from it)."""
CONF_DIR = Path(__file__).resolve().parent / "conf"
"""The benchmarks' experiment configs."""


# ------------------------------------------------------------------------------------------- configs
def load_config(name: str, *, quick: bool = False, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Read an experiment config: ``conf/<name>.yaml``, its ``quick:`` section when ``quick``, overrides.

    Args:
        name: A file stem under ``benchmarks/conf/`` or a path to a YAML file.
        quick: Merge the file's ``quick:`` section over the rest (the smoke run's smaller settings).
        overrides: OmegaConf dot-list overrides, e.g. ``["rounds=3", "budgets.resnet18.cpu_torch=[0.5]"]``.

    Returns:
        The config as plain dicts and lists, without the ``quick`` section.

    Raises:
        ValueError: If the file does not exist (the message lists the configs), or an override is not
            ``key=value``.

    Example:
        >>> load_config("model_true")["baselines"]["round_to_8"]  # doctest: +SKIP
        {'round_to': 8, 'global_pruning': False}
    """
    path = Path(name) if str(name).endswith((".yaml", ".yml")) else CONF_DIR / f"{name}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in CONF_DIR.glob("*.yaml"))
        raise ValueError(f"`name` must be a YAML file or one of {names}, got {name!r}")
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ValueError(f"`overrides` must be key=value, got {bad}")
    cfg = OmegaConf.load(path)
    quick_part = cfg.pop("quick", None)
    if quick and quick_part is not None:
        # A quick section replaces the lists and mappings it names (merging would keep the full budgets).
        for key, value in quick_part.items():
            OmegaConf.update(cfg, str(key), value, merge=False)
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    out = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(out, dict)
    return out  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------- provenance
def commit() -> str:
    """The short commit of the tree (``HWPRUNE_COMMIT`` where the copy has no ``.git``, as on the GPU)."""
    if os.environ.get("HWPRUNE_COMMIT"):
        return os.environ["HWPRUNE_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, timeout=10
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> str:
    """This machine as the reports name it: CPU model and logical cores."""
    return f"{cpu_model()}, {os.cpu_count()} logical cores"


def load_note() -> str:
    """The load average now (the machine is shared: a report states it beside CPU timings)."""
    try:
        la = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        la = ["?"] * 3
    return f"load average {' '.join(la)} on {os.cpu_count()} logical cores (machine shared with other agents)"


def stamp() -> dict[str, Any]:
    """Date (UTC), commit, machine and torch version, for the head of every raw file and report."""
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": commit(),
        "machine": machine(),
        "torch": torch.__version__,
    }


# ------------------------------------------------------------------------------ uninstructed baseline
def n_params(model: nn.Module) -> int:
    """Parameter count."""
    return int(sum(p.numel() for p in model.parameters()))


def uninstructed(
    dense: nn.Module,
    trace_shape: Sequence[int],
    ratio: float,
    *,
    round_to: int | None = None,
    global_pruning: bool = False,
) -> nn.Module:
    """Torch-Pruning's uninstructed baseline on a copy: MetaPruner, L1 group magnitude, one ratio.

    The same pruner as :class:`hwprune.callbacks.UninstructedPruning` (every ``nn.Linear`` kept).

    Args:
        dense: The dense model (not changed).
        trace_shape: Input shape Torch-Pruning traces with (a small image gives the same graph, cheaper).
        ratio: Share of channels removed per group (or over the model, with ``global_pruning``).
        round_to: Keep channel counts multiples of this.
        global_pruning: Rank channels over the whole model instead of per group.

    Returns:
        The pruned copy, in eval mode, on the CPU.

    Example:
        >>> m = uninstructed(build_model("small_resnet"), (1, 1, 28, 28), 0.5)  # doctest: +SKIP
    """
    import torch_pruning as tp

    from hwprune.prune.graph import resolve_ignored

    m = copy.deepcopy(dense).cpu().eval()
    pruner = tp.pruner.MetaPruner(
        m,
        torch.zeros(*[int(s) for s in trace_shape]),
        importance=tp.importance.GroupMagnitudeImportance(p=1),
        pruning_ratio=float(ratio),
        round_to=round_to,
        global_pruning=global_pruning,
        ignored_layers=resolve_ignored(m),
    )
    pruner.step()
    return m


def matched_uninstructed(
    dense: nn.Module,
    params: int,
    trace_shape: Sequence[int],
    *,
    round_to: int | None = None,
    global_pruning: bool = False,
    iters: int = 8,
    rel_tol: float = 0.01,
) -> tuple[nn.Module, float]:
    """The :func:`uninstructed` model whose parameter count is nearest ``params``, and its ratio.

    Parameters fall roughly as ``(1 - ratio)^2``; each try corrects that model by the error it saw (a
    secant step on the square root), kept inside the bracket of ratios tried so far, and stops within
    ``rel_tol`` of ``params`` or after ``iters`` tries.

    Args:
        dense: The dense model.
        params: The parameter count to match (a hwprune model's).
        trace_shape: See :func:`uninstructed`.
        round_to: See :func:`uninstructed`.
        global_pruning: See :func:`uninstructed`.
        iters: Most tries.
        rel_tol: Stop when the count is this close (relative).

    Returns:
        ``(model, ratio)`` of the nearest try.

    Raises:
        ValueError: If ``params`` is not in (0, dense parameters] or ``iters`` < 1.

    Example:
        >>> m, r = matched_uninstructed(dense, n_params(pruned), (1, 1, 28, 28))  # doctest: +SKIP
    """
    p0 = n_params(dense)
    if not 0 < params <= p0:
        raise ValueError(f"`params` must be in (0, {p0}] (the dense model's count), got {params!r}")
    if iters < 1:
        raise ValueError(f"`iters` must be >= 1, got {iters!r}")
    lo, hi = 0.0, 0.95
    r = min(0.9, max(0.01, 1.0 - (params / p0) ** 0.5))
    best: tuple[float, nn.Module, float] | None = None
    for _ in range(iters):
        m = uninstructed(dense, trace_shape, r, round_to=round_to, global_pruning=global_pruning)
        err = (n_params(m) - params) / params
        if best is None or abs(err) < abs(best[0]):
            best = (err, m, r)
        if abs(err) < rel_tol:
            break
        if err > 0:
            lo = r
        else:
            hi = r
        guess = 1.0 - (1.0 - r) * (1.0 + err) ** -0.5
        r = guess if lo < guess < hi else (lo + hi) / 2
    assert best is not None
    return best[1], best[2]


# -------------------------------------------------------------------------------------------- timing
def time_rounds(
    target: Target | str,
    models: Mapping[str, nn.Module],
    input_shape: Sequence[int],
    *,
    rounds: int,
    evaluator: EvaluatorConfig | None = None,
) -> dict[str, list[float]]:
    """Whole-model latency of every model on ``target``, in interleaved rounds (dense beside the rest).

    :func:`hwprune.measure.time_models` with the target's own settings (the ``cpu_torch`` target: 1
    thread); the benchmarks keep each round's sample, so a report takes ratios per round.

    Args:
        target: A target that can time whole models here (:func:`hwprune.measure.can_time_models`).
        models: Name -> model.
        input_shape: Input shape including batch.
        rounds: Interleaved rounds.
        evaluator: Each round's sample (default: :func:`~hwprune.measure.time_models`'s).

    Returns:
        Name -> one sample (ms) per round.

    Example:
        >>> time_rounds("cpu_torch", {"dense": d, "pruned": p}, (1, 1, 28, 28), rounds=5)  # doctest: +SKIP
    """
    names = list(models)
    timings = time_models(target, [models[k] for k in names], input_shape, rounds=rounds, evaluator=evaluator)
    return {k: list(t.rounds_ms) for k, t in zip(names, timings, strict=True)}


@dataclasses.dataclass(frozen=True)
class Decision:
    """One conv whose configuration a pruned model changed.

    Attributes:
        model: The pruned model's name.
        layer: The conv's module name.
        dense: Its configuration in the dense model (the table's config columns).
        pruned: Its configuration in the pruned model.
    """

    model: str
    layer: str
    dense: dict[str, int]
    pruned: dict[str, int]


def changed_convs(
    dense: nn.Module, pruned: Mapping[str, nn.Module], input_shape: Sequence[int]
) -> list[Decision]:
    """Every conv whose configuration differs from the dense model's, per pruned model.

    Args:
        dense: The dense model.
        pruned: Name -> pruned model of the same architecture.
        input_shape: Input shape including batch.

    Returns:
        The decisions, in model order then execution order.
    """
    shape = tuple(int(s) for s in input_shape)
    ref = {c.name: c.config for c in conv_layer_configs(dense, shape)}
    out = []
    for name, net in pruned.items():
        for c in conv_layer_configs(net, shape):
            if c.name in ref and c.config != ref[c.name]:
                out.append(Decision(name, c.name, dict(ref[c.name]), dict(c.config)))
    return out


def time_decisions(
    target: Target | str,
    dense: nn.Module,
    pruned: Mapping[str, nn.Module],
    input_shape: Sequence[int],
    *,
    evaluator: EvaluatorConfig | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Time every layer decision (:func:`changed_convs`) alone on ``target`` against its dense layer.

    Both configurations go through :func:`hwprune.measure.measure` (its warm-up, samples and re-timing of
    noisy rows) at the batch of ``input_shape``; a configuration shared by several decisions is timed once.
    A decision whose timing failed is left out.

    Args:
        target: The target that planned the models.
        dense: The dense model.
        pruned: Name -> pruned model.
        input_shape: Input shape including the batch to time at.
        evaluator: Timing settings (default ``EvaluatorConfig(warmup=3, number=1, repeat=9,
            min_repeat_ms=5.0)``).
        progress: Show the sweep's progress bar.

    Returns:
        One row per decision: ``model``, ``layer``, ``target``, ``batch``, ``dense_in_out``,
        ``pruned_in_out``, ``dense_ms``, ``pruned_ms``.

    Example:
        >>> rows = time_decisions("cpu_torch", dense, {"hw": pruned}, (1, 1, 28, 28))  # doctest: +SKIP
    """
    shape = tuple(int(s) for s in input_shape)
    tgt = dataclasses.replace(load_target(target), batch=shape[0])
    decisions = [  # shapes found at batch 1 (a cheap forward), timed at the batch asked for
        dataclasses.replace(d, dense={**d.dense, "batch": shape[0]}, pruned={**d.pruned, "batch": shape[0]})
        for d in changed_convs(dense, pruned, (1, *shape[1:]))
    ]
    if not decisions:
        return []
    ev = evaluator or EvaluatorConfig(warmup=3, number=1, repeat=9, min_repeat_ms=5.0)
    space = [d.pruned for d in decisions] + [d.dense for d in decisions]
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "decisions.csv"
        measure(tgt, space, table, evaluator=ev, progress=progress)
        df = read_table(table)
    df = df[df["latency_ms"].notna()]

    def key(cfg: Mapping[str, Any]) -> tuple[int, ...]:
        return tuple(int(cfg[k]) for k in CONFIG_COLUMNS)

    lat = {key(r): float(r["latency_ms"]) for _, r in df.iterrows()}
    rows = []
    for d in decisions:
        a, b = lat.get(key(d.dense)), lat.get(key(d.pruned))
        if a is None or b is None:
            log.warning("%s %s: timing failed on %s, left out", d.model, d.layer, tgt.name)
            continue
        rows.append(
            {
                "model": d.model,
                "layer": d.layer,
                "target": tgt.name,
                "batch": shape[0],
                "dense_in_out": [d.dense["in_channels"], d.dense["out_channels"]],
                "pruned_in_out": [d.pruned["in_channels"], d.pruned["out_channels"]],
                "dense_ms": a,
                "pruned_ms": b,
            }
        )
    return rows

"""Layer spaces: which conv2d configurations to time.

A model's layers are described by :func:`hwprune.contract.conv_layer_configs`, the one
place that turns a model into per-layer configurations keyed by the measurement table's column names; the
planner uses it too, so a layer is described the same way when it is measured and when it is predicted.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from hwprune.contract import CONFIG_COLUMNS, conv_layer_configs
from hwprune.options import DEFAULT_MIN_CHANNEL_RATIO  # the floor of the measured space

if TYPE_CHECKING:  # torch is imported where a model is built: importing the floor below loads none
    from torch import nn

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MIN_CHANNEL_RATIO",
    "SweepIn",
    "grid_space",
    "model_space",
]


SweepIn = Literal["2d", "coupled", "all", "none"]

RESIDUE_MOD: int = 8
"""Every residue of a channel count modulo this is sampled in the 2-D space (tensor-core kernels tile
channels by 4 and 8 on both sides, so a table without every residue cannot see their stairs)."""


def _counts(orig: int, floor: float, step: int, multiple: int = 1) -> list[int]:
    lo = max(1, math.ceil(orig * floor))
    counts = list(range(orig, lo - 1, -step))
    counts = sorted({c for c in counts if c % multiple == 0} | {orig})
    return counts


def _pair_sample(cin: int, cout: int, floor: float, pairs: int, seed: str) -> list[tuple[int, int]]:
    """``pairs`` (in, out) channel pairs below the dense ones, stratified over residues mod 8.

    Pair ``k`` takes in-residue ``k % 8`` and out-residue ``(k // 8 + 3 * k) % 8``, so 64 pairs visit every
    residue combination and any 8 consecutive pairs visit every residue on each side. Within its residue a
    count is drawn log-uniformly between ``ceil(floor * c)`` and ``c``, so small counts (where a pruned
    layer's in-channels land when its producer is cut hard) are sampled as often as large ones. The draw
    is seeded by the layer's shape, so a space is reproducible and a resumed sweep skips what it has.
    """
    import random
    import zlib

    rng = random.Random(zlib.crc32(seed.encode()))

    def draw(c: int, residue: int) -> int:
        lo = max(1, math.ceil(c * floor))
        cands = [v for v in range(lo, c + 1) if v % RESIDUE_MOD == residue] or list(range(lo, c + 1))
        u = math.exp(rng.uniform(math.log(lo), math.log(c + 1)))
        return min(cands, key=lambda v: (abs(v - u), v))

    out: list[tuple[int, int]] = []
    for k in range(pairs):
        out.append((draw(cin, k % RESIDUE_MOD), draw(cout, (k // RESIDUE_MOD + 3 * k) % RESIDUE_MOD)))
    return out


def model_space(
    model_or_name: nn.Module | str,
    input_shape: tuple[int, ...],
    *,
    floor: float = DEFAULT_MIN_CHANNEL_RATIO,
    step: int = 1,
    layers: Sequence[str] | None = None,
    sweep_in: SweepIn = "2d",
    pairs: int = 24,
) -> list[dict[str, Any]]:
    """Configurations of a model's convs with their channel counts swept below the original.

    A pruned conv has both its out-channels (its own group) and its in-channels (its producer's group)
    cut, and a backend's latency is a staircase in *both* (DESIGN.md, "What the latency model must
    capture"). So by default (``sweep_in="2d"``) each conv gets three samples:

    * the out sweep at dense in-channels: every ``step``-th count from the original down to
      ``ceil(floor * orig)`` (the original always included);
    * the in sweep at dense out-channels, the same way (not for a model-input conv, whose in-channels are
      the image's and are never pruned);
    * ``pairs`` (in, out) pairs with both cut, stratified so that every residue mod 8 of each side is
      sampled and small counts are as likely as large ones (see :func:`_pair_sample`).

    Depthwise convs are swept along their one coupled count (in = out = groups). ``sweep_in="coupled"``
    keeps only the out sweep (plus depthwise coupling), ``"all"`` adds the in sweep without pairs, and
    ``"none"`` sweeps out-channels only. Identical configurations of several layers are merged; their
    ``layer`` labels are joined by ``;``.

    Args:
        model_or_name: A module, or a :func:`hwprune.models.factory.build_model` name (built with
            ``input_size = input_shape[-1]``, ``in_channels = input_shape[1]``, 10 classes).
        input_shape: Full input shape, e.g. ``(1, 3, 224, 224)``.
        floor: Smallest fraction of the original channel count, in (0, 1] (default
            :data:`DEFAULT_MIN_CHANNEL_RATIO`).
        step: Channel step of the 1-D sweeps (1 = every count). An odd step (3, 5) still visits every
            residue mod 8; a step of 4 or 8 visits one residue only.
        layers: Qualified conv names to keep (default: all convs); names may be given as prefixes.
        sweep_in: ``2d`` (default), ``coupled``, ``all`` or ``none`` (no coupling either).
        pairs: (in, out) pairs per conv shape in the ``2d`` space (>= 0).

    Returns:
        Config dicts keyed by :data:`~hwprune.contract.CONFIG_COLUMNS` plus ``layer``.

    Raises:
        ValueError: If ``floor`` is not in (0, 1], ``step`` < 1, ``pairs`` < 0, ``sweep_in`` unknown, or a
            name in ``layers`` matches no conv.

    Example:
        >>> len(model_space("small_resnet", (1, 1, 28, 28), step=8)) > 10
        True
    """
    if not 0 < floor <= 1:
        raise ValueError(f"`floor` must be in (0, 1], got {floor}")
    if isinstance(step, bool) or int(step) != step or step < 1:
        raise ValueError(f"`step` must be an integer >= 1, got {step!r}")
    if isinstance(pairs, bool) or int(pairs) != pairs or pairs < 0:
        raise ValueError(f"`pairs` must be an integer >= 0, got {pairs!r}")
    if sweep_in not in get_args(SweepIn):
        raise ValueError(f"`sweep_in` must be one of {get_args(SweepIn)}, got {sweep_in!r}")
    if isinstance(model_or_name, str):
        from hwprune.models.factory import build_model

        model = build_model(
            model_or_name, num_classes=10, in_channels=int(input_shape[1]), input_size=int(input_shape[-1])
        )
    else:
        model = model_or_name
    shape = tuple(int(s) for s in input_shape)
    convs = conv_layer_configs(model, shape)
    if layers:
        keep = [c for c in convs if any(c.name == n or c.name.startswith(n + ".") for n in layers)]
        unknown = [n for n in layers if not any(c.name == n or c.name.startswith(n + ".") for c in convs)]
        if unknown:
            raise ValueError(
                f"`layers` must name convs of the model, got unknown {unknown}; "
                f"convs are {[c.name for c in convs]}"
            )
        convs = keep
    out: list[dict[str, Any]] = []
    seen: dict[tuple[int, ...], dict[str, Any]] = {}

    def add(cfg: dict[str, Any]) -> None:
        key = tuple(cfg[k] for k in CONFIG_COLUMNS)
        if key in seen:
            if cfg["layer"] not in seen[key]["layer"].split(";"):
                seen[key]["layer"] += ";" + cfg["layer"]
            return
        seen[key] = cfg
        out.append(cfg)

    image_channels = shape[1]
    for layer in convs:
        base = dict(layer.config)
        g, cin, cout = base["groups"], base["in_channels"], base["out_channels"]
        depthwise = g > 1 and g == cin == cout
        if depthwise and sweep_in != "none":
            for c in _counts(cout, floor, step):
                add({**base, "in_channels": c, "out_channels": c, "groups": c, "layer": layer.name})
            continue
        for c in _counts(cout, floor, step, multiple=g):
            add({**base, "out_channels": c, "layer": layer.name})
        # A conv that reads the image (in-channels = the input's) never has its in-channels pruned.
        prunable_in = cin > 1 and not (cin == image_channels and base["height"] == shape[2])
        if sweep_in in ("all", "2d") and prunable_in:
            for c in _counts(cin, floor, step, multiple=g):
                add({**base, "in_channels": c, "layer": layer.name})
        if sweep_in == "2d" and prunable_in and g == 1 and pairs:
            key = "x".join(str(base[k]) for k in CONFIG_COLUMNS)
            for ci, co in _pair_sample(cin, cout, floor, int(pairs), key):
                add({**base, "in_channels": ci, "out_channels": co, "layer": layer.name})
    return out


def grid_space(yaml_path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Configurations from a YAML grid: the cartesian product of each key's values.

    The file holds either one grid (a mapping) or a list of grids under ``grids:``. Every
    :data:`~hwprune.contract.CONFIG_COLUMNS` key takes an int, a list of ints, or a range
    ``{start, stop, step}`` (stop inclusive); ``groups`` defaults to 1, ``padding`` to ``kernel_size // 2``
    and ``batch`` to 1. An optional ``layer`` string labels the rows. ``depthwise: true`` ties
    in = out = groups to ``out_channels``.

    Args:
        yaml_path: The grid file.

    Returns:
        Config dicts, in file order, duplicates removed.

    Raises:
        ValueError: If a key is unknown, a value is not an int/list/range, or a required key is missing.

    Example:
        >>> # grid.yaml:  {in_channels: 64, out_channels: {start: 16, stop: 64, step: 16},
        >>> #              height: 28, width: 28, kernel_size: 3, stride: 1}
        >>> len(grid_space("grid.yaml"))  # doctest: +SKIP
        4
    """
    import itertools

    import yaml

    data = yaml.safe_load(Path(yaml_path).read_text(encoding="utf-8"))
    grids = data.get("grids", [data]) if isinstance(data, dict) else data
    if not isinstance(grids, list):
        raise ValueError(f"`grids` in {yaml_path} must be a list of mappings, got {type(grids).__name__}")
    cols = CONFIG_COLUMNS
    out: list[dict[str, Any]] = []
    seen: set[tuple[int, ...]] = set()
    for gi, grid in enumerate(grids):
        grid = dict(grid)
        label = str(grid.pop("layer", f"grid{gi}"))
        depthwise = bool(grid.pop("depthwise", False))
        unknown = set(grid) - set(cols)
        if unknown:
            raise ValueError(
                f"grid {gi} in {yaml_path}: keys must be among {cols}, got unknown {sorted(unknown)}"
            )
        grid.setdefault("batch", 1)
        grid.setdefault("groups", 1)
        required = [
            c
            for c in ("in_channels", "out_channels", "height", "width", "kernel_size", "stride")
            if c not in grid and not (depthwise and c == "in_channels")
        ]
        if required:
            raise ValueError(f"grid {gi} in {yaml_path}: missing required key(s) {required}")
        axes: dict[str, list[int]] = {}
        for k, v in grid.items():
            axes[k] = _axis(k, v, f"grid {gi} in {yaml_path}")
        names = list(axes)
        for combo in itertools.product(*(axes[n] for n in names)):
            cfg = dict(zip(names, combo, strict=True))
            cfg.setdefault("padding", cfg["kernel_size"] // 2)
            if depthwise:
                cfg["in_channels"] = cfg["groups"] = cfg["out_channels"]
            key = tuple(cfg[c] for c in cols)
            if key not in seen:
                seen.add(key)
                out.append({**{c: cfg[c] for c in cols}, "layer": label})
    return out


def _axis(key: str, v: Any, where: str) -> list[int]:
    if isinstance(v, dict):
        try:
            return list(range(int(v["start"]), int(v["stop"]) + 1, int(v.get("step", 1))))
        except KeyError as err:
            raise ValueError(f"{where}: `{key}` range must have start and stop, got {v}") from err
    vals = v if isinstance(v, list) else [v]
    for x in vals:
        if isinstance(x, bool) or not isinstance(x, int):
            raise ValueError(f"{where}: `{key}` must be an int, a list of ints or a range, got {x!r}")
    return [int(x) for x in vals]

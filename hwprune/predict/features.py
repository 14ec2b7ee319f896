"""Features that let a tree ensemble learn the latency staircase of a conv2d.

A backend's kernels work on tiles of channels (oneDNN blocks channels by 8 or 16 for AVX2/AVX-512, cuDNN
by 8/32/64 for tensor cores), so latency against channel count is a staircase whose stairs fall at tile
multiples. A tree splits on one feature at a time, so the features expose the tiling directly: each channel
count, its residue modulo every tile size and its ceil-division by every tile size, and the FLOPs of the
layer after padding the channels up to a tile. Work-size features (FLOPs, bytes moved, arithmetic
intensity, roofline time where the device peaks are known) let the ensemble place unseen layer shapes.

The feature layout is versioned by :data:`FEATURE_SCHEMA_VERSION`; a saved predictor records it, and
:meth:`hwprune.predict.LatencyPredictor.load` refuses a file built with another layout.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hwprune.contract import CONFIG_COLUMNS  # the layer contract at the bottom; imports no torch

log = logging.getLogger(__name__)

__all__ = [
    "DTYPE_BYTES",
    "FEATURE_SCHEMA_VERSION",
    "TILE_SIZES",
    "DevicePeaks",
    "build_features",
    "config_frame",
    "feature_names",
    "layer_family",
    "layer_key",
    "output_melems",
]

FEATURE_SCHEMA_VERSION: int = 1
"""Bump whenever :func:`build_features` changes its columns or their meaning."""

TILE_SIZES: tuple[int, ...] = (4, 8, 16, 32, 64, 128)
"""Channel tile sizes whose residues and ceil-divisions are features."""

DTYPE_BYTES: dict[str, int] = {
    "float32": 4,
    "tf32": 4,
    "float16": 2,
    "bfloat16": 2,
    "int8": 1,
    "float64": 8,
}
"""Bytes per element of every dtype a table may name."""

_DTYPE_ALIASES: dict[str, str] = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}


@dataclass(frozen=True)
class DevicePeaks:
    """Peak compute and memory bandwidth of a device, where the table's sidecar knows them.

    Attributes:
        gflops: Peak GFLOP/s, or ``None`` if unknown.
        gbytes_per_s: Peak memory bandwidth in GB/s, or ``None`` if unknown.

    Example:
        >>> DevicePeaks(gflops=1200.0, gbytes_per_s=40.0).gflops
        1200.0
    """

    gflops: float | None = None
    gbytes_per_s: float | None = None


def normalize_dtype(dtype: object) -> str:
    """Return the canonical dtype name (``"float32"``, ``"float16"``, ...).

    Args:
        dtype: A dtype name such as ``"fp16"`` or ``"torch.float16"``.

    Returns:
        The canonical name, a key of :data:`DTYPE_BYTES`.

    Raises:
        ValueError: If the dtype is unknown.

    Example:
        >>> normalize_dtype("torch.float16")
        'float16'
    """
    name = str(dtype).strip().lower().removeprefix("torch.")
    name = _DTYPE_ALIASES.get(name, name)
    if name not in DTYPE_BYTES:
        raise ValueError(f"`dtype` must be one of {tuple(DTYPE_BYTES)}, got {dtype!r}")
    return name


def config_frame(
    configs: pd.DataFrame | Sequence[Mapping[str, object]], *, default_dtype: str | None = None
) -> pd.DataFrame:
    """Turn rows keyed by the table's column names into a clean config frame.

    Args:
        configs: A DataFrame or a sequence of mappings with at least :data:`CONFIG_COLUMNS`; a ``dtype``
            column is optional.
        default_dtype: dtype for rows without one.

    Returns:
        A new DataFrame with the int64 :data:`CONFIG_COLUMNS` and a canonical ``dtype`` column.

    Raises:
        ValueError: If a column is missing, a value is not a positive integer where one is required,
            or no dtype is given and there is no ``dtype`` column.

    Example:
        >>> row = dict(batch=1, in_channels=3, out_channels=8, height=8, width=8, kernel_size=3,
        ...            stride=1, padding=1, groups=1)
        >>> config_frame([row], default_dtype="float32")["dtype"].tolist()
        ['float32']
    """
    df = configs if isinstance(configs, pd.DataFrame) else pd.DataFrame(list(configs))
    missing = [c for c in CONFIG_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"`configs` must have the columns {list(CONFIG_COLUMNS)}, got {list(df.columns)} "
            f"(missing {missing})"
        )
    out = pd.DataFrame(index=range(len(df)))
    for col in CONFIG_COLUMNS:
        values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
        if np.isnan(values).any() or (values != np.round(values)).any():
            raise ValueError(f"`configs` column {col!r} must hold integers, got {df[col].tolist()[:5]}...")
        out[col] = values.astype(np.int64)
    positive = [c for c in CONFIG_COLUMNS if c != "padding"]
    bad = [c for c in positive if (out[c] <= 0).any()] + (["padding"] if (out["padding"] < 0).any() else [])
    if bad:
        raise ValueError(f"`configs` columns {bad} must be positive (padding >= 0)")
    if "dtype" in df.columns:
        uniq = {d: normalize_dtype(d) for d in pd.unique(df["dtype"].astype(str))}
        out["dtype"] = df["dtype"].astype(str).map(uniq).to_numpy()
    elif default_dtype is not None:
        out["dtype"] = normalize_dtype(default_dtype)
    else:
        raise ValueError("`configs` must have a `dtype` column when no default dtype is known")
    return out


def output_melems(df: pd.DataFrame) -> np.ndarray:
    """Millions of elements each conv writes: ``batch * out_channels * out_h * out_w / 1e6``.

    The BatchNorm, activation and residual add after a conv read and write this many elements, so their
    cost (memory-bound on every backend) scales with it; see
    :meth:`hwprune.predict.LatencyPredictor.layer_costs`.

    Args:
        df: A frame from :func:`config_frame` (or any frame with the config columns).

    Returns:
        A float64 array, one value per row.

    Example:
        >>> f = config_frame([dict(batch=2, in_channels=3, out_channels=8, height=8, width=8,
        ...                        kernel_size=3, stride=1, padding=1, groups=1)], default_dtype="float32")
        >>> float(output_melems(f)[0] * 1e6)
        1024.0
    """
    k, s, p = (df[c].to_numpy(dtype=np.int64) for c in ("kernel_size", "stride", "padding"))
    oh = (df["height"].to_numpy(dtype=np.int64) + 2 * p - k) // s + 1
    ow = (df["width"].to_numpy(dtype=np.int64) + 2 * p - k) // s + 1
    n = df["batch"].to_numpy(dtype=np.int64) * df["out_channels"].to_numpy(dtype=np.int64)
    return (n * np.maximum(oh, 1) * np.maximum(ow, 1)).astype(np.float64) / 1e6


def layer_key(df: pd.DataFrame) -> pd.Series:
    """Return a string that names a layer *shape* for each row: every config except the channel counts.

    Rows of one channel sweep of one layer share a key; grouped cross-validation on this key measures how
    well the predictor does on layer shapes it has never seen.

    Args:
        df: A frame from :func:`config_frame` or a measurement table.

    Returns:
        A string Series aligned with ``df``.

    Example:
        >>> f = config_frame([dict(batch=1, in_channels=3, out_channels=8, height=8, width=8,
        ...                        kernel_size=3, stride=1, padding=1, groups=1)], default_dtype="float32")
        >>> layer_key(f).iloc[0]
        'b1_8x8_k3s1p1_g1_float32'
    """
    dw = np.where(
        (df["groups"] > 1) & (df["groups"] == df["in_channels"]), "dw", "g" + df["groups"].astype(str)
    )
    dtype = df["dtype"].astype(str) if "dtype" in df.columns else pd.Series("", index=df.index)
    return (
        "b"
        + df["batch"].astype(str)
        + "_"
        + df["height"].astype(str)
        + "x"
        + df["width"].astype(str)
        + "_k"
        + df["kernel_size"].astype(str)
        + "s"
        + df["stride"].astype(str)
        + "p"
        + df["padding"].astype(str)
        + "_"
        + pd.Series(dw, index=df.index)
        + "_"
        + dtype
    )


def layer_family(df: pd.DataFrame) -> pd.Series:
    """Name each row's layer family: ``depthwise``, ``grouped``, ``conv1x1``, ``conv3x3``, ``convKxK``.

    Args:
        df: A frame with :data:`CONFIG_COLUMNS`.

    Returns:
        A string Series aligned with ``df``.

    Example:
        >>> f = pd.DataFrame([dict(batch=1, in_channels=8, out_channels=8, height=8, width=8,
        ...                        kernel_size=1, stride=1, padding=0, groups=1)])
        >>> layer_family(f).tolist()
        ['conv1x1']
    """
    fam = [
        "depthwise" if g > 1 and g == cin else "grouped" if g > 1 else f"conv{k}x{k}"
        for k, g, cin in zip(df["kernel_size"], df["groups"], df["in_channels"], strict=True)
    ]
    return pd.Series(fam, index=df.index, dtype=object)


def feature_names() -> list[str]:
    """Return the names of the columns :func:`build_features` produces, in order.

    Returns:
        Feature names for schema version :data:`FEATURE_SCHEMA_VERSION`.

    Example:
        >>> feature_names()[:3]
        ['batch', 'in_channels', 'out_channels']
    """
    names = list(CONFIG_COLUMNS)
    names += ["dtype_bytes", "out_height", "out_width", "in_per_group", "out_per_group"]
    for ch in ("in", "out"):
        for t in TILE_SIZES:
            names += [f"{ch}_mod{t}", f"{ch}_ceil{t}"]
    names += ["log_flops", "log_bytes", "log_intensity", "log_out_elems", "log_in_elems", "log_weight_elems"]
    names += [f"log_flops_pad{t}" for t in (8, 16, 32, 64)]
    names += ["log_roofline_ms"]
    return names


def build_features(configs: pd.DataFrame, peaks: DevicePeaks | None = None) -> np.ndarray:
    """Compute the feature matrix for a config frame, vectorised.

    Args:
        configs: A frame from :func:`config_frame` (int columns :data:`CONFIG_COLUMNS` and ``dtype``).
        peaks: Device peaks for the roofline feature; unknown peaks give a constant 0 column.

    Returns:
        A float64 array of shape ``(len(configs), len(feature_names()))``.

    Example:
        >>> f = config_frame([dict(batch=1, in_channels=16, out_channels=24, height=14, width=14,
        ...                        kernel_size=3, stride=1, padding=1, groups=1)], default_dtype="float32")
        >>> build_features(f).shape == (1, len(feature_names()))
        True
    """
    c = {col: configs[col].to_numpy(dtype=np.float64) for col in CONFIG_COLUMNS}
    elem = configs["dtype"].map(DTYPE_BYTES).to_numpy(dtype=np.float64)
    b, cin, cout, h, w = c["batch"], c["in_channels"], c["out_channels"], c["height"], c["width"]
    k, s, p, g = c["kernel_size"], c["stride"], c["padding"], c["groups"]
    ho = np.maximum(np.floor((h + 2 * p - k) / s) + 1, 1)
    wo = np.maximum(np.floor((w + 2 * p - k) / s) + 1, 1)
    in_pg, out_pg = cin / g, cout / g
    cols: list[np.ndarray] = [b, cin, cout, h, w, k, s, p, g, elem, ho, wo, in_pg, out_pg]
    for ch in (cin, cout):
        for t in TILE_SIZES:
            cols += [np.mod(ch, t), np.ceil(ch / t)]
    out_elems = b * cout * ho * wo
    in_elems = b * cin * h * w
    weight_elems = cout * in_pg * k * k
    flops = 2.0 * out_elems * in_pg * k * k
    nbytes = elem * (in_elems + out_elems + weight_elems)
    cols += [
        np.log(flops),
        np.log(nbytes),
        np.log(flops / nbytes),
        np.log(out_elems),
        np.log(in_elems),
        np.log(weight_elems),
    ]
    for t in (8, 16, 32, 64):
        pad_out = np.ceil(cout / t) * t
        pad_in = np.where(g > 1, in_pg, np.ceil(cin / t) * t)
        cols.append(np.log(2.0 * b * pad_out * ho * wo * pad_in * k * k))
    if peaks is not None and peaks.gflops and peaks.gbytes_per_s:
        roof = np.maximum(flops / (peaks.gflops * 1e9), nbytes / (peaks.gbytes_per_s * 1e9)) * 1e3
        cols.append(np.log(roof))
    else:
        cols.append(np.zeros_like(b))
    return np.column_stack(cols)

"""Whole-model latency: the conv predictions of a network, calibrated end to end.

:class:`WholeModelMixin` holds the part of :class:`~hwprune.predict.predictor.LatencyPredictor` that
prices a whole network rather than one conv: :meth:`~WholeModelMixin.predict_model` (the one definition of
model latency in hwprune), the per-conv costs the planner sums, and the calibration of the elementwise
work, the fixed overhead and the dispatch floor from end-to-end measurements. It relies on the predictor's
``predict`` and ``fit``; torch is needed only by the methods that are handed a torch model.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from hwprune.contract import CONFIG_COLUMNS, conv_layer_configs
from hwprune.predict.features import config_frame, output_melems

if TYPE_CHECKING:  # torch only for the model-level methods, which are handed a torch model
    from torch import nn

    from hwprune.predict.tables import TableLike

log = logging.getLogger(__name__)

__all__ = ["WholeModelMixin"]


def _fit_work(c: np.ndarray, e: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    """Least squares (relative error) of ``t - c = a * e + b``, ``a >= 0``; ``a`` only if ``e`` varies."""
    r, w = t - c, 1.0 / t
    b = float(np.average(r, weights=w**2))
    if len(t) >= 2 and np.ptp(e) > 0.05 * np.max(e):
        A = np.stack([e * w, w], axis=1)
        (a_ls, b_ls), *_ = np.linalg.lstsq(A, r * w, rcond=None)
        if a_ls > 0:
            return float(a_ls), float(b_ls)
    return 0.0, b


class WholeModelMixin:
    """The whole-model methods of :class:`~hwprune.predict.predictor.LatencyPredictor`.

    A mixin, not a predictor of its own: it reads the fitted attributes ``elem_ms_per_m_``,
    ``overhead_ms_``, ``floor_ms_`` and ``calibration_`` and calls ``predict`` and ``fit`` of the class
    that inherits it.
    """

    if TYPE_CHECKING:
        elem_ms_per_m_: float
        overhead_ms_: float
        floor_ms_: float
        calibration_: list[dict[str, Any]]

        def predict(self, configs: pd.DataFrame | Sequence[Mapping[str, Any]]) -> np.ndarray: ...

        def fit(self, table: TableLike, y: None = None) -> Self: ...

    def layer_costs(self, configs: pd.DataFrame | Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Predicted cost (ms) of each conv *with the elementwise layers that follow it*.

        ``predict(configs) + elem_ms_per_m_ * output elements / 1e6``: the conv itself, plus the BatchNorm,
        activation and residual add that read and write its output, whose cost scales with the output's
        size (calibrated by :meth:`calibrate`; 0 before). Summed over a network's convs and added to
        :attr:`overhead_ms_`, this is :meth:`predict_model`; the planner prices channel groups with it.

        Args:
            configs: As for :meth:`predict`.

        Returns:
            A float64 array of ms, one per row.

        Example:
            >>> pred.layer_costs(pd.DataFrame([layer.config for layer in layers]))  # doctest: +SKIP
        """
        ms = self.predict(configs)
        if self.elem_ms_per_m_ == 0.0 or len(ms) == 0:
            return ms
        return ms + self.elem_ms_per_m_ * output_melems(config_frame(configs, default_dtype="float32"))

    def conv_latencies(self, model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, float]:
        """Predicted latency (ms) of each conv layer of ``model`` (the conv alone).

        Args:
            model: Any module with ``nn.Conv2d`` layers.
            input_shape: Full input shape, batch first, e.g. ``(1, 1, 28, 28)``.

        Returns:
            Layer name to predicted ms, in execution order.

        Raises:
            ValueError: As :func:`hwprune.contract.conv_layer_configs` and :meth:`predict`.

        Example:
            >>> pred.conv_latencies(build_model("small_resnet"), (1, 1, 28, 28))  # doctest: +SKIP
        """
        layers = conv_layer_configs(model, input_shape)
        ms = self.predict(pd.DataFrame([layer.config for layer in layers]))
        return {layer.name: float(v) for layer, v in zip(layers, ms, strict=True)}

    def predict_model(self, model: nn.Module, input_shape: tuple[int, ...]) -> float:
        """Predicted latency (ms) of a whole network on this target.

        The one definition of model latency in hwprune (the planner, the callback and the CLI all use it):
        the sum of :meth:`layer_costs` over the network's convs (each conv with the elementwise layers on
        its output) plus :attr:`overhead_ms_`, and never less than the dispatch floor :attr:`floor_ms_`.
        Uncalibrated, it is the sum of the convs alone, which
        misses BatchNorm, activations, adds and launches: 22-42% of a ResNet's time on a GPU
        (DESIGN.md). :func:`hwprune.verify.calibration.calibrate_on_target` calibrates it end to end.

        Args:
            model: Any module with ``nn.Conv2d`` layers.
            input_shape: Full input shape, batch first.

        Returns:
            Predicted latency in ms.

        Raises:
            sklearn.exceptions.NotFittedError: If not fitted.
            ValueError: As :meth:`conv_latencies`.

        Example:
            >>> pred.predict_model(build_model("small_resnet"), (1, 1, 28, 28))  # doctest: +SKIP
        """
        check_is_fitted(self, "estimator_")
        cfgs = pd.DataFrame([layer.config for layer in conv_layer_configs(model, tuple(input_shape))])
        return float(max(self.layer_costs(cfgs).sum() + self.overhead_ms_, self.floor_ms_))

    def refit(self, table: TableLike) -> Self:
        """Fit again on a grown table, keeping the whole-model measurements and re-fitting on them.

        The closed loop calls this after it has measured the configs a plan mispredicted: the new rows
        correct the conv predictions, and the calibration is re-fitted against the corrected convs.

        Args:
            table: As for :meth:`fit`.

        Returns:
            ``self``.

        Example:
            >>> pred.refit(pred.source_table_)  # doctest: +SKIP
        """
        records = list(getattr(self, "calibration_", []))
        self.fit(table)
        if records:
            self.calibration_ = records
            self._fit_calibration()
        return self

    @property
    def calibrated(self) -> bool:
        """Whether :meth:`calibrate` has fitted the whole-model terms."""
        return bool(getattr(self, "calibration_", []))

    def calibrate(
        self,
        measurements: Sequence[tuple[nn.Module, tuple[int, ...], float]],
        *,
        append: bool = False,
    ) -> Self:
        """Fit the whole-model terms from end-to-end measurements of networks on this target.

        For each measured network ``i``, ``C_i`` is the sum of its convs' predictions, ``E_i`` the millions
        of elements its convs output and ``T_i`` the measured ms. The calibration fits
        ``T_i - C_i = a * E_i + b`` with ``a >= 0`` (``elem_ms_per_m_``: the BatchNorm, activation and add
        work that grows with every channel kept) and ``b`` (``overhead_ms_``: launches, pooling, the
        classifier), by least squares on the relative error. Measure the dense network and several
        pruned variants (:func:`hwprune.verify.calibration.calibrate_on_target` does): with one network,
        or networks of near-equal size, ``a`` is not identifiable and only ``b`` is fitted.

        Args:
            measurements: ``(model, input_shape, measured_ms)`` triples, measured on this target.
            append: Add to the measurements already fitted on (the closed loop does) instead of
                replacing them.

        Returns:
            ``self``.

        Raises:
            sklearn.exceptions.NotFittedError: If not fitted.
            ValueError: If ``measurements`` is empty or a latency is not finite and > 0.

        Example:
            >>> shape = (1, 1, 28, 28)
            >>> pred.calibrate([(dense, shape, 0.64), (pruned, shape, 0.41)])  # doctest: +SKIP
        """
        check_is_fitted(self, "estimator_")
        if len(measurements) == 0:
            raise ValueError(
                "`measurements` must hold at least one (model, input_shape, ms) triple, got none"
            )
        records = list(self.calibration_) if append else []
        for model, shape, ms in measurements:
            if not (isinstance(ms, int | float) and math.isfinite(ms) and ms > 0):
                raise ValueError(f"`measurements` latencies must be finite ms > 0, got {ms!r}")
            cfgs = [
                [int(layer.config[k]) for k in CONFIG_COLUMNS] for layer in conv_layer_configs(model, shape)
            ]
            records.append({"configs": cfgs, "measured_ms": float(ms)})
        self.calibration_ = records
        self._fit_calibration()
        return self

    def _fit_calibration(self) -> None:
        """(Re)fit the whole-model terms on :attr:`calibration_` with the current regressor.

        The model is ``T = max(C + a * E + b, D)``: the device's work (convs, the elementwise layers on
        their outputs, a constant) or the *dispatch floor* ``D``, whichever is longer. ``D`` is the time
        the host needs to launch the network's kernels one by one (eager PyTorch: ~10 us per op). A GPU
        that finishes its work sooner waits for the host, so below ``D`` removing channels buys nothing;
        on an H200 at batch 32 ResNet-18 and MobileNetV2 sit near it (docs/BENCHMARKS.md). ``D`` is
        chosen among the measured latencies (or 0, no floor) to minimise the relative squared error;
        ``a >= 0`` and ``b`` are fitted by least squares on the networks above the floor.
        """
        conv, elems, meas = [], [], []
        for rec in self.calibration_:
            cfg = pd.DataFrame(rec["configs"], columns=list(CONFIG_COLUMNS))
            conv.append(float(self.predict(cfg).sum()))
            elems.append(float(output_melems(config_frame(cfg, default_dtype="float32")).sum()))
            meas.append(float(rec["measured_ms"]))
        c, e, t = np.array(conv), np.array(elems), np.array(meas)
        best: tuple[float, float, float, float] | None = None
        no_floor_err = math.inf
        largest = float(t[int(np.argmax(c))])  # the network with the most conv work (the dense one)
        for d in [0.0, *sorted(set(t.tolist()))]:
            above = t > d * (1 + 1e-9)
            if d > 0 and (above.sum() < 2 or d > largest):
                continue  # a floor must leave networks above it, and lie under the largest network
            a, b = _fit_work(c[above] if d > 0 else c, e[above] if d > 0 else e, t[above] if d > 0 else t)
            b = max(b, -0.9 * float(np.min(c + a * e)))  # never predict less than a tenth of the convs
            pred = np.maximum(c + a * e + b, d)
            err = float(np.mean((pred / t - 1.0) ** 2))
            # A floor must earn its place: noisy timings of a flat model otherwise invent one above the
            # dense network (seen on the lent H200), which would stop all pruning.
            if best is None or (err < best[0] - 1e-12 and (d == 0 or err < 0.8 * no_floor_err)):
                best = (err, a, b, d)
            if d == 0:
                no_floor_err = err
        assert best is not None
        _, self.elem_ms_per_m_, self.overhead_ms_, self.floor_ms_ = best
        pred = np.maximum(c + self.elem_ms_per_m_ * e + self.overhead_ms_, self.floor_ms_)
        log.info(
            "calibrated whole-model latency on %d network(s): %.4g ms per M output elements, overhead "
            "%.4g ms, dispatch floor %.4g ms; fit error max %.1f%%",
            len(t),
            self.elem_ms_per_m_,
            self.overhead_ms_,
            self.floor_ms_,
            100 * float(np.max(np.abs(pred / t - 1.0))),
        )

"""The backend interface; the registry and the capabilities its classes answer are in :mod:`.registry`."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from hwprune.measure.backends.registry import BackendTraits, backend_class
from hwprune.measure.evaluator import EvaluatorConfig
from hwprune.measure.targets import Target

log = logging.getLogger(__name__)

__all__ = ["Backend", "ModelRunner", "RunResult"]


@dataclass(frozen=True)
class RunResult:
    """One configuration's result: a timing or an error, never both ("results are data").

    Attributes:
        latency_ms: Median latency, or None on error.
        spread_ms: IQR of the samples, or None on error.
        repeats: Number of samples (0 on error).
        error: Error message, or None.
        settings: Backend settings that applied to this row (threads, number, tuned, ...).
    """

    latency_ms: float | None
    spread_ms: float | None
    repeats: int
    error: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelRunner:
    """A prepared whole network: ``fn()`` runs one forward pass on the target.

    Attributes:
        fn: One inference on a fixed random input (the result is ignored).
        sync: Called before reading a host clock (``torch.cuda.synchronize`` on a GPU), or None.
        timer: ``timer(fn, n) -> ms`` replacing the wall clock (CUDA events), or None.
        build_s: Seconds the target's runtime spent preparing the network (graph capture, compile).
    """

    fn: Callable[[], object]
    sync: Callable[[], None] | None = None
    timer: Callable[[Callable[[], object], int], float] | None = None
    build_s: float = 0.0


class Backend(BackendTraits, ABC):
    """Times one conv2d configuration on one target.

    Subclasses implement :meth:`run` (and optionally :meth:`setup`/:meth:`close`, :meth:`device_name`,
    :meth:`hardware_name`, :meth:`versions`) and state what they can do in the class attributes of
    :class:`~hwprune.measure.backends.registry.BackendTraits` (``is_gpu``, ``runs_torch``, ``dtypes``,
    ``tracker_sessions``, :meth:`times_models`). A failure inside :meth:`run` is caught by
    :meth:`measure_one` and returned as data.

    Args:
        target: The target; defaults to a bare one named after the backend.
        evaluator: Measurement settings.

    Example:
        >>> b = Backend.create("torch_cpu")  # doctest: +SKIP
        >>> b.measure_one({"batch": 1, "in_channels": 8, ...}).latency_ms  # doctest: +SKIP
    """

    def __init__(self, target: Target | None = None, evaluator: EvaluatorConfig | None = None) -> None:
        self.target = target or Target(name=self.kind, backend=self.kind)
        self.evaluator = evaluator or EvaluatorConfig()

    @staticmethod
    def backend_class(kind: str) -> type[Backend]:
        """The class registered under ``kind`` (imported lazily): :func:`.registry.backend_class`.

        Raises:
            ValueError: ``Unknown backend: {kind}``.
        """
        return cast("type[Backend]", backend_class(kind))

    @staticmethod
    def create(kind: str, target: Target | None = None, evaluator: EvaluatorConfig | None = None) -> Backend:
        """Instantiate the backend registered under ``kind``.

        Args:
            kind: One of :data:`~hwprune.measure.backends.registry.BACKENDS`.
            target: The target to measure.
            evaluator: Measurement settings.

        Returns:
            The backend (not yet set up).

        Raises:
            ValueError: ``Unknown backend: {kind}``.
        """
        return Backend.backend_class(kind)(target, evaluator)

    def setup(self) -> None:  # noqa: B027 - optional hook, most backends need no setup
        """Acquire the device (called once before the sweep)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device (called in ``finally`` after the sweep)."""

    def device_name(self) -> str:
        """Name written in the table's ``device`` column (subclasses may still prefer the config's)."""
        from hwprune.measure.device_info import cpu_model

        return self.target.device or cpu_model()

    def hardware_name(self) -> str:
        """The device's name as the hardware reports it, never the config's ``device`` (what was expected).

        :func:`hwprune.measure.measure` writes this into the table and warns when the config expected
        another device. This default reports the CPU model; a backend on another device (a GPU, a board)
        overrides it.
        """
        from hwprune.measure.device_info import cpu_model

        return cpu_model()

    def versions(self) -> dict[str, str]:
        """Software versions written in the table's ``versions`` column."""
        return {}

    @abstractmethod
    def run(self, config: Mapping[str, int]) -> RunResult:
        """Time one configuration (keys: :data:`~hwprune.contract.CONFIG_COLUMNS`); may raise."""

    def model_runner(self, model: Any, input_shape: tuple[int, ...]) -> ModelRunner:
        """Prepare a whole network for timing on this target, with the target's own settings.

        Backends that can run a whole model in this process (torch CPU, cuDNN) override this; the others
        time single layers only, and the closed loop and ``verify`` fall back to the predictor.

        Raises:
            NotImplementedError: If this backend cannot time a whole model here.
        """
        raise NotImplementedError(
            f"backend {self.kind!r} times single conv layers only; it cannot time a whole model in this "
            "process (use `hwprune.measure.time_models` with a torch_cpu or cudnn target)"
        )

    def measure_one(self, config: Mapping[str, int]) -> RunResult:
        """:meth:`run`, with any exception turned into an error result."""
        try:
            return self.run(config)
        except Exception as err:  # noqa: BLE001 - results are data: one bad config must not end a sweep
            log.warning("config %s failed: %s: %s", dict(config), type(err).__name__, err)
            return RunResult(None, None, 0, f"{type(err).__name__}: {err}"[:500])

    def __enter__(self) -> Backend:
        self.setup()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

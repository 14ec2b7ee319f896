"""The top-level ``hwprune`` command line: help that explains the workflow, and a fast start (issue 12, 9)."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import get_args

from hwprune.cli import build_parser, catalogue


def test_help_states_workflow_example_models_and_targets() -> None:
    from hwprune.models import MODEL_NAMES

    text = build_parser().format_help()
    assert "``" not in text  # no raw docstring markup
    assert "workflow: measure -> fit -> report -> prune" in text
    assert "hwprune measure --target cpu_torch" in text and "hwprune prune --predictor" in text
    assert sorted(catalogue("model")) == sorted(MODEL_NAMES)
    for name in (*MODEL_NAMES, "cpu_torch", "cuda_cudnn_fp16", "rpi4_tvm_llvm"):
        assert name in text


def test_subcommand_help_shows_defaults() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices  # type: ignore[union-attr]
    measure_help = " ".join(sub["measure"].format_help().split())  # argparse wraps lines
    assert "(default: cpu_torch)" in measure_help and "(default: 0.25)" in measure_help
    assert "(default: None)" not in measure_help
    assert "(default: 0.1)" in measure_help  # --max-rel-spread


def test_estimator_choices_match_the_predictor() -> None:
    from hwprune.predict.cli import ESTIMATOR_CHOICES, TRANSFORM_CHOICES
    from hwprune.predict.predictor import EstimatorKind, TargetTransform

    assert ESTIMATOR_CHOICES == get_args(EstimatorKind) and TRANSFORM_CHOICES == get_args(TargetTransform)


_PROBE = (
    "import sys; from hwprune.cli import build_parser; build_parser(); "
    "print(sorted(m for m in ('torch', 'sklearn', 'tvm', 'pandas', 'lightning', 'pytorch_lightning') "
    "if m in sys.modules))"
)


def test_help_imports_no_heavy_library_and_answers_fast() -> None:
    """No absolute time limit: `--help` is timed against a bare interpreter start in the same rounds.

    Here the bare start took 0.019 s, `--help` 0.045 s (2.4x) and `import torch` 1.51 s (80x): a help that
    pulled in torch would be far past the 10x allowed, and load on a shared machine slows both alike.
    """
    probe = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "[]"
    best = {"help": float("inf"), "bare": float("inf")}
    for _ in range(3):  # best of 3, interleaved: the 2-core machine is shared
        for name, args in (("bare", ["-c", "pass"]), ("help", ["-m", "hwprune.cli", "--help"])):
            t0 = time.perf_counter()
            res = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60)
            best[name] = min(best[name], time.perf_counter() - t0)
            assert res.returncode == 0
            if name == "help":
                assert "workflow" in res.stdout
    ratio = best["help"] / best["bare"]
    assert ratio < 10, f"`hwprune --help` took {best['help']:.3f} s, {ratio:.1f}x a bare interpreter start"


def test_public_api_still_imports() -> None:
    from hwprune import HardwareAwarePruning, LatencyPredictor
    from hwprune.measure import measure, read_table
    from hwprune.prune import plan_pruning, prune_to_budget

    assert callable(measure) and callable(read_table) and callable(plan_pruning) and callable(prune_to_budget)
    assert (
        HardwareAwarePruning.__name__ == "HardwareAwarePruning"
        and LatencyPredictor.__name__ == "LatencyPredictor"
    )

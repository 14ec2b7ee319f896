"""The channel floor is one number: the measurement space's default and the planner's (issue 20)."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import hwprune.prune as prune
from hwprune.measure import space

REPO = Path(__file__).resolve().parents[2]


def test_the_planner_and_the_space_share_one_floor() -> None:
    assert prune.DEFAULT_MIN_CHANNEL_RATIO is space.DEFAULT_MIN_CHANNEL_RATIO
    assert inspect.signature(space.model_space).parameters["floor"].default is space.DEFAULT_MIN_CHANNEL_RATIO
    assert "DEFAULT_MIN_CHANNEL_RATIO" in space.__all__ and "DEFAULT_MIN_CHANNEL_RATIO" in prune.__all__


def test_the_floor_imports_no_torch() -> None:
    """``hwprune --help`` shows the floor, so the module that defines it must not load torch."""
    code = (
        "import sys; from hwprune.prune import DEFAULT_MIN_CHANNEL_RATIO as r; "
        "print(r, 'torch' in sys.modules)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["0.25", "False"]

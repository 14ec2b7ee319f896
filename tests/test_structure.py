"""The package's structure holds (issue 20): no import circle, no upward import, no private name imported
across modules, no long function without a stated reason, and no file over its size ceiling.

Runs ``scripts/import_graph.py --check`` (it reads the source with ``ast``; nothing is imported) in a fresh
process, as CI and a developer would, and checks its report against a deliberately broken copy.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "import_graph.py"


def _check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(root / "scripts" / "import_graph.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=120,
    )


def test_the_package_structure_holds() -> None:
    res = _check(REPO)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "import circles: 0" in res.stdout
    assert "upward imports: 0" in res.stdout
    assert "private names imported across modules: 0" in res.stdout
    assert "structure: OK" in res.stdout


def test_the_check_fails_on_an_upward_import_and_a_circle(tmp_path: Path) -> None:
    """The check can fail: measure importing verify is upward, and two measure modules importing each
    other make a circle."""
    shutil.copytree(REPO / "hwprune", tmp_path / "hwprune", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "scripts").mkdir()
    shutil.copy(SCRIPT, tmp_path / "scripts" / "import_graph.py")
    space = tmp_path / "hwprune" / "measure" / "space.py"
    space.write_text(space.read_text() + "\nfrom hwprune.verify.budget import Budget  # noqa\n")
    (tmp_path / "hwprune" / "measure" / "_ping.py").write_text("from hwprune.measure import _pong  # noqa\n")
    (tmp_path / "hwprune" / "measure" / "_pong.py").write_text("from hwprune.measure import _ping  # noqa\n")
    res = _check(tmp_path)
    assert res.returncode == 1, res.stdout
    assert "upward imports: 1" in res.stdout
    assert "hwprune.measure.space" in res.stdout and "hwprune.verify.budget" in res.stdout
    assert "import circles: 1" in res.stdout
    assert "structure: FAILED" in res.stdout

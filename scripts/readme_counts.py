"""Write the README's counts (tests, shipped tables) from the repository itself, never by hand.

    python scripts/readme_counts.py            # rewrite the block between the counts markers
    python scripts/readme_counts.py --check    # exit 1 if the README's block is stale (.ci/run does this)

The test count is what ``pytest --collect-only`` collects now; the time of a run is left out on purpose: it
depends on the machine and its load, and pytest's own summary line states it for every run.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
START, END = "<!-- counts:start -->", "<!-- counts:end -->"


def collected_tests() -> int:
    """How many tests ``pytest --collect-only`` finds under ``tests/`` (parametrized cases counted)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    m = re.search(r"(\d+) tests? collected", proc.stdout)
    if proc.returncode != 0 or m is None:
        raise RuntimeError(f"pytest --collect-only failed ({proc.returncode}):\n{proc.stdout[-2000:]}")
    return int(m.group(1))


def shipped_tables() -> int:
    """Measurement tables under ``tables/`` (CSV files)."""
    return len(list((ROOT / "tables").glob("**/*.csv")))


def block() -> str:
    """The README's counts sentence, between its markers."""
    return (
        f"{START}{collected_tests()} tests collected, {shipped_tables()} shipped tables "
        f"(written by `scripts/readme_counts.py`){END}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the README's counts are stale")
    args = ap.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    if START not in text or END not in text:
        print(f"{README}: no {START} ... {END} block", file=sys.stderr)
        return 1
    a, b = text.index(START), text.index(END) + len(END)
    new = block()
    if args.check:
        if text[a:b] != new:
            print(f"README counts are stale: {text[a:b]!r}, now {new!r}; run python scripts/readme_counts.py")
            return 1
        print(f"README counts are current: {new}")
        return 0
    README.write_text(text[:a] + new + text[b:], encoding="utf-8")
    print(f"wrote {new}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmarks of hwprune: scripts that write the tables, plots and reports in ``docs/``.

They use the library as any user does (``import hwprune``; no path tricks) and run from the repository
root as modules, e.g. ``python -m benchmarks.zoo --quick --out /tmp/z``. Experiments are YAML configs in
``benchmarks/conf/`` (:func:`benchmarks.common.load_config`); what several benchmarks share (provenance,
the uninstructed baseline at a matched parameter count, timing through :mod:`hwprune.measure`) lives in
:mod:`benchmarks.common`.
"""

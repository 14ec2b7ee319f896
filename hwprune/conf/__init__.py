"""hwprune's Hydra config tree, shipped inside the package (package data) so that an installed wheel has it.

``config.yaml`` and its groups ``device/`` (the target catalogue), ``model/``, ``data/``, ``pruning/``,
``trainer/`` and ``measure/``. ``train.py`` composes it through Hydra's ``pkg://hwprune.conf`` search path;
code finds the files with :func:`importlib.resources.files` (``hwprune.measure.targets.CONF_DIR``), never
through a path relative to a source checkout. This module holds no code: Hydra needs a package here (it
looks for this ``__init__.py``) and imports nothing else from it.
"""

# The two commands a user needs are `make run` and `make test`; both call `make setup` first.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
VPY := $(VENV)/bin/python
APT_PKGS := dataset-fashion-mnist pocl-opencl-icd python3-pyarmnn libarmnn-cpuref-backend22
STAMP := $(VENV)/.hwprune-setup-stamp

.PHONY: setup run test clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh "$(PY)" "$(VENV)" "$(APT_PKGS)"
	touch $(STAMP)

run: setup
	$(VPY) train.py $(ARGS)

test: setup
	$(VPY) -m pytest -q $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)

# gcnn_spin — every target installs what it needs first (the venv is created once, then reused).
SHELL := /bin/bash
PY_BOOT ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
export PYTHONUNBUFFERED := 1
export MPLBACKEND := Agg

.PHONY: help setup test test-fast demo bench bench-data bench-models bench-infer lock submit-train status container clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

setup: $(STAMP)  ## create .venv from requirements.lock (idempotent)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PY_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-deps -r requirements.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

test: setup  ## run the test suite
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup  ## tests without the slow ones
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

demo: setup  ## the embedded synthetic survey, end to end
	$(PY) -m gcnn_spin.demo

bench: bench-data bench-models bench-infer  ## every benchmark (see BENCHMARKS.md)

bench-data: setup  ## Zarr loader vs JPEG-folder loader
	$(PY) bench/bench_data.py

bench-models: setup  ## per-model params, build time, throughput, memory
	$(PY) bench/bench_models.py

bench-infer: setup  ## survey inference throughput of one array task
	$(PY) bench/bench_infer.py

lock:  ## re-resolve requirements.in into requirements.lock (in a scratch venv)
	rm -rf .lockvenv && $(PY_BOOT) -m venv .lockvenv
	.lockvenv/bin/pip install -q $$(grep -v -E '^(escnn|#)' requirements.in | sed 's/#.*//')
	.lockvenv/bin/pip install -q --no-deps $$(grep -E '^escnn' requirements.in | sed 's/#.*//')
	.lockvenv/bin/pip freeze --all | grep -v -E "^pip==" > requirements.lock
	rm -rf .lockvenv

container:  ## Apptainer image containers/gcnn_spin.sif from containers/gcnn_spin.def (needs apptainer)
	apptainer build --force $(if $(filter 0,$(shell id -u)),,--fakeroot) containers/gcnn_spin.sif containers/gcnn_spin.def

clean:  ## remove caches (keeps the venv and data)
	rm -rf .pytest_cache build *.egg-info

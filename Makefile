# gcnn_spin — every target installs what it needs first (the venv is created once, then reused).
SHELL := /bin/bash
PY_BOOT ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CUDA=13 (default, requirements.lock) or CUDA=12 (requirements-cu12.lock, older NVIDIA drivers): README "GPU drivers"
CUDA ?= 13
$(if $(filter-out 12 13,$(CUDA)),$(error CUDA=$(CUDA): use CUDA=13 or CUDA=12))
LOCK_FILE := $(if $(filter 12,$(CUDA)),requirements-cu12.lock,requirements.lock)
STAMP := $(VENV)/.installed$(if $(filter 12,$(CUDA)),-cu12)
# The OCI image: make image [CUDA=12] [BASE=debian|IMAGE_NAME]; make image-test
IMAGE ?= localhost/gcnn_spin:cuda$(CUDA)
BASE ?=
PYTEST_ARGS ?=
# Array stages (gcnn_spin/cluster/stages.py; make stages lists them): make submit-NAME [CLUSTER=a100|local|ci]
# [CLUSTER_ARGS="partition=h100"]; make status STAGE=NAME. E.g. make submit-train MODELS="gc_resnet18" SEEDS="0 1"
# SET="train.epochs=60". Each stage says which of the variables below fill which of its flags (make help).
DATA ?= data
RUNS ?= runs
LOGS ?= logs
PRED ?= predictions
RESULTS ?= results
RAW ?= raw
CONFIG ?= experiment
CLUSTER ?= a100
MODELS ?=
SEEDS ?=
SET ?=
CLUSTER_ARGS ?=
STAGE ?= train
STUDIES ?= rotation recovery
SPLIT ?= train
STORE ?= $(DATA)/stores/survey.zarr
ROWS ?= $(if $(filter survey,$(SPLIT)),$(DATA)/survey.parquet,$(DATA)/catalogue.parquet)
ON_CLUSTER = --cluster $(CLUSTER) $(foreach a,$(CLUSTER_ARGS),--cluster-set '$(a)')
# handed to every stage as VAR=VALUE words (a variable not listed here is read from make's command line)
STAGE_VARIABLES := DATA RUNS LOGS PRED RESULTS RAW CONFIG CLUSTER CLUSTER_ARGS MODELS SEEDS SET STUDIES SPLIT STORE ROWS
shell_quote = '$(subst ','\'',$(1))'
FROM_MAKE = $(foreach v,$(STAGE_VARIABLES),$(call shell_quote,$(v)=$($(v))))
STAGE_HELP = $(if $(wildcard $(PY)),$(PY) -m gcnn_spin.cluster.stages --make-help,printf 'submit-NAME\tone per array stage (make setup first to list them)\n')
export PYTHONUNBUFFERED := 1
export MPLBACKEND := Agg

.PHONY: help setup test test-fast demo bench bench-data bench-models bench-infer bench-rotation bench-catalogue bench-parts bench-real lock \
	status stages infer-array container image image-test image-sif gpu-check clean

help:  ## list targets (the submit-NAME of every array stage last, from gcnn_spin/cluster/stages.py)
	@{ grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'; $(STAGE_HELP); } | column -t -s $$'\t'

setup: $(STAMP)  ## create .venv from requirements.lock, or requirements-cu12.lock with CUDA=12 (idempotent)

$(STAMP): $(LOCK_FILE) pyproject.toml
	@test -x $(PY) || $(PY_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-deps -r $(LOCK_FILE)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed $(VENV)/.installed-cu12
	@touch $(STAMP)

test: setup  ## run the test suite
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup  ## tests without the slow ones
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

demo: setup  ## the embedded synthetic survey, end to end
	$(PY) -m gcnn_spin.demo

bench: bench-data bench-models bench-infer bench-rotation bench-catalogue bench-parts bench-real  ## every benchmark (see BENCHMARKS.md)

bench-data: setup  ## Zarr loader vs JPEG-folder loader
	$(PY) bench/bench_data.py

bench-models: setup  ## per-model params, build time, throughput, memory
	$(PY) bench/bench_models.py

bench-infer: setup  ## survey inference throughput of one array task
	$(PY) bench/bench_infer.py

bench-rotation: setup  ## rotation study: whole MC-dropout passes vs head-only passes, side by side
	$(PY) bench/bench_rotation.py --threads 1

bench-catalogue: setup  ## spin catalogue writer: time and peak RSS at 3 sizes, extrapolated to 8.7 M galaxies
	$(PY) bench/bench_catalogue.py

bench-parts: setup  ## prediction parts with page checksums vs without: write and merge, side by side
	$(PY) bench/bench_parts.py

bench-real: setup  ## models vs a torchvision baseline on a real GZ1 sample, several seeds (SAMPLE=...)
	$(PY) bench/bench_real.py --sample $(or $(SAMPLE),../shared/real_sample) --out bench_out/real

gpu-check: setup  ## on one GPU (< 8 min): CUDA tests, train/inference img/s, loader -> gpu_check_out/gpu_check.md
	PYTHON=$(PY) bash bench/gpu_check.sh --out gpu_check_out

submit-%: setup  # every stage NAME of gcnn_spin/cluster/stages.py, with the flags its Stage fills from the variables
	$(PY) -m gcnn_spin.cluster.stages $* --from-make submit $(FROM_MAKE)

status: setup  ## per task of STAGE (make stages): done / running / failed / stale / damaged; DEEP=1 hashes outputs
	$(PY) -m gcnn_spin.cluster.stages $(STAGE) --from-make status $(call shell_quote,LOGS=$(LOGS)) \
	    $(call shell_quote,DEEP=$(DEEP))

stages: setup  ## the array stages, listed once in gcnn_spin/cluster/stages.py (make submit-NAME, make status STAGE=NAME)
	@$(PY) -m gcnn_spin.cluster.stages

infer-array: setup  ## print the sbatch --array range of jobs/desi_infer.sh: one task per part (STORE=..., RUNS=...)
	@$(PY) -m gcnn_spin.cluster.infer --store $(STORE) --runs $(RUNS) $(ON_CLUSTER) --print-array

lock:  ## re-resolve requirements.in into requirements.lock (in a scratch venv)
	rm -rf .lockvenv && $(PY_BOOT) -m venv .lockvenv
	.lockvenv/bin/pip install -q $$(grep -v -E '^(escnn|#)' requirements.in | sed 's/#.*//')
	.lockvenv/bin/pip install -q --no-deps $$(grep -E '^escnn' requirements.in | sed 's/#.*//')
	.lockvenv/bin/pip freeze --all | grep -v -E "^pip==" > requirements.lock
	rm -rf .lockvenv

container:  ## Apptainer image containers/gcnn_spin.sif from containers/gcnn_spin.def (needs apptainer; CUDA=12)
	apptainer build --force $(if $(filter 0,$(shell id -u)),,--fakeroot) --build-arg LOCK=$(LOCK_FILE) \
	    containers/gcnn_spin.sif containers/gcnn_spin.def

image:  ## OCI image IMAGE with podman from containers/Containerfile (CUDA=12; BASE=debian where no registry answers)
	containers/build_image.sh --lock $(LOCK_FILE) --tag $(IMAGE) $(if $(BASE),--base $(BASE))

image-test:  ## in IMAGE, read-only and without network: escnn check + tiny survey -> train -> infer -> collect
	containers/image_test.sh $(IMAGE)

image-sif:  ## Apptainer image containers/gcnn_spin.sif converted from the tested OCI image IMAGE (needs apptainer)
	mkdir -p build && rm -f build/gcnn_spin-image.tar
	containers/podman.sh save --format docker-archive -o build/gcnn_spin-image.tar $(IMAGE)
	apptainer build --force containers/gcnn_spin.sif docker-archive://build/gcnn_spin-image.tar

clean:  ## remove caches (keeps the venv and data)
	rm -rf .pytest_cache build *.egg-info

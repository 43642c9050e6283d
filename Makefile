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
# Array stages: make submit-{store,train,infer,studies} [CLUSTER=a100|local|ci] [CLUSTER_ARGS="partition=h100"];
# make status STAGE={store,train,infer,studies}. E.g. make submit-train MODELS="gc_resnet18" SEEDS="0 1" SET="train.epochs=60"
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
SETTINGS = $(foreach a,$(SET),--set '$(a)')
SUBSET = $(if $(MODELS),--models $(MODELS)) $(if $(SEEDS),--seeds $(SEEDS))
export PYTHONUNBUFFERED := 1
export MPLBACKEND := Agg

.PHONY: help setup test test-fast demo bench bench-data bench-models bench-infer bench-rotation bench-catalogue bench-real lock submit-store submit-train \
	submit-infer submit-studies status infer-array container image image-test image-sif \
	gpu-check clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

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

bench: bench-data bench-models bench-infer bench-rotation bench-catalogue bench-real  ## every benchmark (see BENCHMARKS.md)

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

submit-store: setup  ## build store SPLIT (train/val/test/survey) from RAW's images as job arrays, one task per shard
	$(PY) -m gcnn_spin.cluster.build_store submit --rows $(ROWS) $(if $(filter survey,$(SPLIT)),,--split $(SPLIT)) \
	    --images $(RAW) --out $(DATA)/stores/$(SPLIT).zarr --logs $(LOGS)/store --config $(CONFIG) $(SETTINGS) $(ON_CLUSTER)

bench-real: setup  ## models vs a torchvision baseline on a real GZ1 sample, several seeds (SAMPLE=...)
	$(PY) bench/bench_real.py --sample $(or $(SAMPLE),../shared/real_sample) --out bench_out/real

gpu-check: setup  ## on one GPU (< 8 min): CUDA tests, train/inference img/s, loader -> gpu_check_out/gpu_check.md
	PYTHON=$(PY) bash bench/gpu_check.sh --out gpu_check_out

submit-train: setup  ## submit the training grid (models x seeds) as a job array; see CONFIG, CLUSTER, MODELS, SEEDS
	$(PY) -m gcnn_spin.cluster.submit_train submit --data $(DATA) --runs $(RUNS) --logs $(LOGS)/train \
	    --config $(CONFIG) $(SUBSET) $(SETTINGS) $(ON_CLUSTER)

submit-infer: setup  ## survey inference of every finished run (STORE=...), one task per (run, part)
	$(PY) -m gcnn_spin.cluster.infer submit --store $(STORE) --runs $(RUNS) --out $(PRED) --logs $(LOGS)/infer \
	    $(SUBSET) $(ON_CLUSTER)

submit-studies: setup  ## rotation and recovery studies (STUDIES=...) of every finished run, one task per (study, run)
	$(PY) -m gcnn_spin.analysis.studies submit --study $(STUDIES) --runs $(RUNS) --data $(DATA) --out $(RESULTS) \
	    --logs $(LOGS)/studies $(SUBSET) $(ON_CLUSTER)

status: setup  ## per task of STAGE (store, train, infer, studies): done / running / failed (with log) / not started
	$(PY) -m gcnn_spin.cluster.arrays status $(LOGS)/$(STAGE)

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

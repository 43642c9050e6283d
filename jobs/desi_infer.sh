#!/bin/bash
# Survey inference as one sbatch array, through the inference stage (python -m gcnn_spin.cluster.infer): array
# task i predicts part i (a contiguous block of survey-store shards) for every finished run and writes
# predictions/{model}/seed{k}/part-{i:05d}.parquet, then its marker. A rerun or a requeue skips every part whose
# marker matches the store and the run as they are now; a killed task leaves no partial file.
# `make submit-infer` runs the same tasks through submitit instead.
#
#   sbatch jobs/desi_infer.sh                                   # tasks past the last part exit at once
#   sbatch --array=$(make -s infer-array) jobs/desi_infer.sh    # exactly one task per part
#   STORE=/scratch/gzd/survey.zarr MODELS="gc_resnet18 g_resnet18_c" sbatch jobs/desi_infer.sh
#   SBATCH_PARTITION=h100 SBATCH_ACCOUNT=astro SBATCH_ARRAY_INX=0-99%8 sbatch jobs/desi_infer.sh
#
# Environment: STORE (survey store), RUNS (runs root), PRED (predictions root), MODELS, SEEDS (subsets),
# BATCH_SIZE, CLUSTER (profile whose max_array_size plans the parts; default a100), GCNN_SPIN_IMAGE (an Apptainer
# .sif: run inside it, with STORE's folder, RUNS, PRED and this folder bound), GCNN_SPIN_PYTHON (interpreter
# outside a container). sbatch's own SBATCH_PARTITION, SBATCH_ACCOUNT and SBATCH_ARRAY_INX (and any command-line
# option) override the lines below, which are the a100 profile (gcnn_spin/configs/cluster/a100.toml; a test
# keeps them equal). --open-mode=append: a requeued task adds to its log instead of truncating it.
#
#SBATCH --job-name=gcnn_spin-infer
#SBATCH --array=0-999%64
#SBATCH --partition=a100
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=720
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=logs/%A_%a.out
set -euo pipefail

STORE=${STORE:-data/stores/survey.zarr}
RUNS=${RUNS:-runs}
PRED=${PRED:-predictions}
BATCH_SIZE=${BATCH_SIZE:-512}
CLUSTER=${CLUSTER:-a100}
TASK_ID=${SLURM_ARRAY_TASK_ID:?run me with sbatch --array (or set SLURM_ARRAY_TASK_ID)}

args=(-m gcnn_spin.cluster.infer run --store "$STORE" --runs "$RUNS" --out "$PRED" --task-id "$TASK_ID"
      --batch-size "$BATCH_SIZE" --cluster "$CLUSTER" --quiet)
[[ -n "${MODELS:-}" ]] && args+=(--models ${MODELS})
[[ -n "${SEEDS:-}" ]] && args+=(--seeds ${SEEDS})

echo "gcnn_spin-infer: task ${TASK_ID} of job ${SLURM_ARRAY_JOB_ID:-?} on $(hostname) at $(date -u +%FT%TZ)"
if [[ -n "${GCNN_SPIN_IMAGE:-}" ]]; then
    mkdir -p "$PRED"  # a bind needs the folder to exist
    binds=$(realpath -m "$PWD" "$(dirname "$STORE")" "$RUNS" "$PRED" | sort -u | paste -sd, -)
    nv=(); command -v nvidia-smi >/dev/null 2>&1 && nv=(--nv)
    exec apptainer exec "${nv[@]}" --bind "$binds" --pwd "$PWD" "$GCNN_SPIN_IMAGE" python "${args[@]}"
fi
PYTHON=${GCNN_SPIN_PYTHON:-}
if [[ -z "$PYTHON" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
exec "$PYTHON" "${args[@]}"

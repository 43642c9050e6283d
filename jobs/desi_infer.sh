#!/bin/bash
# Sharded, resumable survey inference: array task i predicts part i (a contiguous block of survey-store shards)
# for every finished run and writes predictions/{model}/seed{k}/part-{i:05d}.parquet, then its .done marker.
#
#   sbatch jobs/desi_infer.sh                              # defaults below; tasks past the last part exit at once
#   sbatch --array=$(make -s infer-array) jobs/desi_infer.sh   # exactly one task per part
#   STORE=/scratch/gzd/survey.zarr MODELS="gc_resnet18 g_resnet18_c" sbatch jobs/desi_infer.sh
#
# Environment: STORE (survey store), RUNS (runs root), PRED (predictions root), MODELS, SEEDS (subsets),
# GCNN_SPIN_IMAGE (an Apptainer .sif: run inside it), GCNN_SPIN_PYTHON (interpreter when not in a container),
# BATCH_SIZE. A rerun (or a requeue) skips every part whose marker exists; a killed task leaves no partial file.
#
#SBATCH --job-name=gcnn_spin-infer
#SBATCH --array=0-999%64
#SBATCH --partition=a100
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=02:00:00
#SBATCH --requeue
#SBATCH --output=logs/%A_%a.out
set -euo pipefail

STORE=${STORE:-data/stores/survey.zarr}
RUNS=${RUNS:-runs}
PRED=${PRED:-predictions}
BATCH_SIZE=${BATCH_SIZE:-512}
TASK_ID=${SLURM_ARRAY_TASK_ID:?run me with sbatch --array (or set SLURM_ARRAY_TASK_ID)}

args=(-m gcnn_spin.cluster.infer --store "$STORE" --runs "$RUNS" --out "$PRED" --task-id "$TASK_ID"
      --batch-size "$BATCH_SIZE" --no-progress)
[[ -n "${MODELS:-}" ]] && args+=(--models ${MODELS})
[[ -n "${SEEDS:-}" ]] && args+=(--seeds ${SEEDS})

echo "gcnn_spin-infer: task ${TASK_ID} of job ${SLURM_ARRAY_JOB_ID:-?} on $(hostname) at $(date -u +%FT%TZ)"
if [[ -n "${GCNN_SPIN_IMAGE:-}" ]]; then
    nv=(); command -v nvidia-smi >/dev/null 2>&1 && nv=(--nv)
    exec apptainer exec "${nv[@]}" --bind "$PWD" --pwd "$PWD" "$GCNN_SPIN_IMAGE" python "${args[@]}"
fi
PYTHON=${GCNN_SPIN_PYTHON:-}
if [[ -z "$PYTHON" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
exec "$PYTHON" "${args[@]}"

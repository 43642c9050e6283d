#!/bin/bash
# Survey inference as one sbatch array, through the inference stage (python -m gcnn_spin.cluster.infer): array
# task i predicts part i (a contiguous block of survey-store shards) for every finished run and writes
# predictions/{run}/seed{k}/part-{i:05d}.parquet, then its marker. A rerun or a requeue skips every part whose
# marker matches the store and the run as they are now; a killed task leaves no partial file.
# `make submit-infer` runs the same tasks through submitit instead.
#
#   bash jobs/desi_infer.sh [SBATCH_OPTION...]   # on the login node: submits itself, one array task per part
#   sbatch jobs/desi_infer.sh                    # the same: this job only submits the planned array and ends
#   sbatch --array=$(make -s infer-array) jobs/desi_infer.sh    # an explicit range (tasks past the last part exit)
#   GCNN_SPIN_STORE=/scratch/gzd/survey.zarr GCNN_SPIN_MODELS="gc_resnet18 g_resnet18_c" bash jobs/desi_infer.sh
#   SBATCH_PARTITION=h100 SBATCH_ACCOUNT=astro bash jobs/desi_infer.sh
#
# Environment (prefixed, so that a site's STORE or CLUSTER cannot steer it; the unprefixed names are refused):
# GCNN_SPIN_STORE (survey store), GCNN_SPIN_RUNS (runs root), GCNN_SPIN_PRED (predictions root), GCNN_SPIN_MODELS,
# GCNN_SPIN_SEEDS (subsets), GCNN_SPIN_BATCH_SIZE, GCNN_SPIN_CLUSTER (profile whose max_array_size plans the parts;
# default a100), GCNN_SPIN_PARALLELISM (array tasks at once, default 64), GCNN_SPIN_IMAGE (an Apptainer .sif: run
# inside it, with the store's folder, RUNS, PRED and this folder bound), GCNN_SPIN_PYTHON (interpreter outside a
# container). sbatch's own SBATCH_PARTITION, SBATCH_ACCOUNT (and any command-line option) override the lines
# below, which are the a100 profile (gcnn_spin/configs/cluster/a100.toml; a test keeps them equal).
# Time limit: SLURM sends USR1 to this script 10 min before it; the trap requeues the task, which then redoes the
# part it was writing (a part is written to a temporary file and renamed, so it is never half there). An array task
# sets the trap first, so a USR1 at any later moment (before, while or after the stage runs) requeues it exactly
# once, stops the stage and exits 0 (scontrol's status if that fails). After the trap the task runs no command
# substitution: bash 5.2 runs a trap that came during one while it parses the next, fails on "unexpected EOF while
# looking for matching `)'" and exits 2 without requeueing.
# --open-mode=append: a requeued task adds to its log instead of truncating it.
#
#SBATCH --job-name=gcnn_spin-infer
#SBATCH --partition=a100
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=720
#SBATCH --signal=B:USR1@600
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=logs/%A_%a.out
set -euo pipefail

requeue() {
    trap '' USR1  # a second signal must not requeue again
    echo "gcnn_spin-infer: time limit near: requeueing task $SLURM_ARRAY_TASK_ID (job $SLURM_JOB_ID)"
    local status=0
    scontrol requeue "$SLURM_JOB_ID" || status=$?
    # $! rather than a saved pid: the signal may come between starting the stage and saving its pid.
    if [[ -n ${!:-} ]]; then kill -TERM "$!" 2>/dev/null || true; wait "$!" || true; fi
    exit "$status"
}
if [[ -n ${SLURM_ARRAY_TASK_ID:-} ]]; then trap requeue USR1; fi

for old in STORE RUNS PRED CLUSTER MODELS SEEDS BATCH_SIZE; do
    prefixed=GCNN_SPIN_$old
    if [[ -n ${!old+set} && -z ${!prefixed:-} ]]; then
        echo "desi_infer.sh: \$$old is not read (a site may set it); use GCNN_SPIN_STORE, GCNN_SPIN_RUNS," \
             "GCNN_SPIN_PRED, GCNN_SPIN_CLUSTER, GCNN_SPIN_MODELS, GCNN_SPIN_SEEDS, GCNN_SPIN_BATCH_SIZE" >&2
        exit 2
    fi
done
store=${GCNN_SPIN_STORE:-data/stores/survey.zarr}
runs=${GCNN_SPIN_RUNS:-runs}
pred=${GCNN_SPIN_PRED:-predictions}
cluster=${GCNN_SPIN_CLUSTER:-a100}
selection=()
if [[ -n ${GCNN_SPIN_MODELS:-} ]]; then
    read -ra models <<< "$GCNN_SPIN_MODELS"; selection+=(--models "${models[@]}")
fi
if [[ -n ${GCNN_SPIN_SEEDS:-} ]]; then
    read -ra seeds <<< "$GCNN_SPIN_SEEDS"; selection+=(--seeds "${seeds[@]}")
fi
stage=(-m gcnn_spin.cluster.infer --store "$store" --runs "$runs" --cluster "$cluster" "${selection[@]}")

if [[ -n ${GCNN_SPIN_IMAGE:-} ]]; then
    mkdir -p "$pred"  # a bind needs the folder to exist
    # Read through lastpipe, not $(...) (see the trap above); -L takes the store's parent before resolving links.
    shopt -s lastpipe
    { realpath -m -- "$PWD" "$runs" "$pred"; realpath -m -L -- "$store/.."; } | sort -u | paste -sd, - | read -r binds
    nv=(); command -v nvidia-smi >/dev/null 2>&1 && nv=(--nv)
    python=(apptainer exec "${nv[@]}" --bind "$binds" --pwd "$PWD" "$GCNN_SPIN_IMAGE" python)
elif [[ -n ${GCNN_SPIN_PYTHON:-} ]]; then
    python=("$GCNN_SPIN_PYTHON")
elif [[ -x .venv/bin/python ]]; then
    python=(.venv/bin/python)
else
    python=(python3)
fi

if [[ -z ${SLURM_ARRAY_TASK_ID:-} ]]; then
    # Not an array task: submit this script as an array of exactly one task per planned part, then end.
    range=$("${python[@]}" "${stage[@]}" --print-array)
    if [[ -z $range ]]; then
        echo "desi_infer.sh: no finished runs or no parts to predict; nothing submitted"
        exit 0
    fi
    options=("$@")
    script=$0
    if [[ -n ${SLURM_JOB_ID:-} ]]; then  # inside `sbatch jobs/desi_infer.sh`: keep this job's resources
        options=(--partition="$SLURM_JOB_PARTITION" --cpus-per-task="${SLURM_CPUS_PER_TASK:-1}"
                 --time="$(squeue -h -j "$SLURM_JOB_ID" -o %l)")
        [[ -n ${SLURM_MEM_PER_NODE:-} ]] && options+=(--mem="${SLURM_MEM_PER_NODE}M")
        if [[ ${SLURM_GPUS_ON_NODE:-0} != 0 ]]; then options+=(--gres="gpu:$SLURM_GPUS_ON_NODE")
        else options+=(--gres=none); fi
        [[ -n ${SLURM_JOB_ACCOUNT:-} ]] && options+=(--account="$SLURM_JOB_ACCOUNT")
    fi
    echo "desi_infer.sh: submitting one array task per part: --array=$range%${GCNN_SPIN_PARALLELISM:-64}"
    exec sbatch --array="$range%${GCNN_SPIN_PARALLELISM:-64}" "${options[@]}" "$script"
fi

TZ=UTC printf -v started '%(%Y-%m-%dT%H:%M:%SZ)T' -1  # builtins only: no $(hostname) or $(date)
echo "gcnn_spin-infer: task $SLURM_ARRAY_TASK_ID of job ${SLURM_ARRAY_JOB_ID:-?} on $HOSTNAME at $started" \
     "(restart ${SLURM_RESTART_COUNT:-0})"
# In the background, so that the trap runs as soon as the signal comes (bash defers traps while a child runs).
"${python[@]}" "${stage[@]}" run --out "$pred" --task-id "$SLURM_ARRAY_TASK_ID" \
    --batch-size "${GCNN_SPIN_BATCH_SIZE:-512}" --quiet &
wait "$!"

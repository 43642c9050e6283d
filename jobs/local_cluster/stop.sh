#!/usr/bin/env bash
# Stop the one-node SLURM cluster that start.sh started: exactly the processes whose pids it recorded
# (checked against name and start time, so a reused pid is never hit), nothing else.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR
source "$HERE/common.sh"

usage() {
    cat <<EOF
Usage: $(basename "$0") [--cancel-jobs] [--purge] [--quiet] [-h|--help]

Stop the daemons that start.sh started (pids in \$GCNN_SPIN_CLUSTER_DIR/pids, now $PID_DIR).

  --cancel-jobs  first cancel every job still queued or running on this cluster (scancel)
  --purge        also delete the state dir (accounting database, logs) and the generated configs,
                 so that the next start.sh starts from scratch
  --quiet        say nothing when there is nothing to stop
  -h, --help     show this help
EOF
}

CANCEL=0
PURGE=0
QUIET=0
while (($#)); do
    case $1 in
        --cancel-jobs) CANCEL=1 ;;
        --purge) PURGE=1 ;;
        --quiet) QUIET=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done
[[ $(id -u) == 0 ]] || die "run as root (the daemons run as root or as munge/mysql)"

if ((CANCEL)) && recorded_pid slurmctld >/dev/null; then
    jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
    if [[ -n ${jobs// /} ]]; then
        log "cancelling jobs: $jobs"
        # shellcheck disable=SC2086
        scancel $jobs || true
        for _ in $(seq 50); do  # up to 10 s for their steps to end while slurmd still runs
            [[ -z $(squeue -h -o %A 2>/dev/null) ]] && break
            sleep 0.2
        done
    fi
fi

stopped=()
for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
    name=${DAEMONS[i]}
    if pid=$(recorded_pid "$name"); then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 75); do  # up to 15 s, then SIGKILL
            alive "$pid" || break
            sleep 0.2
        done
        if alive "$pid"; then
            log "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        stopped+=("$name:$pid")
    fi
    rm -f "$PID_DIR/$name.pid"
done

if ((${#stopped[@]})); then
    log "stopped ${stopped[*]}"
elif ((!QUIET)); then
    log "nothing to stop (no live daemon recorded in $PID_DIR)"
fi

if ((PURGE)); then
    for conf in "$SLURM_CONF" "$SLURMDBD_CONF"; do
        if [[ -e $conf ]] && grep -q "$GENERATED_MARK" "$conf"; then rm -f "$conf"; fi
    done
    rm -rf "$STATE_DIR"
    log "purged $STATE_DIR and the generated configs"
fi

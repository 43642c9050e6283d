#!/usr/bin/env bash
# Start a one-node SLURM cluster with accounting (munged, MariaDB, slurmdbd, slurmctld, slurmd) on this
# machine, for CI and laptops. Installs Debian's packages when missing. Safe to run twice: a running
# cluster is only checked. stop.sh stops exactly the daemons started here (pids in the state dir).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR
source "$HERE/common.sh"

PACKAGES=(munge mariadb-server mariadb-client slurmdbd slurmctld slurmd slurm-client)
CLUSTER=${GCNN_SPIN_CLUSTER_NAME:-gcnnspin}
PARTITION=${GCNN_SPIN_CLUSTER_PARTITION:-ci}
DB_PORT=${GCNN_SPIN_CLUSTER_DB_PORT:-3316}
READY_TIMEOUT=${GCNN_SPIN_CLUSTER_TIMEOUT:-60}
MAX_ARRAY_SIZE=1001
LOG_DIR=$STATE_DIR/log
RUN_DIR=$STATE_DIR/run
DB_DIR=$STATE_DIR/mysql
DB_RUN_DIR=$RUN_DIR/mariadb
DB_SOCKET=$DB_RUN_DIR/mariadb.sock

usage() {
    cat <<EOF
Usage: $(basename "$0") [--no-install] [--force] [-h|--help]

Start a one-node SLURM cluster with accounting on this machine (as root) and wait until it takes jobs.

  --no-install   fail instead of installing missing packages (${PACKAGES[*]})
  --force        overwrite an /etc/slurm/slurm.conf that this script did not write
  -h, --help     show this help

Environment (defaults in brackets):
  GCNN_SPIN_CLUSTER_DIR        state: configs' data, logs, pids [$STATE_DIR]
  GCNN_SPIN_CLUSTER_PARTITION  name of the default partition (the 'ci' cluster profile uses it) [$PARTITION]
  GCNN_SPIN_CLUSTER_NAME       SLURM ClusterName [$CLUSTER]
  GCNN_SPIN_CLUSTER_DB_PORT    MariaDB port on 127.0.0.1 [$DB_PORT]
  GCNN_SPIN_CLUSTER_TIMEOUT    seconds to wait for a ready cluster [$READY_TIMEOUT]
Stop it with stop.sh; logs are in \$GCNN_SPIN_CLUSTER_DIR/log.
EOF
}

INSTALL=1
FORCE=0
while (($#)); do
    case $1 in
        --no-install) INSTALL=0 ;;
        --force) FORCE=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done

[[ $(id -u) == 0 ]] || die "run as root: it installs packages and starts system daemons"
T_START=$(date +%s.%N)
elapsed() { awk -v a="$T_START" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# ----------------------------------------------------------------------------- helpers

# Show the end of a log, then fail.
fail_with_log() {
    local what=$1
    shift
    log "ERROR: $what"
    local file
    for file in "$@"; do
        [[ -s $file ]] || continue
        log "---- last lines of $file"
        tail -n 25 "$file" >&2
    done
    exit 1
}

# wait_until "what" LOGFILE... -- CMD...: run CMD every 0.2 s until it succeeds; past DEADLINE (set once the
# packages are there), or when the process WATCH_PID exits, fail showing the logs.
wait_until() {
    local what=$1 logs=()
    shift
    while [[ $1 != -- ]]; do logs+=("$1"); shift; done
    shift
    until "$@" >/dev/null 2>&1; do
        if [[ -n ${WATCH_PID:-} ]] && ! alive "$WATCH_PID"; then
            fail_with_log "$what: the process exited" "${logs[@]}"
        fi
        ((SECONDS < DEADLINE)) || fail_with_log "$what: not ready within ${READY_TIMEOUT}s" "${logs[@]}"
        sleep 0.2
    done
}

wait_until_quiet() {  # the same without failing: returns 1 at the deadline
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < DEADLINE)) || return 1
        sleep 0.2
    done
}

# Pid from a daemon's pid file once it is there and alive.
pid_from_file() {
    local file=$1 pid
    [[ -s $file ]] || return 1
    pid=$(tr -dc '0-9' <"$file")
    [[ -n $pid ]] && alive "$pid" || return 1
    echo "$pid"
}

# Start daemon NAME whose pid file is PIDFILE: wait for it and record it.
adopt_pid_file() {
    local name=$1 pidfile=$2 logfile=$3
    wait_until "$name did not write $pidfile" "$logfile" -- pid_from_file "$pidfile"
    record_pid "$name" "$(pid_from_file "$pidfile")"
}

# ----------------------------------------------------------------------------- packages

install_packages() {
    local missing=() pkg guard=""
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    ((INSTALL)) || die "missing packages: ${missing[*]} (run without --no-install)"
    log "installing ${missing[*]}"
    # Keep the packages' own init scripts from starting services: this script starts its own daemons.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        guard=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' >"$guard"
        chmod 0755 "$guard"
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    if [[ -n $guard ]]; then
        rm -f "$guard"
        trap - EXIT
    fi
    # Under systemd (a laptop) the packages enable their services for the next boot; this cluster runs its
    # own daemons, so switch off the services of the packages installed here.
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
        local units=()
        for pkg in "${missing[@]}"; do
            case $pkg in
                munge) units+=(munge) ;;
                mariadb-server) units+=(mariadb) ;;
                slurmdbd | slurmctld | slurmd) units+=("$pkg") ;;
            esac
        done
        if ((${#units[@]})); then systemctl disable --now "${units[@]}" >/dev/null 2>&1 || true; fi
    fi
    log "packages installed after $(elapsed) s"
}

# ----------------------------------------------------------------------------- configs

check_foreign_config() {
    local conf
    for conf in "$SLURM_CONF" "$SLURMDBD_CONF"; do
        if [[ -e $conf ]] && ! grep -q "$GENERATED_MARK" "$conf" && ((!FORCE)); then
            die "$conf was not written by this script (a real cluster's?); refusing to replace it (--force does)"
        fi
    done
}

render() {  # render TEMPLATE TARGET MODE: substitute @KEY@ placeholders, replace TARGET atomically
    local template=$1 target=$2 mode=$3 tmp
    tmp=$(mktemp "$(dirname "$target")/.$(basename "$target").XXXXXX")
    sed -e "s|@GENERATED_BY@|$GENERATED_MARK|g" -e "s|@CLUSTER@|$CLUSTER|g" -e "s|@HOST@|$HOST|g" \
        -e "s|@STATE@|$STATE_DIR|g" -e "s|@PARTITION@|$PARTITION|g" -e "s|@CPUS@|$CPUS|g" \
        -e "s|@SOCKETS@|$SOCKETS|g" -e "s|@CORES@|$CORES|g" -e "s|@THREADS@|$THREADS|g" \
        -e "s|@MEM_MB@|$MEM_MB|g" -e "s|@DEF_MEM_PER_CPU@|$DEF_MEM_PER_CPU|g" \
        -e "s|@MAX_ARRAY_SIZE@|$MAX_ARRAY_SIZE|g" -e "s|@DB_PORT@|$DB_PORT|g" -e "s|@DB_PASS@|$DB_PASS|g" \
        "$template" >"$tmp"
    if grep -q '@[A-Z_]*@' "$tmp"; then
        rm -f "$tmp"
        die "unfilled placeholder in $template"
    fi
    chmod "$mode" "$tmp"
    mv -f "$tmp" "$target"
}

write_configs() {
    local hw
    HOST=$(hostname -s)
    hw=$(slurmd -C | head -n 1)
    field() { sed -n "s/.*[[:space:]]$1=\([0-9]*\).*/\1/p" <<<"$hw"; }
    CPUS=$(field CPUs)
    SOCKETS=$(field SocketsPerBoard)
    CORES=$(field CoresPerSocket)
    THREADS=$(field ThreadsPerCore)
    MEM_MB=$(($(field RealMemory) * 9 / 10))  # headroom: the daemons, and memory that drifts
    DEF_MEM_PER_CPU=$((MEM_MB / CPUS < 1024 ? MEM_MB / CPUS : 1024))
    if [[ ! -s $STATE_DIR/db.pass ]]; then
        (umask 077 && head -c 32 /dev/urandom | sha256sum | cut -c 1-32 >"$STATE_DIR/db.pass")
    fi
    DB_PASS=$(<"$STATE_DIR/db.pass")
    mkdir -p /etc/slurm
    render "$HERE/slurm.conf.in" "$SLURM_CONF" 0644
    render "$HERE/slurmdbd.conf.in" "$SLURMDBD_CONF" 0600  # slurmdbd refuses a readable one
}

# ----------------------------------------------------------------------------- daemons

munge_works() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    if munge_works; then
        log "munged already answers (not started here, so stop.sh leaves it alone)"
        return
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge /etc/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        (umask 077 && head -c 1024 /dev/urandom >/etc/munge/munge.key)
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged --force ||
        fail_with_log "munged did not start" /var/log/munge/munged.log
    adopt_pid_file munged /run/munge/munged.pid /var/log/munge/munged.log
    wait_until "munge" /var/log/munge/munged.log -- munge_works
}

# shellcheck disable=SC2120  # wait_until passes the arguments
db() { mariadb --no-defaults --socket="$DB_SOCKET" -u root "$@"; }

start_mariadb() {
    local logfile=$LOG_DIR/mariadb.log
    if [[ ! -d $DB_DIR/mysql ]]; then
        install -d -o mysql -g mysql -m 0750 "$DB_DIR"
        mariadb-install-db --no-defaults --user=mysql --datadir="$DB_DIR" --skip-test-db \
            --auth-root-authentication-method=socket >>"$logfile" 2>&1 ||
            fail_with_log "mariadb-install-db failed" "$logfile"
    fi
    # mariadbd runs as mysql: its socket, pid file and log live where mysql may write.
    install -d -o mysql -g mysql -m 0755 "$DB_RUN_DIR"
    touch "$logfile"
    chown -R mysql:mysql "$DB_DIR" "$logfile"
    rm -f "$DB_RUN_DIR/mariadbd.pid"
    setsid /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$DB_DIR" --bind-address=127.0.0.1 \
        --port="$DB_PORT" --socket="$DB_SOCKET" --pid-file="$DB_RUN_DIR/mariadbd.pid" --log-error="$logfile" \
        --skip-name-resolve --innodb-lock-wait-timeout=900 --max-connections=64 \
        </dev/null >>"$logfile" 2>&1 &
    WATCH_PID=$! adopt_pid_file mariadbd "$DB_RUN_DIR/mariadbd.pid" "$logfile"
    WATCH_PID=$! wait_until "MariaDB" "$logfile" -- db -e "SELECT 1"
    db <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL
}

start_slurmdbd() {
    local logfile=$LOG_DIR/slurmdbd.log
    rm -f "$RUN_DIR/slurmdbd.pid"
    slurmdbd || fail_with_log "slurmdbd did not start" "$logfile"
    adopt_pid_file slurmdbd "$RUN_DIR/slurmdbd.pid" "$logfile"
    wait_until "slurmdbd" "$logfile" "$LOG_DIR/mariadb.log" -- sacctmgr -n -P show cluster format=Cluster
    if ! sacctmgr -n -P show cluster format=Cluster | grep -qx "$CLUSTER"; then
        sacctmgr -i add cluster "$CLUSTER" >/dev/null || fail_with_log "sacctmgr add cluster failed" "$logfile"
    fi
}

start_slurmctld() {
    local logfile=$LOG_DIR/slurmctld.log
    rm -f "$RUN_DIR/slurmctld.pid"
    slurmctld || fail_with_log "slurmctld did not start" "$logfile"
    adopt_pid_file slurmctld "$RUN_DIR/slurmctld.pid" "$logfile"
    wait_until "slurmctld" "$logfile" -- bash -c 'scontrol ping | grep -q "is UP"'
}

start_slurmd() {
    local logfile=$LOG_DIR/slurmd.log
    rm -f "$RUN_DIR/slurmd.pid"
    slurmd || fail_with_log "slurmd did not start" "$logfile"
    adopt_pid_file slurmd "$RUN_DIR/slurmd.pid" "$logfile"
}

node_ready() { sinfo -h -n "$(hostname -s)" -o %T | grep -Eqx 'idle|mixed|allocated|completing'; }

wait_ready() {
    wait_until "slurmctld" "$LOG_DIR/slurmctld.log" -- bash -c 'scontrol ping | grep -q "is UP"'
    if ! wait_until_quiet node_ready; then
        log "node state: $(sinfo -h -N -o '%N %T %E' 2>&1)"
        fail_with_log "node $(hostname -s) not idle within ${READY_TIMEOUT}s" \
            "$LOG_DIR/slurmd.log" "$LOG_DIR/slurmctld.log"
    fi
    wait_until "accounting (sacct)" "$LOG_DIR/slurmdbd.log" -- sacct -n -X -S now-1minutes -o JobID
}

all_running() {
    local name
    for name in "${DAEMONS[@]}"; do
        if [[ $name == munged ]]; then
            munge_works || return 1
        else
            recorded_pid "$name" >/dev/null || return 1
        fi
    done
}

# ----------------------------------------------------------------------------- main

install_packages
check_foreign_config
DEADLINE=$((SECONDS + READY_TIMEOUT))
if all_running; then
    wait_ready
    log "already running: cluster $CLUSTER, partition $PARTITION (checked in $(elapsed) s)"
    exit 0
fi
# Anything left from an earlier, half-finished start is ours: stop it before starting afresh.
"$HERE/stop.sh" --quiet
mkdir -p "$STATE_DIR" "$PID_DIR" "$LOG_DIR" "$RUN_DIR" "$STATE_DIR/slurmctld" "$STATE_DIR/slurmd"
chmod 0755 "$STATE_DIR"
write_configs
start_munge
start_mariadb
start_slurmdbd
start_slurmctld
start_slurmd
wait_ready
log "ready: cluster $CLUSTER on $(hostname -s), partition $PARTITION, $CPUS CPUs, ${MEM_MB} MB" \
    "(started in $(elapsed) s; logs in $LOG_DIR)"

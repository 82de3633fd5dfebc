#!/usr/bin/env bash
# Build the demo benchmark through SLURM on this machine and check it equals a local build.
#
#     sudo bench/slurm_demo.sh          # root: installs Debian packages and starts daemons; not run by CI
#
# 1. Installs Debian's slurm-wlm, slurmdbd, munge and mariadb-server (skipped when installed).
# 2. Writes a single-node cluster's configuration in /etc/slurm (the node is this machine, with
#    its CPUs and 90% of its memory; partitions `cpu` (default) and `gpu`, whose one GPU is a stand-in
#    GRES on /dev/null: Slurm schedules and accounts a GPU request as on a GPU node, the job sees no CUDA)
#    and starts munged, MariaDB, slurmdbd, slurmctld and slurmd by hand (no systemd needed); their state,
#    logs and database live in $SLURM_DEMO_DIR. Job accounting is real: sacct reads slurmdbd, which the
#    executor plugin polls job states with. /etc/slurm, not SLURM_CONF: the plugin's job step drops
#    SLURM_* variables, SLURM_CONF included, before its `srun`, which then finds no configuration.
# 3. Copies the workflow twice (spinebench.workflow.copy_workflow) and builds the demo
#    - in copy `slurm` through `snakemake --profile profiles/cluster-cpu` (the CPU-only fallback: every job
#      on partition cpu), then reruns the embedding jobs through `--profile profiles/cluster`, whose
#      embed_shard jobs ask for a GPU, to show the GPU request formed, accepted and accounted;
#    - in copy `local` with the local executor.
#    Each copy has its own fresh content-addressed store (SPINEBENCH_CACHE), so that both builds compute
#    every image and embedding themselves: the comparison checks the computation, not a shared cache.
# 4. Compares the two results/ trees (bench/compare_builds.py), prints the sacct lines of the SLURM jobs
#    and stops the daemons it started (on any exit).
#
# The configuration files stay in /etc/slurm (a rerun replaces them; it refuses to replace files that do
# not start with its marker line). 13 to 15 minutes on 2 cores, 8 to 9 of them the SLURM build.
#
# Environment: SLURM_DEMO_DIR (default /tmp/spinebench-slurm-demo; wiped at the start), SLURM_DEMO_KEEP=1
# leaves the daemons running, SLURM_DEMO_STATUS_S (default 5) is the executor's first status check delay
# (demo only: a real cluster keeps the plugin's default, 40 s).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$REPO/.venv}
DEMO=${SLURM_DEMO_DIR:-/tmp/spinebench-slurm-demo}
STATUS_DELAY_S=${SLURM_DEMO_STATUS_S:-5}
CLUSTER=spinebench
NODE=$(hostname -s)
DB_PORT=13306             # the demo's private MariaDB listens on loopback only, beside any other server
DB_PASSWORD=spinebench-demo
PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
ETC=/etc/slurm               # where every SLURM command finds the configuration
# First line of each configuration file this script writes: it overwrites no file without it.
MARKER="# written by spinebench bench/slurm_demo.sh"

# pid files of the daemons this script started, stopped in reverse order on exit
STARTED=()

log() { printf '\n==> %s\n' "$*"; }
fail() { printf 'slurm_demo: %s\n' "$*" >&2; exit 1; }

require_root() {
    [[ $(id -u) -eq 0 ]] || fail "run as root: it installs Debian packages and starts the SLURM daemons"
    [[ -x $VENV/bin/snakemake ]] || fail "no $VENV/bin/snakemake: install the project first (README)"
    "$VENV/bin/python" -c "import snakemake_executor_plugin_slurm" 2>/dev/null || fail \
        "snakemake-executor-plugin-slurm is missing: $VENV/bin/pip install snakemake-executor-plugin-slurm==2.8.0"
}

install_packages() {
    local missing=()
    for package in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$package")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
}

# ------------------------------------------------------------------------------------ configuration

node_hardware() {
    # `slurmd -C` prints this machine's NodeName line; keep its CPU layout, give SLURM 90% of the memory
    # (the rest for the daemons, the snakemake process and whatever else runs here).
    local line memory
    line=$(slurmd -C | head -1)
    memory=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$line")
    sed -e "s/^NodeName=[^ ]*/NodeName=$NODE NodeAddr=127.0.0.1/" \
        -e "s/RealMemory=[0-9]*/RealMemory=$((memory * 9 / 10))/" <<<"$line"
}

daemon_pidfiles() { echo "$DEMO"/run/*.pid "$DEMO"/db/mysqld.pid; }

write_configs() {
    log "writing the cluster configuration in $ETC"
    for name in slurm.conf gres.conf slurmdbd.conf; do
        [[ ! -e $ETC/$name ]] || [[ $(head -1 "$ETC/$name") == "$MARKER" ]] ||
            fail "$ETC/$name exists and was not written by this script: not overwriting it"
    done
    # Only a folder this script made is wiped (the marker file), never a mistyped SLURM_DEMO_DIR, and
    # never under daemons a previous run left running (SLURM_DEMO_KEEP=1).
    if [[ -e $DEMO ]]; then
        [[ -e $DEMO/.spinebench-slurm-demo ]] || fail "$DEMO exists and was not made by this script"
        for pidfile in $(daemon_pidfiles); do
            [[ -s $pidfile ]] && kill -0 "$(<"$pidfile")" 2>/dev/null &&
                fail "a daemon of a previous run still runs (pid file $pidfile): stop it first"
        done
        rm -rf "$DEMO"
    fi
    mkdir -p "$DEMO"/{state,spool,log,run,db,work,cache} "$ETC"
    chown slurm:slurm "$DEMO/state" "$DEMO/log" "$DEMO/run"
    chown mysql:mysql "$DEMO/db"
    touch "$DEMO/.spinebench-slurm-demo"
    cat >"$ETC/slurm.conf" <<EOF
$MARKER
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=$DEMO/state
SlurmdSpoolDir=$DEMO/spool
SlurmctldPidFile=$DEMO/run/slurmctld.pid
SlurmdPidFile=$DEMO/run/slurmd.pid
SlurmctldLogFile=$DEMO/log/slurmctld.log
SlurmdLogFile=$DEMO/log/slurmd.log
# No cgroups needed: processes are tracked through /proc, memory is allocated (not enforced) per job.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# Accounting through slurmdbd (MariaDB): what sacct and the executor's status checks read.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=10
JobCompType=jobcomp/none
GresTypes=gpu
$(node_hardware) Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE MaxTime=INFINITE State=UP
EOF
    # A stand-in GPU: Slurm drops a GPU GRES without a device File, so /dev/null plays the device. GPU
    # requests are scheduled and accounted as on a GPU node (CUDA_VISIBLE_DEVICES=0 is set); there is no
    # CUDA device behind it, so `embed.device: auto` still picks the CPU.
    printf '%s\n' "$MARKER" "NodeName=$NODE Name=gpu File=/dev/null Count=1" >"$ETC/gres.conf"
    cat >"$ETC/slurmdbd.conf" <<EOF
$MARKER
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
LogFile=$DEMO/log/slurmdbd.log
PidFile=$DEMO/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASSWORD
StorageLoc=slurm_acct_db
EOF
    # slurmdbd refuses a configuration file other users can read (it holds the database password).
    chown slurm:slurm "$ETC/slurmdbd.conf"
    chmod 600 "$ETC/slurmdbd.conf"
}

# ------------------------------------------------------------------------------------------ daemons

wait_for() {
    # wait_for SECONDS WHAT COMMAND...: poll COMMAND every second until it succeeds
    local seconds=$1 what=$2
    shift 2
    for ((i = 0; i < seconds; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 1
    done
    fail "$what did not come up within ${seconds}s (logs in $DEMO/log)"
}

munge_works() { munge -n | unmunge; }

start_munge() {
    if munge_works >/dev/null 2>&1; then
        log "munged is already running: using it"
        return
    fi
    log "starting munged"
    [[ -s /etc/munge/munge.key ]] || runuser -u munge -- mungekey --create
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
    runuser -u munge -- munged --pid-file=/run/munge/munged.pid
    STARTED+=(/run/munge/munged.pid)
    wait_for 20 munged munge_works
}

start_mariadb() {
    log "starting MariaDB (in $DEMO/db, port $DB_PORT on loopback)"
    runuser -u mysql -- mariadb-install-db --no-defaults --datadir="$DEMO/db/data" --skip-test-db \
        --auth-root-authentication-method=socket >"$DEMO/db/install.log" 2>&1
    mariadbd --no-defaults --user=mysql --datadir="$DEMO/db/data" --socket="$DEMO/db/mysqld.sock" \
        --pid-file="$DEMO/db/mysqld.pid" --port=$DB_PORT --bind-address=127.0.0.1 \
        --log-error="$DEMO/db/mariadb.log" --innodb-buffer-pool-size=64M 2>>"$DEMO/db/mariadb.log" &
    STARTED+=("$DEMO/db/mysqld.pid")
    wait_for 60 MariaDB mariadb-admin --socket="$DEMO/db/mysqld.sock" ping
    mariadb --socket="$DEMO/db/mysqld.sock" -u root <<EOF
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
EOF
}

start_slurm() {
    log "starting slurmdbd, slurmctld and slurmd"
    slurmdbd
    STARTED+=("$DEMO/run/slurmdbd.pid")
    wait_for 60 slurmdbd sacctmgr -n list cluster
    # The cluster must be known to the database before slurmctld registers with it (idempotent).
    sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null || true
    slurmctld
    STARTED+=("$DEMO/run/slurmctld.pid")
    wait_for 60 slurmctld scontrol ping
    slurmd
    STARTED+=("$DEMO/run/slurmd.pid")
    wait_for 60 "node $NODE" node_is_idle
    sinfo --format="%P %a %D %c %m %G %T"
}

node_is_idle() { [[ $(sinfo -h -n "$NODE" -o %T | head -1) == idle ]]; }

stop_daemons() {
    local status=$?
    if [[ ${SLURM_DEMO_KEEP:-0} == 1 ]]; then
        log "leaving the daemons running (SLURM_DEMO_KEEP=1); their pid files: ${STARTED[*]}"
        return $status
    fi
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
        local pidfile=${STARTED[i]} pid
        [[ -s $pidfile ]] || continue
        pid=$(<"$pidfile")
        kill "$pid" 2>/dev/null || continue
        for ((t = 0; t < 30; t++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 1
        done
        echo "stopped $(basename "$pidfile" .pid) (pid $pid)"
    done
    return $status
}

# ------------------------------------------------------------------------------------------- builds

copy_workflow() {
    # copy_workflow FOLDER: the workflow files only (no results, archives or caches)
    mkdir -p "$1"
    "$VENV/bin/python" -c 'import sys; from pathlib import Path
from spinebench.workflow import copy_workflow
copy_workflow(Path(sys.argv[1]))' "$1"
}

in_copy() {
    # in_copy NAME COMMAND...: run COMMAND in copy NAME with its own store and its own package first on
    # PYTHONPATH (sbatch --export=ALL hands both to the SLURM jobs).
    local name=$1
    shift
    (cd "$DEMO/work/$name" &&
        SPINEBENCH_CACHE=$DEMO/cache/$name PYTHONPATH=$DEMO/work/$name "$@")
}

timed() {
    # timed NAME COMMAND...: run COMMAND, log its output to $DEMO/NAME.log and record its wall time
    local name=$1 start
    shift
    start=$(date +%s)
    if ! "$@" >"$DEMO/$name.log" 2>&1; then
        tail -40 "$DEMO/$name.log"
        fail "$name failed (log: $DEMO/$name.log)"
    fi
    WALL[$name]=$(($(date +%s) - start))
    echo "$name: ${WALL[$name]} s (log: $DEMO/$name.log)"
}

declare -A WALL

build_on_slurm() {
    log "building the demo through SLURM (profiles/cluster-cpu) in $DEMO/work/slurm"
    copy_workflow "$DEMO/work/slurm"
    SUBMITTED_AFTER=$(date +%Y-%m-%dT%H:%M:%S)
    timed slurm-build in_copy slurm "$VENV/bin/snakemake" --profile profiles/cluster-cpu \
        --slurm-init-seconds-before-status-checks "$STATUS_DELAY_S" --slurm-keep-successful-logs
}

embeddings_digest() {
    (cd "$DEMO/work/slurm" && find results/embeddings -type f | sort | xargs sha256sum)
}

embed_with_gpu_request() {
    log "rerunning the embedding jobs through profiles/cluster (one GPU each, partition gpu)"
    embeddings_digest >"$DEMO/embeddings.before"
    timed gpu-embed in_copy slurm "$VENV/bin/snakemake" --profile profiles/cluster \
        --forcerun embed_shard --until embed_shard --verbose \
        --slurm-init-seconds-before-status-checks "$STATUS_DELAY_S" --slurm-keep-successful-logs
    embeddings_digest >"$DEMO/embeddings.after"
    echo "the sbatch call the executor formed for a GPU job (its --wrap, the job's snakemake command, cut):"
    grep -m1 -o 'sbatch call: sbatch .*--gpus=1' "$DEMO/gpu-embed.log"
    diff "$DEMO/embeddings.before" "$DEMO/embeddings.after" >/dev/null ||
        fail "embeddings rebuilt with the GPU request differ from the first build's"
    echo "embedding shards rebuilt with the GPU request: byte-identical to the first build's"
}

build_locally() {
    log "building the demo locally in $DEMO/work/local"
    copy_workflow "$DEMO/work/local"
    timed local-build in_copy local "$VENV/bin/snakemake" --cores 2
}

compare_builds() {
    log "comparing results/ of the SLURM build with the local build"
    "$VENV/bin/python" "$REPO/bench/compare_builds.py" "$DEMO/work/slurm" "$DEMO/work/local"
}

report_jobs() {
    log "sacct: the SLURM jobs of this demo"
    local format=JobID,Partition,State,ExitCode,Elapsed,AllocCPUS,ReqMem,AllocTRES%48,Comment%58
    sacct -X --starttime "$SUBMITTED_AFTER" --format="$format" | tee "$DEMO/sacct.txt"
    echo "jobs: $(sacct -X -n --starttime "$SUBMITTED_AFTER" -o JobID | wc -l)," \
        "by state: $(sacct -X -n --starttime "$SUBMITTED_AFTER" -o State | sort | uniq -c | xargs)"
    echo "wall time: SLURM build ${WALL[slurm-build]} s, GPU-request embed rerun ${WALL[gpu-embed]} s," \
        "local build ${WALL[local-build]} s"
}

main() {
    require_root
    install_packages
    trap stop_daemons EXIT
    write_configs
    start_munge
    start_mariadb
    start_slurm
    build_on_slurm
    embed_with_gpu_request
    build_locally
    compare_builds
    report_jobs
}

main "$@"

#!/usr/bin/env bash
# Start a real one-node SLURM cluster on this machine (localhost) for tests/test_slurm.py.
#
#   bash tests/slurm/start_cluster.sh [STATE_DIR]     # default: $PERMERGE_SLURM_DIR or /tmp/permerge-slurm
#   bash tests/slurm/stop_cluster.sh [STATE_DIR]
#
# Everything lives in STATE_DIR: slurm.conf/gres.conf, a munge key and socket, spool/state dirs, logs and the
# daemons' PID files. /etc/slurm/slurm.conf and gres.conf are symlinks to STATE_DIR's files while the cluster
# runs: the job step of the snakemake SLURM plugin drops SLURM_CONF from the environment of its inner `srun`,
# so the config must be at the default place. stop_cluster.sh removes the links again: with a slurm.conf
# present but no controller, `scontrol show config` (which the plugin runs on every snakemake call) waits
# ~9 s; without one it fails at once.
#
# Installs the Debian packages slurm-wlm and munge when missing (needs root and apt). The node gets the
# machine's real CPU count and memory (from `slurmd -C`) and one fake GPU (gres gpu:1 backed by /dev/null),
# so `--gpus=1` requests are scheduled (one at a time) but no device is given to the job.
# Job accounting is off (no slurmdbd), so `sacct` cannot report job states: clients must poll with `squeue`,
# which still lists finished jobs for MinJobAge seconds (600 here).
set -euo pipefail

STATE=${1:-${PERMERGE_SLURM_DIR:-/tmp/permerge-slurm}}
CTLD_PORT=${PERMERGE_SLURMCTLD_PORT:-6817}
SLURMD_PORT=${PERMERGE_SLURMD_PORT:-6818}      # the CPU node's slurmd; the GPU node's listens on the next port
GPU_SLURMD_PORT=$((SLURMD_PORT + 1))
CPU_PARTITION=${PERMERGE_SLURM_CPU_PARTITION:-cpu}
GPU_PARTITION=${PERMERGE_SLURM_GPU_PARTITION:-gpu}
GPUS=${PERMERGE_SLURM_GPUS:-2}

log() { echo "start_cluster: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (the daemons run as root and apt may be needed)"

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
    || ! command -v sbatch >/dev/null; then
    command -v apt-get >/dev/null || die "slurm-wlm/munge missing and apt-get unavailable"
    log "installing slurm-wlm and munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null && apt-get install -y -qq slurm-wlm munge >/dev/null; } \
        || die "apt-get install slurm-wlm munge failed"
fi

# A cluster from an earlier run (ours) that is still up: stop it first.
if [ -f "$STATE/pids" ]; then
    log "stopping the cluster left in $STATE"
    bash "$(dirname "$0")/stop_cluster.sh" "$STATE" || true
fi

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$CTLD_PORT" "$SLURMD_PORT" "$GPU_SLURMD_PORT"; do
    port_busy "$port" && die "port $port is in use (another slurm?); set PERMERGE_SLURMCTLD_PORT/PERMERGE_SLURMD_PORT"
done

rm -rf "$STATE"
mkdir -p "$STATE"/{spool/slurmd-cpu0,spool/slurmd-gpu0,state,log,munge}
chmod 700 "$STATE" "$STATE/munge"

# The node's hardware as slurmd sees it; a node claiming more than it has would be drained.
read -r CPUS MEM < <(slurmd -C | awk '/^NodeName/ {
    for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    print v["CPUs"], v["RealMemory"] }')
[ -n "${CPUS:-}" ] && [ -n "${MEM:-}" ] || die "could not read CPUs/RealMemory from slurmd -C"
# The two nodes share the machine: each gets all its CPUs and memory (nothing enforces the limits here).

# Own munge key and socket: independent of a system munged (and of /etc/munge permissions).
dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$STATE/munge/munge.key"
MUNGE_SOCKET="$STATE/munge/munge.socket"

ETC=/etc/slurm
for f in slurm.conf gres.conf; do
    if [ -e "$ETC/$f" ] || [ -L "$ETC/$f" ]; then
        case "$(readlink "$ETC/$f" || true)" in
            */permerge-slurm*/"$f" | "$STATE/$f") rm -f "$ETC/$f" ;;  # a link left by an earlier test cluster
            *) die "$ETC/$f exists and is not ours: not touching a real cluster's config" ;;
        esac
    fi
done

cat >"$STATE/slurm.conf" <<EOF
# One-node test cluster written by tests/slurm/start_cluster.sh
ClusterName=permerge-test
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool/slurmd-%n
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd-%n.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
# squeue (the status command without accounting) sees finished jobs only for MinJobAge seconds.
MinJobAge=${PERMERGE_SLURM_MIN_JOB_AGE:-3600}
ReturnToService=2
MpiDefault=none
GresTypes=gpu
# Two nodes on this host, each its own slurmd (slurmd -N NAME) on its own port: a CPU-only node and a node
# with $GPUS count-only GPUs; one partition each, so a GPU request to the CPU partition is rejected.
NodeName=cpu0 NodeHostname=localhost NodeAddr=127.0.0.1 Port=$SLURMD_PORT CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
NodeName=gpu0 NodeHostname=localhost NodeAddr=127.0.0.1 Port=$GPU_SLURMD_PORT CPUs=$CPUS RealMemory=$MEM Gres=gpu:$GPUS State=UNKNOWN
PartitionName=$CPU_PARTITION Nodes=cpu0 Default=YES MaxTime=INFINITE State=UP
PartitionName=$GPU_PARTITION Nodes=gpu0 MaxTime=INFINITE State=UP
EOF
# Fake GPUs. A count-only GPU (Gres=gpu:N with no File=, Count= or Flags=CountOnly in gres.conf) does not
# work in SLURM 22.05: slurmd's gpu plugin drops it ("Removing file-less GPU") and reports 0, so the
# controller marks the node INVAL. So each GPU is a character device node: copies of /dev/null (c 1 3),
# which nothing opens; the job gets CUDA_VISIBLE_DEVICES but no device.
mkdir -p "$STATE/dev"
# (Without CAP_MKNOD: plain files, which slurmd 22.05 still counts after logging "not a valid character or
# block device".)
for i in $(seq 0 $((GPUS - 1))); do mknod "$STATE/dev/gpu$i" c 1 3 2>/dev/null || : >"$STATE/dev/gpu$i"; done
printf 'AutoDetect=off\nNodeName=gpu0 Name=gpu File=%s\n' "$STATE/dev/gpu[0-$((GPUS - 1))]" >"$STATE/gres.conf"
mkdir -p "$ETC"
ln -s "$STATE/slurm.conf" "$ETC/slurm.conf"
ln -s "$STATE/gres.conf" "$ETC/gres.conf"
export SLURM_CONF="$ETC/slurm.conf"

: >"$STATE/pids"
munged --force --socket="$MUNGE_SOCKET" --key-file="$STATE/munge/munge.key" \
    --pid-file="$STATE/munged.pid" --log-file="$STATE/log/munged.log" \
    --seed-file="$STATE/munge/munged.seed" || die "munged failed (see $STATE/log/munged.log)"
echo "munged $(cat "$STATE/munged.pid")" >>"$STATE/pids"

wait_for_file() { for _ in $(seq 1 100); do [ -s "$1" ] && return 0; sleep 0.1; done; return 1; }

slurmctld -f "$SLURM_CONF" || die "slurmctld failed: $(tail -5 "$STATE/log/slurmctld.log" 2>/dev/null)"
wait_for_file "$STATE/slurmctld.pid" || die "slurmctld wrote no PID file: $(tail -5 "$STATE/log/slurmctld.log")"
echo "slurmctld $(cat "$STATE/slurmctld.pid")" >>"$STATE/pids"

for node in cpu0 gpu0; do
    slurmd -f "$SLURM_CONF" -N "$node" || die "slurmd $node failed: $(tail -5 "$STATE/log/slurmd-$node.log" 2>/dev/null)"
    wait_for_file "$STATE/slurmd-$node.pid" || die "slurmd $node wrote no PID file: $(tail -5 "$STATE/log/slurmd-$node.log")"
    echo "slurmd $(cat "$STATE/slurmd-$node.pid")" >>"$STATE/pids"
done

# Ready when both nodes are idle.
for _ in $(seq 1 150); do
    states=$(sinfo -h -N -n cpu0,gpu0 -o %t 2>/dev/null | sort -u | tr '\n' ' ' || true)
    [ "$states" = "idle " ] && break
    sleep 0.2
done
[ "${states:-}" = "idle " ] || die "nodes not idle (states '${states:-none}'): $(tail -5 "$STATE/log/slurmctld.log") $(tail -3 "$STATE"/log/slurmd-*.log)"
log "cluster up: nodes cpu0 (partition $CPU_PARTITION, default) and gpu0 (partition $GPU_PARTITION, gres gpu:$GPUS), $CPUS CPUs and $MEM MB each ($SLURM_CONF -> $STATE)"

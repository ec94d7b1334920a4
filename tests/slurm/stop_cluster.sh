#!/usr/bin/env bash
# Stop the cluster of tests/slurm/start_cluster.sh: its daemons BY PID (from STATE_DIR/pids), then move the
# config away: remove the /etc/slurm/{slurm,gres}.conf links to STATE_DIR and rename STATE_DIR to
# STATE_DIR.stopped (replacing an older one), so no slurm client (scontrol, run by the snakemake SLURM plugin
# on every call) waits for a controller that is gone.
#
#   bash tests/slurm/stop_cluster.sh [STATE_DIR]     # default: $PERMERGE_SLURM_DIR or /tmp/permerge-slurm
set -uo pipefail

STATE=${1:-${PERMERGE_SLURM_DIR:-/tmp/permerge-slurm}}
log() { echo "stop_cluster: $*" >&2; }

remove_links() {
    for f in slurm.conf gres.conf; do
        [ -L "/etc/slurm/$f" ] && [ "$(readlink "/etc/slurm/$f")" = "$STATE/$f" ] && rm -f "/etc/slurm/$f"
    done
    return 0
}
[ -d "$STATE" ] || { remove_links; log "nothing to stop in $STATE"; exit 0; }

# Cancel jobs still queued or running (their processes belong to slurmd's job steps).
if [ -f "$STATE/slurm.conf" ] && [ -f "$STATE/pids" ]; then
    SLURM_CONF="$STATE/slurm.conf" timeout 10 scancel --quiet --user="$(id -un)" 2>/dev/null || true
fi

# Is PID still the daemon we started (not a reused PID)?
ours() { [ -r "/proc/$1/comm" ] && [ "$(cat "/proc/$1/comm")" = "$2" ]; }

if [ -f "$STATE/pids" ]; then
    # Reverse start order: slurmd, slurmctld, munged.
    tac "$STATE/pids" | while read -r name pid; do
        [ -n "${pid:-}" ] || continue
        if ours "$pid" "$name"; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do ours "$pid" "$name" || break; sleep 0.1; done
            if ours "$pid" "$name"; then
                log "$name ($pid) ignored SIGTERM; sending SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
            fi
            log "stopped $name ($pid)"
        fi
    done
    rm -f "$STATE/pids"
fi

remove_links
rm -rf "$STATE.stopped"
mv "$STATE" "$STATE.stopped"
log "config moved to $STATE.stopped"

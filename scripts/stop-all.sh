#!/usr/bin/env bash
# Stop the four roles (SIGTERM: they stop accepting, flush their queues and exit).
set -euo pipefail
. "$(dirname "$0")/ops-common.sh"
if use_systemd; then
    systemctl stop "${ROLES[@]/#/airisd@}"
    exit 0
fi
for role in "${ROLES[@]}"; do
    pidfile=$RUN_DIR/airisd-$role.pid
    [ -f "$pidfile" ] || { echo "$role: not started by start-all.sh"; continue; }
    pid=$(cat "$pidfile")
    if kill -TERM "$pid" 2>/dev/null; then
        for _ in $(seq 1 "${AIRISD_STOP_TIMEOUT:-30}"); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        if kill -0 "$pid" 2>/dev/null; then echo "$role: still running after SIGTERM (pid $pid)"; exit 1; fi
        echo "$role: stopped"
    else
        echo "$role: was not running"
    fi
    rm -f "$pidfile"
done

#!/usr/bin/env bash
# Start the four roles: with systemd (`systemctl start airisd@<role>`) when the package is installed
# and systemd runs, otherwise as background processes (pid files in $AIRISD_RUN_DIR, logs in
# $AIRISD_LOG_DIR). Then wait for every role's /health.
set -euo pipefail
. "$(dirname "$0")/ops-common.sh"
if use_systemd; then
    systemctl start "${ROLES[@]/#/airisd@}"
else
    mkdir -p "$LOG_DIR" "$RUN_DIR"
    for role in "${ROLES[@]}"; do
        pidfile=$RUN_DIR/airisd-$role.pid
        if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            echo "$role: already running (pid $(cat "$pidfile"))"
            continue
        fi
        nohup "$AIRISD" run --config "$(role_config "$role")" --role "$role" --data-dir "$DATA_DIR" \
            >>"$LOG_DIR/airisd-$role.log" 2>&1 </dev/null &
        echo $! >"$pidfile"
        echo "$role: started (pid $!, log $LOG_DIR/airisd-$role.log)"
    done
fi
for _ in $(seq 1 "${AIRISD_START_TIMEOUT:-30}"); do
    "$(dirname "$0")/health-check.sh" >/dev/null && { "$(dirname "$0")/health-check.sh"; exit 0; }
    sleep 1
done
"$(dirname "$0")/health-check.sh"

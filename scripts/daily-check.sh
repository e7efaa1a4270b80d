#!/usr/bin/env bash
# The seed's daily check, for airisd on a host: role status, disk, memory, errors in the last 24
# hours, and the embedded stores. Prints a report; exits 1 when a role is down.
#   AIRISD_TOKEN  an admin token or API key, to include /health/detailed (queues, stores)
set -uo pipefail
. "$(dirname "$0")/ops-common.sh"
echo "=== airisd daily health check ==="
echo "Date: $(date)"

echo; echo "=== Service status ==="
"$(dirname "$0")/health-check.sh"
status=$?
if use_systemd; then systemctl --no-pager --plain list-units 'airisd*' || true; fi

echo; echo "=== Disk usage ==="
df -h "$DATA_DIR" "$LOG_DIR" 2>/dev/null || df -h
du -sh "$DATA_DIR"/*.db 2>/dev/null || echo "(no stores in $DATA_DIR)"

echo; echo "=== Memory usage ==="
free -h
ps -o pid,rss,etime,args -C airisd 2>/dev/null | sed 's/^/  /' || true

echo; echo "=== Errors in the last 24 hours ==="
if use_systemd; then
    journalctl --no-pager -q --since "24 hours ago" -u 'airisd*' | grep -c 'level=error' || true
else
    find "$LOG_DIR" -name 'airisd-*.log' -mtime -1 -exec grep -h 'level=error' {} + 2>/dev/null | wc -l
fi

echo; echo "=== Stores ==="
for role in "${ROLES[@]}"; do
    url=$(role_url "$role")
    if [ -n "${AIRISD_TOKEN:-}" ]; then
        detail=$(curl -fsS --max-time 10 -H "Authorization: Bearer $AIRISD_TOKEN" "$url/health/detailed" 2>&1) \
            || detail="unreachable: $detail"
        echo "$role: $detail"
    fi
done
[ -n "${AIRISD_TOKEN:-}" ] || echo "(set AIRISD_TOKEN to an admin API key to include /health/detailed)"

echo; echo "=== Check complete ==="
exit "$status"

#!/usr/bin/env bash
# Is every role answering /health? Exit 0 when all four are, 1 when any is down.
#   AIRISD_<ROLE>_URL   a role's base URL (default http://127.0.0.1:8001 .. 8004)
#   AIRISD_ROLES        the roles to check (default: "metrics log trace alert")
set -uo pipefail
. "$(dirname "$0")/ops-common.sh"
read -r -a CHECK <<<"${AIRISD_ROLES:-${ROLES[*]}}"
down=0
echo "=== airisd health check ($(date -u +%Y-%m-%dT%H:%M:%SZ)) ==="
for role in "${CHECK[@]}"; do
    url=$(role_url "$role")
    if body=$(curl -fsS --max-time "${AIRISD_HEALTH_TIMEOUT:-5}" "$url/health" 2>&1); then
        echo "OK    $role-service  $url  $body"
    else
        echo "DOWN  $role-service  $url  ${body:-no answer}"
        down=$((down + 1))
    fi
done
if [ "$down" -gt 0 ]; then
    echo "$down of ${#CHECK[@]} roles down"
    exit 1
fi
echo "all ${#CHECK[@]} roles healthy"

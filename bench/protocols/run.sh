#!/usr/bin/env bash
# Protocol ingest figures, airisd next to VictoriaMetrics on the same payloads, alternating:
# remote_write samples/s and Influx line protocol points/s. Loopback only; about 3 minutes with
# the defaults (3 rounds x 2 servers x 2 protocols x 10 s). Options: --rounds N --secs S
# --connections C --json FILE.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-.venv}

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v victoria-metrics >/dev/null || need+=(victoria-metrics)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "bench/protocols needs: ${need[*]} (sudo apt-get install -y ${need[*]})" >&2
        exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || {
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    }
fi
exec "$VENV/bin/python" bench/protocols/bench.py "$@"

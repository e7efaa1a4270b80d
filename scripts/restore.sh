#!/usr/bin/env bash
# Restore a backup made by backup.sh: stop the roles, verify and restore the data directory, give it
# back to the airisd user, start the roles. The configuration archive is not unpacked over
# /etc/airisd automatically; the command to do so is printed.
#   usage: restore.sh <backup dir | YYYYmmdd-HHMMSS>
set -euo pipefail
. "$(dirname "$0")/ops-common.sh"
if [ $# -ne 1 ]; then
    echo "Usage: $0 <backup dir or date, e.g. 20240115-020000>" >&2
    exit 1
fi
SRC=$1
[ -d "$SRC" ] || SRC=$BACKUP_ROOT/airisd-$1
if [ ! -f "$SRC/manifest.json" ]; then
    echo "Backup not found: $SRC" >&2
    exit 1
fi
echo "Restoring from $SRC"
"$(dirname "$0")/stop-all.sh"
"$AIRISD" restore --from "$SRC" --data-dir "$DATA_DIR" --force
if getent passwd airisd >/dev/null && [ "$(id -u)" = 0 ]; then
    chown -R airisd:airisd "$DATA_DIR"
fi
if [ -f "$SRC/etc-airisd.tar.gz" ]; then
    echo "configuration of the backup: tar -C / -xzf $SRC/etc-airisd.tar.gz (not applied)"
fi
"$(dirname "$0")/start-all.sh"

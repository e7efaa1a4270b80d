#!/usr/bin/env bash
# The seed's weekly maintenance, for airisd: archive the week's logs, then checkpoint and optimize
# every embedded store. Retention (outputs.sqlite retention_days) already runs hourly inside the
# daemon; VACUUM is not run here because it locks a store for its whole duration (run it with the
# roles stopped: `sqlite3 /var/lib/airisd/metrics.db VACUUM`).
set -euo pipefail
. "$(dirname "$0")/ops-common.sh"
echo "=== airisd weekly maintenance ==="
mkdir -p "$LOG_DIR"
archive=$LOG_DIR/weekly-$(date +%Y%m%d).log
if use_systemd; then
    journalctl --no-pager -q --since "7 days ago" -u 'airisd*' >"$archive" || true
else
    cat "$LOG_DIR"/airisd-*.log >"$archive" 2>/dev/null || true
    for f in "$LOG_DIR"/airisd-*.log; do [ -f "$f" ] && : >"$f"; done  # truncated in place: the daemons keep writing
fi
echo "logs archived to $archive"
find "$LOG_DIR" -name 'weekly-*.log' -mtime +"${AIRISD_LOG_KEEP_DAYS:-56}" -delete

# The daemon's own interpreter has sqlite3; WAL checkpoint and the query planner's statistics are
# safe while the roles write.
PY=${AIRISD_PYTHON:-/opt/airisd/bin/python}
[ -x "$PY" ] || PY=python3
for db in "$DATA_DIR"/*.db; do
    [ -f "$db" ] || continue
    "$PY" - "$db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=60)
busy, log, done = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
db.execute("PRAGMA optimize")
ok = db.execute("PRAGMA quick_check").fetchone()[0]
print(f"{sys.argv[1]}: checkpoint {'busy' if busy else 'done'}, optimize done, quick_check {ok}")
db.close()
sys.exit(0 if ok == "ok" else 1)
PY
done
echo "Weekly maintenance complete"

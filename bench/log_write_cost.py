"""The log writer's CPU per record by schema variant: LogStore.apply + COMMIT on 1000-record
batches like the bench's `POST /logs/batch` bodies, with the background checkpoint of the writer
process (no autocheckpoint in the commit), variants taking turns batch by batch so that the
machine's noise falls on every variant alike.

    .venv/bin/python bench/log_write_cost.py [--batches 150] [VARIANT ...]

Variants: ``current`` (LogStore.SCHEMA), ``old`` (plus the level, service and (service, level)
indexes the store had before session 5), ``+SQL`` (the current schema plus a statement, e.g.
``"+CREATE INDEX x ON logs(service);"``), ``fts:OPTIONS`` (more FTS5 options, e.g.
``fts:detail=column``), ``nofts`` (the FTS5 table replaced by a plain table of
the same rows). Figures are µs of process CPU per record: apply, COMMIT, total.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from airisd_plugins.outputs.sqlite.logs_store import LogStore

from airisd.model import LogRecord

OLD_INDEXES = """
    CREATE INDEX IF NOT EXISTS logs_by_level ON logs(level);
    CREATE INDEX IF NOT EXISTS logs_by_service ON logs(service);
    CREATE INDEX IF NOT EXISTS logs_by_service_level ON logs(service, level);
"""
SERVICES = [f"svc-{i}" for i in range(20)]
LEVELS = ["INFO"] * 70 + ["DEBUG"] * 12 + ["WARN"] * 10 + ["ERROR"] * 7 + ["FATAL"]
MESSAGES = ["database error: query on {t} failed after {n} ms (deadlock detected)", "GET /api/v1/{t}/{n} 200 {n} ms",
            "user {n} logged in from 10.0.{n}.7", "cache miss for {t}:{n}, loading from origin",
            "job {t}-sync finished: {n} rows processed"]  # fmt: skip
TABLES = ["orders", "users", "payments", "sessions"]


def schema(variant: str) -> str:
    current = LogStore.SCHEMA
    if variant == "current":
        return current
    if variant == "old":
        return current.replace("DROP INDEX IF EXISTS", "-- ") + OLD_INDEXES
    if variant == "nofts":
        start = current.index("CREATE VIRTUAL TABLE IF NOT EXISTS logs_fts")
        end = current.index(";", start) + 1
        plain = "CREATE TABLE IF NOT EXISTS logs_fts(rowid INTEGER PRIMARY KEY, message, stack_trace, meta);"
        return current[:start] + plain + current[end:]
    if variant.startswith("+"):
        return current + variant[1:]
    if variant.startswith("fts:"):  # more FTS5 options, e.g. "fts:detail=column"
        assert "columnsize=0," in current
        return current.replace("columnsize=0,", f"columnsize=0, {variant[4:]},")
    raise SystemExit(f"unknown variant {variant!r}")


def batches(count: int, size: int = 1000) -> list[list[LogRecord]]:
    rng = random.Random(1)
    base = time.time_ns() - 6 * 3600 * 10**9
    out = []
    for k in range(count):
        out.append([
            LogRecord(ts=base + (k * size + i) * 1000, level=rng.choice(LEVELS), service=SERVICES[i % 20],
                      message=rng.choice(MESSAGES).format(t=rng.choice(TABLES), n=rng.randrange(5000)),
                      request_id=f"req-{k * size + i:x}", labels={"env": "prod", "host": f"host-{i % 8}"})
            for i in range(size)
        ])  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=150, help="1000-record batches a store (default 150)")
    ap.add_argument("variants", nargs="*", default=["old", "current", "nofts"])
    args = ap.parse_args()
    work = batches(args.batches)
    with tempfile.TemporaryDirectory() as tmp:
        stores, prepared = {}, {}
        for v in args.variants:
            cls = type(f"LogStore_{len(stores)}", (LogStore,), {"SCHEMA": schema(v)})
            store = cls(Path(tmp) / str(len(stores)))
            store.open(background_checkpoint=True)
            stores[v] = store
            prepared[v] = [store.prepare(b) for b in work]
        spent = {v: [0.0, 0.0] for v in stores}
        for i in range(args.batches):
            for v in args.variants[i % len(args.variants):] + args.variants[: i % len(args.variants)]:
                conn = stores[v].wconn
                t0 = time.process_time()
                conn.execute("BEGIN IMMEDIATE")
                stores[v].apply(prepared[v][i])
                t1 = time.process_time()
                conn.execute("COMMIT")
                t2 = time.process_time()
                spent[v][0] += t1 - t0
                spent[v][1] += t2 - t1
                if i % 40 == 39:
                    stores[v].checkpoint()  # as the background checkpointer does, outside the timing
        n = args.batches * len(work[0])
        print(f"{n:,} records in {args.batches} batches of {len(work[0])}; µs of CPU per record")
        for v, (apply_s, commit_s) in spent.items():
            print(f"{v:24s} apply {apply_s / n * 1e6:6.2f}  commit {commit_s / n * 1e6:6.2f}  "
                  f"total {(apply_s + commit_s) / n * 1e6:6.2f}")
            stores[v].close()


if __name__ == "__main__":
    main()

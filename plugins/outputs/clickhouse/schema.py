"""Tables and their migrations, applied on start.

Each migration is a numbered list of idempotent statements (``IF NOT EXISTS``), recorded in
``schema_version`` once applied: a restart applies nothing, two daemons starting at once at worst
run the same harmless statements twice, and a change (a new column, an index) is one more entry at
the end of ``MIGRATIONS``, never an edit of an old one.

Layout, chosen for the queries the roles make:
- ``metrics``: ReplacingMergeTree ordered by (name, series, timestamp): a series' range is one
  contiguous read, and a second sample for the same series and nanosecond replaces the first (read
  with FINAL), as in the SQLite store; ``series`` is a 64-bit hash of name + sorted labels.
- ``logs``: ordered by (service, timestamp); ``spans``: by (service_name, start_time), with a
  bloom-filter index on trace_id for trace lookups.
- every table has a ``date`` column (Date, from the timestamp), ``PARTITION BY toYYYYMM(date)`` and
  ``TTL date + INTERVAL retention_days DAY``, so the seed's ``ALTER TABLE metrics DELETE WHERE date
  < today() - INTERVAL 30 DAY`` works as written and old partitions are dropped whole.
- ``non_replicated_deduplication_window``: ClickHouse drops an INSERT block identical to one of the
  last 1000 it took, so a batch retried after a lost response is not stored twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

DEDUP = "SETTINGS non_replicated_deduplication_window = 1000"


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: Sequence[str]  # may use {db} and {ttl}


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "metrics table", ["""
        CREATE TABLE IF NOT EXISTS {db}.metrics (
            name      LowCardinality(String),
            labels    Map(String, String),
            series    UInt64,
            timestamp DateTime64(9, 'UTC') CODEC(DoubleDelta, LZ4),
            value     Float64,
            date      Date DEFAULT toDate(timestamp)
        ) ENGINE = ReplacingMergeTree
        PARTITION BY toYYYYMM(date)
        ORDER BY (name, series, timestamp)
        {ttl}
        """ + DEDUP]),
    Migration(2, "logs table", ["""
        CREATE TABLE IF NOT EXISTS {db}.logs (
            timestamp   DateTime64(9, 'UTC'),
            date        Date DEFAULT toDate(timestamp),
            level       LowCardinality(String),
            service     LowCardinality(String),
            message     String,
            trace_id    String,
            span_id     String,
            labels      Map(String, String),
            stack_trace String,
            user_id     String,
            request_id  String,
            attributes  Map(String, String)
        ) ENGINE = MergeTree
        PARTITION BY toYYYYMM(date)
        ORDER BY (service, timestamp)
        {ttl}
        """ + DEDUP]),
    Migration(3, "spans table", ["""
        CREATE TABLE IF NOT EXISTS {db}.spans (
            trace_id       String,
            span_id        String,
            parent_span_id String,
            operation_name LowCardinality(String),
            service_name   LowCardinality(String),
            start_time     DateTime64(9, 'UTC'),
            end_time       DateTime64(9, 'UTC'),
            duration_ns    Int64,
            date           Date DEFAULT toDate(start_time),
            kind           LowCardinality(String),
            error          Bool,
            tags           Map(String, String),
            logs           String
        ) ENGINE = MergeTree
        PARTITION BY toYYYYMM(date)
        ORDER BY (service_name, start_time)
        {ttl}
        """ + DEDUP]),
    Migration(4, "trace_id lookups: bloom-filter indexes on logs and spans", [
        "ALTER TABLE {db}.spans ADD INDEX IF NOT EXISTS trace_id_idx trace_id TYPE bloom_filter(0.01) GRANULARITY 4",
        "ALTER TABLE {db}.logs ADD INDEX IF NOT EXISTS trace_id_idx trace_id TYPE bloom_filter(0.01) GRANULARITY 4",
    ]),
    Migration(5, "log search: token arrays (logquery.tokenize) with bloom filters; attributes as typed JSON", [
        "ALTER TABLE {db}.logs ADD COLUMN IF NOT EXISTS attributes_json String",
        "ALTER TABLE {db}.logs ADD COLUMN IF NOT EXISTS message_tokens Array(String)",
        "ALTER TABLE {db}.logs ADD COLUMN IF NOT EXISTS stack_tokens Array(String)",
        "ALTER TABLE {db}.logs ADD COLUMN IF NOT EXISTS meta_tokens Array(String)",
        "ALTER TABLE {db}.logs ADD INDEX IF NOT EXISTS message_tokens_idx message_tokens TYPE bloom_filter(0.01) "
        "GRANULARITY 1",
        "ALTER TABLE {db}.logs ADD INDEX IF NOT EXISTS meta_tokens_idx meta_tokens TYPE bloom_filter(0.01) "
        "GRANULARITY 1",
    ]),
    Migration(6, "spans: tags as typed JSON (the trace store gives them back as sent)", [
        "ALTER TABLE {db}.spans ADD COLUMN IF NOT EXISTS tags_json String",
    ]),
)

TABLES = ("metrics", "logs", "spans")


def ttl_clause(retention_days: int) -> str:
    return f"TTL date + INTERVAL {int(retention_days)} DAY" if retention_days > 0 else ""


def migrate(client: Any, database: str, retention_days: int,
            migrations: Sequence[Migration] = MIGRATIONS, *, rerun: bool = False) -> list[int]:
    """Create the database and apply the migrations not yet recorded; then make each table's TTL
    match ``retention_days``. Returns the versions applied now (empty on a restart).

    ``rerun``: run every migration's statements again (they are idempotent), for a table dropped
    under a running daemon; versions already recorded are not recorded twice."""
    db = f"`{database}`"
    client.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    client.command(f"CREATE TABLE IF NOT EXISTS {db}.schema_version (version UInt32, description String, "
                   "applied_at DateTime DEFAULT now()) ENGINE = ReplacingMergeTree ORDER BY version")
    done = {int(r[0]) for r in client.query(f"SELECT version FROM {db}.schema_version").result_rows}
    applied = []
    for m in sorted(migrations, key=lambda m: m.version):
        if m.version in done and not rerun:
            continue
        for stmt in m.statements:
            client.command(stmt.format(db=db, ttl=ttl_clause(retention_days)))
        if m.version in done:
            continue
        client.insert("schema_version", [[m.version, m.description]], column_names=["version", "description"],
                      database=database)
        applied.append(m.version)
    apply_retention(client, database, retention_days)
    return applied


def apply_retention(client: Any, database: str, retention_days: int) -> None:
    """ALTER ... MODIFY/REMOVE TTL where a table's TTL differs from the configured retention."""
    rows = client.query("SELECT name, engine_full FROM system.tables WHERE database = {db:String}",
                        parameters={"db": database}).result_rows
    engines = {name: full for name, full in rows}
    want = f"toIntervalDay({int(retention_days)})"
    for table in TABLES:
        full = engines.get(table)
        if full is None:
            continue
        has_ttl = " TTL " in full
        if retention_days > 0 and want not in full:
            client.command(f"ALTER TABLE `{database}`.{table} MODIFY {ttl_clause(retention_days)}")
        elif retention_days == 0 and has_ttl:
            client.command(f"ALTER TABLE `{database}`.{table} REMOVE TTL")

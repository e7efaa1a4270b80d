"""The span store's index set: what exists, that searches name only those, that a store made with
the older schema (five span indexes) migrates on open and answers as a new one does, and that the
searches without a service (a merge of per-service scans) agree with the brute-force oracle when
services are many, rare or tied in time."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

from airisd_plugins.outputs.sqlite import traces_store
from airisd_plugins.outputs.sqlite.traces_store import TraceStore
from hypothesis import given, settings
from hypothesis import strategies as st

from airisd.model import Span
from tests.test_traces_store import MS, T0, check_query, mk, query_strategy, traces_strategy

# TraceStore.SCHEMA before the span indexes were cut to two (kept verbatim: what old stores have).
OLD_SCHEMA = """
    CREATE TABLE IF NOT EXISTS spans (
        trace_id       TEXT NOT NULL,
        span_id        TEXT NOT NULL,
        parent_span_id TEXT NOT NULL DEFAULT '',
        service        TEXT NOT NULL,
        operation      TEXT NOT NULL,
        kind           TEXT NOT NULL DEFAULT '',
        start_ts       INTEGER NOT NULL,  -- ns since epoch
        end_ts         INTEGER NOT NULL,
        duration       INTEGER NOT NULL,  -- ns, end_ts - start_ts
        error          INTEGER NOT NULL DEFAULT 0,
        tags           TEXT,              -- JSON object, NULL when empty
        logs           TEXT               -- JSON list of {ts, message, fields}, NULL when empty
    );
    CREATE VIRTUAL TABLE IF NOT EXISTS trace_fts USING fts5(
        trace_id, content='spans', content_rowid='rowid', detail=none, columnsize=0,
        tokenize="ascii tokenchars '-_'"
    );
    CREATE INDEX IF NOT EXISTS spans_service ON spans (service, start_ts, duration, operation, error);
    CREATE INDEX IF NOT EXISTS spans_start ON spans (start_ts, duration, error);
    CREATE INDEX IF NOT EXISTS spans_errors ON spans (start_ts) WHERE error = 1;
    CREATE INDEX IF NOT EXISTS spans_slow_service ON spans (service, start_ts, duration, operation, error)
        WHERE duration >= 100000000;
    CREATE INDEX IF NOT EXISTS spans_slow ON spans (start_ts, duration, error) WHERE duration >= 100000000;
    CREATE TABLE IF NOT EXISTS operations (
        service   TEXT NOT NULL,
        operation TEXT NOT NULL,
        kind      TEXT NOT NULL,
        last_seen INTEGER NOT NULL,       -- newest span start seen, at most a minute stale
        PRIMARY KEY (service, operation, kind)
    ) WITHOUT ROWID;
    """

NEW_INDEXES = {"spans_service", "spans_errors", "spans_slow", "spans_slow_service"}


class OldTraceStore(TraceStore):
    SCHEMA = OLD_SCHEMA


def span_indexes(store: TraceStore) -> set[str]:
    rows = store.wconn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'spans'")
    return {r[0] for r in rows if not r[0].startswith("sqlite_")}


def test_the_schema_has_three_span_indexes(tmp_path: Path) -> None:
    store = TraceStore(tmp_path)
    store.open()
    try:
        assert span_indexes(store) == NEW_INDEXES
    finally:
        store.close()


@given(query_strategy)
def test_searches_name_only_indexes_that_exist(q: dict[str, Any]) -> None:
    q.pop("limit", None)
    plan = traces_store._search_sql(
        q.get("service"), q.get("operation"), q.get("from_ns"), q.get("to_ns"), q.get("min_duration_ns"),
        q.get("max_duration_ns"), q.get("tags", []),
    )  # fmt: skip
    if plan is not None:
        assert set(re.findall(r"INDEXED BY (\w+)", plan[0])) <= NEW_INDEXES


def as_span(tid: str, i: int, d: dict[str, Any]) -> Span:
    return mk(tid, f"s{i}", d["start_ms"], d["dur_ms"], service=d["service"], op=d["op"], error=d["error"],
              tags=d["tags"])  # fmt: skip


def as_spans(traces: list[list[dict[str, Any]]]) -> dict[str, list[Span]]:
    return {f"trace-{t}": [as_span(f"trace-{t}", i, d) for i, d in enumerate(spans)] for t, spans in enumerate(traces)}


@settings(max_examples=40)
@given(traces_strategy, st.lists(query_strategy, min_size=1, max_size=6))
def test_an_old_store_migrates_on_open_and_answers_as_a_new_one(
    traces: list[list[dict[str, Any]]], queries: list[dict[str, Any]]
) -> None:
    all_spans = as_spans(traces)
    with tempfile.TemporaryDirectory() as tmp:
        old_dir, new_dir = Path(tmp, "old"), Path(tmp, "new")
        old = OldTraceStore(old_dir)
        old.open()
        old.write_batches([spans for spans in all_spans.values()])
        assert span_indexes(old) == NEW_INDEXES | {"spans_start"}
        old.close()
        migrated, fresh = TraceStore(old_dir), TraceStore(new_dir)
        migrated.open()
        fresh.open()
        try:
            assert span_indexes(migrated) == NEW_INDEXES
            fresh.write_batches([spans for spans in all_spans.values()])
            for q in queries:
                check_query(migrated, all_spans, q)
                assert migrated.search(**q) == fresh.search(**q)
            # The migrated store goes on taking writes, retention and trace lookups.
            migrated.write_batches([[mk("late", "a", 60)]])
            assert [s.span_id for s in migrated.get_trace("late")] == ["a"]
            assert migrated.delete_before(T0 + 60 * MS) == sum(map(len, all_spans.values()))
            assert migrated.find_trace_ids() == ["late"]
            migrated.wconn.execute("INSERT INTO trace_fts(trace_fts, rank) VALUES ('integrity-check', 1)")
        finally:
            migrated.close()
            fresh.close()


# Many services, some rare, start times that tie across services: the per-service merge.
many_spans = st.fixed_dictionaries(
    {
        "service": st.sampled_from([f"s{i}" for i in range(12)]) | st.just("rare"),
        "op": st.sampled_from(["GET /a", "POST /b", "SELECT"]),
        "start_ms": st.integers(0, 8),
        "dur_ms": st.integers(0, 40) | st.integers(90, 250),
        "error": st.booleans(),
        "tags": st.dictionaries(st.sampled_from(["http.status_code", "flag"]), st.sampled_from([200, 500, True])),
    }
)


@settings(max_examples=60)
@given(st.lists(st.lists(many_spans, min_size=1, max_size=5), min_size=1, max_size=20), st.data())
def test_searches_without_a_service_merge_every_services_scan(
    traces: list[list[dict[str, Any]]], data: st.DataObject
) -> None:
    all_spans = as_spans(traces)
    queries = data.draw(st.lists(query_strategy, min_size=1, max_size=6))
    with tempfile.TemporaryDirectory() as tmp:
        store = TraceStore(Path(tmp))
        store.open()
        try:
            store.write_batches([spans for spans in all_spans.values()])
            for q in queries:
                q.pop("service", None)
                check_query(store, all_spans, q)
        finally:
            store.close()


def test_searches_and_retention_see_services_missing_from_the_catalogue(tmp_path: Path) -> None:
    store = TraceStore(tmp_path)
    store.open()
    try:
        store.write_batches([[mk("t1", "a", 0, service="api"), mk("t2", "a", 5, service="db")]])
        store.wconn.execute("DELETE FROM operations")  # the store's services come from the spans
        assert store.find_trace_ids() == ["t2", "t1"]
        assert store.delete_before(T0 + 10 * MS) == 2
        assert store.find_trace_ids() == []
    finally:
        store.close()

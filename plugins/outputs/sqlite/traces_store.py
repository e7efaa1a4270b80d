"""Spans in SQLite (``traces.db``): one row per span, indexed for the three questions asked of it.

Layout and why (figures from 2M-span runs on the project machine, per span written):

- ``spans`` is a rowid table in arrival order; the writer assigns the rowids.
- Finding a trace by id: a B-tree on random trace ids dirties about one leaf page (plus interior
  pages and splits) per trace per commit: ~4.0 KB of WAL and checkpoint writes and ~25 µs of CPU
  per span, 3-4x the rest of the row. Instead, ``trace_fts`` is an external-content FTS5 table
  whose only token is the trace id: FTS5 buffers each transaction's entries and merges sorted
  segments incrementally (an LSM tree, in C), which cost ~1.2 KB and ~18 µs per span all told,
  and a lookup is still well under a millisecond. Its ``ascii`` tokenizer (with ``-`` and ``_``
  as token characters) keeps an id in one token but folds case, so reads also compare
  ``trace_id``.
- A span written twice (re-delivery) is stored twice and read once: reads keep the copy with the
  highest rowid, i.e. the last write. No unique index is needed for that, which is what makes
  the write cheap.
- Four span indexes, each growing at its right edge (time order), one per service for two:
  ``spans_service (service, start_ts, duration, operation, error)`` serves searches by service
  newest-first; duration, operation and the error flag are tested inside the index, so only
  matching spans cost a row fetch. A search without a service merges the services' scans of it
  (the services found by a loose scan, one seek each): it reads the entries a start-time index
  would give, plus a seek per service. Three partial indexes bound the searches whose matches are
  rare among all spans: ``spans_slow_service``, the same as ``spans_service`` for the spans of
  100 ms or more (``min_duration`` >= 100 ms with a service), ``spans_slow (start_ts, duration,
  error)`` for them without a service, and ``spans_errors (start_ts)`` for the spans with an error
  (``tags=error:true`` without a service).
- Why no more: span indexes were most of the writer's SQLite work. ``bench/trace_write_cost.py``
  (1M spans in 512-span commits, apply + COMMIT + background checkpoint, CPU a span): the first
  release's five indexes cost 13.6 µs against 7.6 µs with none; alone, ``spans_service``
  ~3.3 µs, ``spans_start (start_ts, duration, error)`` 1.4, the partial copy of ``spans_service``
  for slow spans 0.9, ``spans_slow`` and ``spans_errors`` 0.3 each. An index keyed by service
  dirties a page per service every commit however narrow its entries: cutting ``spans_service``
  to ``(service, start_ts)`` saved 0.3-0.6 µs and would send every entry it reads to a row
  fetch, so it stays covering. Without ``spans_start`` the writer takes ~12.4 µs; over 10M spans
  (24 h, 10 services) search p50s stayed 5-10 ms. ``spans_slow_service`` stays although it costs
  0.9 µs (no difference end to end, OTLP alternating runs): without it a search by service for
  durations that (almost) never occur read all the service's entries (none in 24 h: p50 25 ->
  180 ms).
- Other tag filters are tested in Python on the rows the index lets through, after a substring
  pre-filter on the tags' JSON text in SQL (a tag index would cost rows per tag per span).
- ``operations (service, operation, kind, last_seen)`` is the catalogue behind ``services()`` and
  ``operations()``, which would otherwise be DISTINCT scans over every span. The writer keeps a
  cache of it and touches the table only for a new name or when ``last_seen`` is a minute old.

No per-trace summary table: it would bring back a random-key upsert per trace per commit, while a
search's summaries come from at most ``limit`` traces' narrow rows at read time. Summaries
therefore always agree with the spans.

Search semantics (Jaeger's): a trace matches when ONE of its spans satisfies every condition
(service, operation, start within [from, to], duration within [min, max], every tag filter).
Results are ordered by that newest matching span's start time, newest first.
"""

from __future__ import annotations

import heapq
import re
import sqlite3
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any, ClassVar

import msgspec
from airisd_plugins.outputs.sqlite.base import SignalStore

from airisd.model import Span, SpanLog
from airisd.traceformats import ID_PATTERN, tags_match, trace_summary

_CATALOG_REFRESH_NS = 60 * 1_000_000_000  # how stale operations.last_seen may get
SLOW_NS = 100_000_000  # spans this long are also in the small spans_slow partial index
_DELETE_CHUNK = 20_000
_MMAP_BYTES = 1 << 31  # SQLite caps it at its compile-time maximum

_encode = msgspec.json.Encoder().encode
_decode_tags = msgspec.json.Decoder(dict[str, str | int | float | bool]).decode
_decode_logs = msgspec.json.Decoder(list[SpanLog]).decode

_INSERT_SPAN = ("INSERT INTO spans (rowid, trace_id, span_id, parent_span_id, service, operation, kind, start_ts,"
                " end_ts, duration, error, tags, logs) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)")  # fmt: skip
# prepare()'s result: span rows without rowid, and (service, operation, kind, newest start) each.
PreparedSpans = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]

_FULL = "rowid, span_id, parent_span_id, service, operation, kind, start_ts, end_ts, error, tags, logs"
_NARROW = "rowid, span_id, parent_span_id, service, operation, kind, start_ts, end_ts, error"
# A loose index scan of spans_service: one seek per distinct service, however many spans.
_SERVICES_SQL = """
    WITH RECURSIVE s(service) AS (
        SELECT (SELECT min(service) FROM spans)
        UNION ALL
        SELECT (SELECT min(service) FROM spans WHERE service > s.service) FROM s WHERE s.service IS NOT NULL
    ) SELECT service FROM s WHERE service IS NOT NULL"""
_BY_TRACE = "FROM spans WHERE rowid IN (SELECT rowid FROM trace_fts WHERE trace_fts MATCH ?) AND trace_id = ?"
# Tag filters are pre-checked as substrings of the tags' JSON text (msgspec writes it without
# spaces), but only where that spelling is certain: nothing JSON would escape, and for the value,
# nothing numeric (a float has several spellings).
_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f]')
_NUMERIC = re.compile(r"[-+0-9.eE]+")


class TraceStore(SignalStore):
    filename: ClassVar[str] = "traces.db"
    item_type: ClassVar[type] = Span
    prepared_type: ClassVar[Any] = Any  # PreparedSpans, as msgpack arrays
    SCHEMA: ClassVar[str] = """
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
    CREATE INDEX IF NOT EXISTS spans_errors ON spans (start_ts) WHERE error = 1;
    CREATE INDEX IF NOT EXISTS spans_slow ON spans (start_ts, duration, error) WHERE duration >= 100000000;
    -- Older stores also had this one; it cost ~1.4 µs a span written and no search uses it now.
    DROP INDEX IF EXISTS spans_start;
    CREATE INDEX IF NOT EXISTS spans_slow_service ON spans (service, start_ts, duration, operation, error)
        WHERE duration >= 100000000;
    CREATE TABLE IF NOT EXISTS operations (
        service   TEXT NOT NULL,
        operation TEXT NOT NULL,
        kind      TEXT NOT NULL,
        last_seen INTEGER NOT NULL,       -- newest span start seen, at most a minute stale
        PRIMARY KEY (service, operation, kind)
    ) WITHOUT ROWID;
    """

    _catalog: dict[tuple[str, str, str], int]
    _next_rowid: int

    # -- writing (writer thread) -----------------------------------------------------------------
    def after_open(self, conn: sqlite3.Connection) -> None:
        self._reload(conn)

    def _reload(self, conn: sqlite3.Connection) -> None:
        rows = conn.execute("SELECT service, operation, kind, last_seen FROM operations")
        self._catalog = {(s, o, k): ts for s, o, k, ts in rows}
        self._next_rowid = conn.execute("SELECT coalesce(max(rowid), 0) + 1 FROM spans").fetchone()[0]

    def after_rollback(self) -> None:
        self._reload(self.wconn)

    def write(self, items: list[Span]) -> None:
        if items:
            self.apply(self.prepare(items))

    def prepare(self, items: list[Span]) -> PreparedSpans:
        """The spans' rows (without rowid) and, per (service, operation, kind), the newest start
        (no database needed)."""
        rows = [
            (s.trace_id, s.span_id, s.parent_span_id, s.service_name, s.operation_name, s.kind, s.start_ts,
             s.end_ts, s.end_ts - s.start_ts, 1 if s.error else 0, _encode(s.tags).decode() if s.tags else None,
             _encode(s.logs).decode() if s.logs else None)
            for s in items
        ]  # fmt: skip
        newest: dict[tuple[str, str, str], int] = {}
        for s in items:
            key = (s.service_name, s.operation_name, s.kind)
            seen = newest.get(key)
            if seen is None or s.start_ts > seen:
                newest[key] = s.start_ts
        return rows, [(*k, ts) for k, ts in newest.items()]

    def apply(self, prepared: PreparedSpans) -> None:
        rows, newest = prepared
        if not rows:
            return
        conn = self.wconn
        first = self._next_rowid
        conn.executemany(_INSERT_SPAN, [(first + i, *r) for i, r in enumerate(rows)])
        # The index rows come from the rows just written, in SQLite (one statement, no Python per span).
        conn.execute("INSERT INTO trace_fts (rowid, trace_id) SELECT rowid, trace_id FROM spans WHERE rowid >= ?",
                     (first,))
        self._next_rowid = first + len(rows)
        catalog = self._catalog
        stale: dict[tuple[str, str, str], int] = {}
        for service, operation, kind, start_ts in newest:
            key = (service, operation, kind)
            seen = catalog.get(key)
            if seen is None or start_ts > seen + _CATALOG_REFRESH_NS:
                stale[key] = start_ts if seen is None else max(seen, start_ts)
        if stale:
            conn.executemany(
                "INSERT INTO operations (service, operation, kind, last_seen) VALUES (?,?,?,?)"
                " ON CONFLICT DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)",
                [(*key, ts) for key, ts in stale.items()],
            )
            catalog.update(stale)

    def delete_before(self, cutoff_ns: int) -> int:
        """Delete spans that started before cutoff_ns, in chunks of one transaction each (so
        the writer is never held long), then catalogue entries with no span left."""
        conn = self.wconn
        total = 0
        for service in _stored_services(conn):
            total += self._delete_service_before(conn, service, cutoff_ns)
        # last_seen lags by at most _CATALOG_REFRESH_NS, so this keeps every name with spans left.
        conn.execute("DELETE FROM operations WHERE last_seen + ? < ?", (_CATALOG_REFRESH_NS, cutoff_ns))
        self._reload(conn)
        return total

    @staticmethod
    def _delete_service_before(conn: sqlite3.Connection, service: str, cutoff_ns: int) -> int:
        total = 0
        while True:
            conn.execute("BEGIN IMMEDIATE")
            try:
                rows = conn.execute(
                    "SELECT rowid, trace_id FROM spans INDEXED BY spans_service WHERE service = ? AND start_ts < ?"
                    " LIMIT ?",
                    (service, cutoff_ns, _DELETE_CHUNK),
                ).fetchall()
                # External-content FTS5 forgets a row only when told its exact indexed values.
                conn.executemany("INSERT INTO trace_fts (trace_fts, rowid, trace_id) VALUES ('delete', ?, ?)", rows)
                conn.executemany("DELETE FROM spans WHERE rowid = ?", [(r[0],) for r in rows])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            total += len(rows)
            if len(rows) < _DELETE_CHUNK:
                return total

    # -- reading (any thread) ----------------------------------------------------------------------
    def configure_reader(self, conn: sqlite3.Connection) -> None:
        """Read connections map the file: mmap turns page reads into memory accesses (searches
        ran 2-4x faster at 1M spans, each with a cold page cache)."""
        conn.execute(f"PRAGMA mmap_size={_MMAP_BYTES}")

    def get_trace(self, trace_id: str) -> list[Span]:
        """Every span of the trace, ordered by start time; [] if unknown."""
        conn = self.reader()
        try:
            return _spans(conn, trace_id)
        finally:
            conn.close()

    def get_traces(self, trace_ids: Iterable[str]) -> dict[str, list[Span]]:
        """Several traces at once (Jaeger's search answers with whole traces); unknown ids are
        left out."""
        conn = self.reader()
        try:
            out = {}
            for tid in trace_ids:
                spans = _spans(conn, tid)
                if spans:
                    out[tid] = spans
            return out
        finally:
            conn.close()

    def find_trace_ids(
        self,
        *,
        service: str | None = None,
        operation: str | None = None,
        from_ns: int | None = None,
        to_ns: int | None = None,
        min_duration_ns: int | None = None,
        max_duration_ns: int | None = None,
        tags: Sequence[tuple[str, str]] = (),
        limit: int = 20,
    ) -> list[str]:
        """Ids of the traces with a span matching every condition, newest matching span first."""
        plan = _search_sql(service, operation, from_ns, to_ns, min_duration_ns, max_duration_ns, tags)
        if plan is None:
            return []
        sql, args, py_filters, per_service = plan
        conn = self.reader()
        try:
            found: dict[str, None] = {}
            cursors: list[sqlite3.Cursor] = []
            if per_service:
                conn.execute("BEGIN")  # one snapshot for the service list and every scan
            try:
                if per_service:
                    # No index leads with start_ts (it would cost more per span written than the
                    # rest of the row): merge the services' newest-first scans of spans_service.
                    cursors = [conn.execute(sql, [svc, *args]) for svc in _stored_services(conn)]
                    rows: Iterable[Any] = heapq.merge(*cursors, key=itemgetter(0), reverse=True)
                else:
                    cursors = [conn.execute(sql, args)]
                    rows = cursors[0]
                for row in rows:
                    tid = row[1]
                    if tid in found:
                        continue
                    if py_filters and not tags_match(_decode_tags(row[2]) if row[2] else {}, False, py_filters):
                        continue
                    found[tid] = None
                    if len(found) >= limit:
                        break
            finally:
                for cur in cursors:
                    cur.close()
                if per_service:
                    conn.execute("COMMIT")
            return list(found)
        finally:
            conn.close()

    def search(
        self,
        *,
        service: str | None = None,
        operation: str | None = None,
        from_ns: int | None = None,
        to_ns: int | None = None,
        min_duration_ns: int | None = None,
        max_duration_ns: int | None = None,
        tags: Sequence[tuple[str, str]] = (),
        limit: int = 20,
    ) -> list[dict[str, Any]]:
        """Summaries (see :func:`airisd.traceformats.trace_summary`) of the matching traces."""
        ids = self.find_trace_ids(
            service=service,
            operation=operation,
            from_ns=from_ns,
            to_ns=to_ns,
            min_duration_ns=min_duration_ns,
            max_duration_ns=max_duration_ns,
            tags=tags,
            limit=limit,
        )
        return self.summaries(ids)

    def summaries(self, trace_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Summaries in the order given, from the spans' narrow columns (no tags, no logs)."""
        conn = self.reader()
        try:
            out = []
            for tid in trace_ids:
                spans = _spans(conn, tid, narrow=True)
                if spans:  # else deleted by retention between the two queries
                    out.append(trace_summary(spans))
            return out
        finally:
            conn.close()

    def services(self) -> list[str]:
        conn = self.reader()
        try:
            return [r[0] for r in conn.execute("SELECT DISTINCT service FROM operations ORDER BY service")]
        finally:
            conn.close()

    def operations(self, service: str, *, span_kind: str | None = None) -> list[str]:
        """Operation names of a service, optionally only those seen with one span kind."""
        sql = "SELECT DISTINCT operation FROM operations WHERE service = ?"
        args: tuple[str, ...] = (service,)
        if span_kind:
            sql += " AND kind = ?"
            args += (span_kind,)
        conn = self.reader()
        try:
            return [r[0] for r in conn.execute(sql + " ORDER BY operation", args)]
        finally:
            conn.close()

    def operation_kinds(self, service: str) -> list[tuple[str, str]]:
        """(operation, span kind) pairs of a service, for Jaeger's ``/api/operations``."""
        conn = self.reader()
        try:
            rows = conn.execute(
                "SELECT operation, kind FROM operations WHERE service = ? ORDER BY operation, kind",
                (service,),
            )
            return [(r[0], r[1]) for r in rows]
        finally:
            conn.close()


def _spans(conn: sqlite3.Connection, trace_id: str, *, narrow: bool = False) -> list[Span]:
    """The spans of one trace in start order, the last-written copy of each span id."""
    if ID_PATTERN.fullmatch(trace_id) is None:
        return []  # not an id we could have stored; also keeps FTS5 query syntax out
    rows = conn.execute(
        f"SELECT {_NARROW if narrow else _FULL} {_BY_TRACE} ORDER BY rowid", (f'"{trace_id}"', trace_id)
    ).fetchall()
    latest = {r[1]: r for r in rows}  # rowid order: a later copy of a span id replaces an earlier
    spans = [
        Span(
            trace_id=trace_id,
            span_id=r[1],
            parent_span_id=r[2],
            service_name=r[3],
            operation_name=r[4],
            kind=r[5],
            start_ts=r[6],
            end_ts=r[7],
            error=bool(r[8]),
            tags=_decode_tags(r[9]) if not narrow and r[9] else {},
            logs=_decode_logs(r[10]) if not narrow and r[10] else [],
        )
        for r in latest.values()
    ]
    spans.sort(key=lambda s: (s.start_ts, s.span_id))
    return spans


def _instr_patterns(key: str, value: str) -> list[str]:
    """Substrings one of which the tags' JSON must contain if the filter can hold ([] = no
    pre-check). A pattern ending in the key also matches ``resource.<key>``, as tags_match does."""
    if _JSON_ESCAPED.search(key):
        return []
    if _JSON_ESCAPED.search(value) or _NUMERIC.fullmatch(value):
        return [f'{key}":']
    patterns = [f'{key}":"{value}"']
    if value in ("true", "false"):
        patterns.append(f'{key}":{value}')
    return patterns


def _stored_services(conn: sqlite3.Connection) -> list[str]:
    """The distinct services of the stored spans, one seek in spans_service each (a loose index
    scan). Not the catalogue: that one is pruned on its own schedule."""
    return [r[0] for r in conn.execute(_SERVICES_SQL)]


def _search_sql(
    service: str | None,
    operation: str | None,
    from_ns: int | None,
    to_ns: int | None,
    min_duration_ns: int | None,
    max_duration_ns: int | None,
    tags: Sequence[tuple[str, str]],
) -> tuple[str, list[Any], list[tuple[str, str]], bool] | None:
    """The scan for find_trace_ids: SQL, its arguments, the tag filters left for Python, and
    whether it is to run once per stored service (its first argument); None when no span can match.

    The error filter becomes a literal ``error = 0/1`` so that SQLite may use the partial index.
    Each other tag filter adds ``instr`` pre-filters on the tags' JSON text; Python decides.
    """
    conds: list[str] = []
    args: list[Any] = []
    for column, op, value in (
        ("operation", "=", operation),
        ("start_ts", ">=", from_ns),
        ("start_ts", "<=", to_ns),
        ("duration", ">=", min_duration_ns),
        ("duration", "<=", max_duration_ns),
    ):
        if value is not None:
            conds.append(f"{column} {op} ?")
            args.append(value)
    error_wanted: set[str] = set()
    py_filters: list[tuple[str, str]] = []
    for key, value in tags:
        if key == "error":
            error_wanted.add(value)
            continue
        py_filters.append((key, value))
        alternatives = _instr_patterns(key, value)
        if alternatives:
            conds.append("(" + " OR ".join(["instr(tags, ?) > 0"] * len(alternatives)) + ")")
            args.extend(alternatives)
    if error_wanted == {"true"}:
        conds.append("error = 1")
    elif error_wanted == {"false"}:
        conds.append("error = 0")
    elif error_wanted:
        return None  # error:true and error:false together, or error:maybe: nothing can match
    per_service = False
    slow = min_duration_ns is not None and min_duration_ns >= SLOW_NS
    if service is not None:
        index = "spans_slow_service" if slow else "spans_service"
        conds.insert(0, "service = ?")
        args.insert(0, service)
        if slow:
            conds.append(f"duration >= {SLOW_NS}")
    elif slow:
        index = "spans_slow"
        conds.append(f"duration >= {SLOW_NS}")  # the partial index's own term, for the planner
    elif "error = 1" in conds:
        index = "spans_errors"
    else:
        index = "spans_service"
        conds.insert(0, "service = ?")  # bound per service by the caller
        per_service = True
    columns = "start_ts, trace_id, tags" if py_filters else "start_ts, trace_id"
    where = " AND ".join(conds)
    sql = f"SELECT {columns} FROM spans INDEXED BY {index} WHERE {where or '1'} ORDER BY start_ts DESC"
    return sql, args, py_filters, per_service

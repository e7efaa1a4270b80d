"""Log records in SQLite: a rowid table keyed by time, and an FTS5 index of their words.

Layout, and why:

- ``logs.ts`` (ns) is the INTEGER PRIMARY KEY. Time order is then rowid order, which is what
  makes "newest first" cheap: an FTS5 query walks its hits by descending rowid and stops at the
  limit (PERF-NOTES: newest 100 of 34k hits in 0.3 ms, against 55 ms to rank them), and a time
  range is a rowid range, in the FTS5 index and in every secondary index (SQLite appends the rowid
  to each index entry, so ``level = ? AND ts BETWEEN ? AND ? ORDER BY ts DESC`` is one index range
  read backwards). The price: ``ts`` must be unique, so a record whose nanosecond is already taken
  moves on to the next free one (a few ns at most in practice; responses show milliseconds).
- ``logs_fts`` is a contentless FTS5 table (``content=''``) written by a second ``executemany`` in
  the same transaction (a trigger was 2.9x slower). Contentless rather than external-content
  because what it indexes is not a column: it is ``logquery.index_text`` of each text field (the
  tokens, lower-cased, joined by spaces) under the ``ascii`` tokenizer with ``tokenchars '._-'``, so
  that FTS5 sees exactly the tokens ``logquery.matches`` sees. Its columns are
  ``logquery.FTS_COLUMNS``: message, stack_trace, and "meta", which holds the words of level,
  service and the ids (``logquery.meta_text``). Deleting an FTS5 row needs the same
  text again, which ``delete_before`` recomputes from the stored row. ``automerge`` is 16, not
  FTS5's 4: segments are merged when 16 of a level exist rather than 4, so each word's entries are
  rewritten about half as often. Writer microbenchmark (bench/log_write_cost.py, 400k records):
  COMMIT 7.4 -> 5.5 us a record; logs ingest A/B 40.8k -> 44.5k records/s. Searches read more
  segments: over 5M records 10-25% slower (q=database AND error 5.8 -> 6.5 ms, a one-hour
  level + service page 8.4 -> 9.5 ms), far inside their targets.
- No B-tree index besides time: level, service and the ids are found by their words in the FTS5
  "meta" column (``logquery.to_sql`` puts them in the FTS5 expression; ``where`` then compares
  exactly), newest first like any text search. A page filtered by level and service first shrinks
  its range with the count tables to the buckets that hold the page, so a rare pair or a deep
  page reads few rows. Indexes on level, service and (service, level) were measured and dropped:
  each insert touched one leaf page per distinct key (the pair had a hundred), and the writer
  spent about 9 of its 27 us per record on them. In the store, over 5M records, a one-hour
  level + service page went from 1.4 to 2-3 ms; a count of one level's rows that the count tables
  cannot answer (with an attribute condition, say) reads each row, ~1.7 us a row, as before.
- ``log_counts_hour`` and ``log_counts_minute`` count records per (time bucket, service, level),
  kept by the writer (a few upserts per batch): a page's total is a sum of whole hours, whole
  minutes at the edges and the rows of the two partial minutes, instead of a count over millions
  of rows.
- Empty strings are stored as ``''`` (never NULL, so a compiled query is never NULL-valued);
  empty labels and attributes as NULL.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from itertools import repeat
from operator import attrgetter, floordiv, itemgetter
from typing import Any, ClassVar

import orjson
from airisd_plugins.outputs.sqlite.base import SignalStore

from airisd.errors import PermanentError
from airisd.logquery import (
    FTS_COLUMNS,
    META_FIELDS,
    And,
    Kind,
    Match,
    Node,
    Not,
    SqlFilter,
    fts_text,
    index_text,
    meta_text,
    to_sql,
)
from airisd.model import LogRecord
from airisd.timeparse import MAX_TS_NS, NS_PER_S

_FIELDS = ("ts", "level", "service", "message", "trace_id", "span_id", "user_id", "request_id", "stack_trace",
           "labels", "attributes")  # fmt: skip
_COLUMNS = ", ".join("l." + c for c in _FIELDS)
_INSERT = f"INSERT INTO logs({', '.join(_FIELDS)}) VALUES ({', '.join('?' * len(_FIELDS))})"
_FTS_LIST = ", ".join(FTS_COLUMNS)
_FTS_MARKS = ", ".join("?" * len(FTS_COLUMNS))
_INSERT_FTS = f"INSERT INTO logs_fts(rowid, {_FTS_LIST}) VALUES (?, {_FTS_MARKS})"
_DELETE_FTS = f"INSERT INTO logs_fts(logs_fts, rowid, {_FTS_LIST}) VALUES ('delete', ?, {_FTS_MARKS})"
_SELECT_OLD = ", ".join(("ts", "message", "stack_trace", *META_FIELDS))
_SELECT_FTS = f"SELECT {_SELECT_OLD} FROM logs WHERE ts < ? ORDER BY ts LIMIT ?"
# write() and delete_before() build the index rows field by field, in this order.
assert FTS_COLUMNS == ("message", "stack_trace", "meta")
assert META_FIELDS == ("level", "service", "trace_id", "span_id", "user_id", "request_id")
# The hits of an FTS5 query in a rowid (= time) range, each joined to its row.
_FTS_JOIN = ("FROM logs_fts CROSS JOIN logs AS l ON l.ts = logs_fts.rowid "
             "WHERE logs_fts MATCH ? AND logs_fts.rowid >= ? AND logs_fts.rowid <= ?")  # fmt: skip
_DELETE_CHUNK = 10_000
# Counts per (time bucket, service, level), coarse then fine: a page's total is a sum over whole
# hours, then whole minutes at the edges, then the rows of the partial minutes at the ends.
_COUNT_TABLES = (("log_counts_hour", 3600 * NS_PER_S), ("log_counts_minute", 60 * NS_PER_S))
_UPSERT_COUNT = "INSERT INTO {table}(bucket, service, level, n) VALUES (?, ?, ?, ?) " \
                "ON CONFLICT DO UPDATE SET n = n + excluded.n"  # fmt: skip
_PROBE_WINDOW = 4096


_BY_TS = attrgetter("ts")


def _json(d: dict[str, Any]) -> str | None:
    if not d:
        return None
    try:
        return orjson.dumps(d).decode()  # the usual: string keys, plain values
    except (orjson.JSONEncodeError, TypeError):
        pass
    try:
        return orjson.dumps(d, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except (orjson.JSONEncodeError, TypeError):
        # Integers beyond 64 bits: keep them, as text.
        return orjson.dumps(_sanitize(d), default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def _sanitize(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _sanitize(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_sanitize(x) for x in v]
    if isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**64:
        return str(v)
    return v


# prepare()'s result: the logs rows and their FTS rows, oldest first, and each count table's upserts.
PreparedLogs = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[list[tuple[Any, ...]]]]


def _counts(rows: list[tuple[Any, ...]] | list[list[Any]]) -> list[list[tuple[Any, ...]]]:
    """(bucket, service, level, n) for each count table, from logs rows (ts, level, service, ...).
    The finest table is counted from the rows, each coarser one from it (its sizes divide)."""
    finest = _COUNT_TABLES[-1][1]
    counts = Counter(zip(map(floordiv, map(itemgetter(0), rows), repeat(finest)),
                         map(itemgetter(2), rows), map(itemgetter(1), rows), strict=True))  # fmt: skip
    out = [[(*k, n) for k, n in counts.items()]]
    for _, size in reversed(_COUNT_TABLES[:-1]):
        coarser: Counter[tuple[Any, ...]] = Counter()
        for (bucket, service, level), n in counts.items():
            coarser[bucket // (size // finest), service, level] += n
        counts = coarser
        out.insert(0, [(*k, n) for k, n in counts.items()])
    return out


def _record(row: tuple[Any, ...]) -> LogRecord:
    ts, level, service, message, trace_id, span_id, user_id, request_id, stack_trace, labels, attrs = row
    return LogRecord(
        ts=ts,
        level=level,
        message=message,
        service=service,
        trace_id=trace_id,
        span_id=span_id,
        labels=orjson.loads(labels) if labels else {},
        stack_trace=stack_trace,
        user_id=user_id,
        request_id=request_id,
        attributes=orjson.loads(attrs) if attrs else {},
    )


def _with_filters(query: Node | None, level: str | None, service: str | None) -> Node | None:
    """The ``level``/``service`` parameters mean what ``level:``/``service:`` mean in a query."""
    parts: list[Node] = []
    if query is not None:
        parts.extend(query.children if isinstance(query, And) else (query,))
    if level:
        parts.append(Match("level", level, Kind.TERM))
    if service:
        parts.append(Match("service", service, Kind.TERM))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def _level_service_only(node: Node | None) -> bool:
    """Whether a query's compiled ``where`` names only level and service, so that the count
    tables (which have those columns and the same collation) can answer it."""
    if node is None:
        return True
    if isinstance(node, Match):
        return node.field in ("level", "service")
    if isinstance(node, Not):
        return _level_service_only(node.child)
    return all(_level_service_only(c) for c in node.children)


class LogStore(SignalStore):
    filename: ClassVar[str] = "logs.db"
    item_type: ClassVar[type] = LogRecord
    prepared_type: ClassVar[Any] = Any  # PreparedLogs, as msgpack arrays
    SCHEMA: ClassVar[str] = """
        CREATE TABLE IF NOT EXISTS logs (
            ts          INTEGER PRIMARY KEY,    -- ns since epoch, unique
            level       TEXT NOT NULL COLLATE NOCASE,
            service     TEXT NOT NULL COLLATE NOCASE,
            message     TEXT NOT NULL,
            trace_id    TEXT NOT NULL COLLATE NOCASE,
            span_id     TEXT NOT NULL COLLATE NOCASE,
            user_id     TEXT NOT NULL COLLATE NOCASE,
            request_id  TEXT NOT NULL COLLATE NOCASE,
            stack_trace TEXT NOT NULL,
            labels      TEXT,                   -- JSON object, NULL when empty
            attributes  TEXT                    -- JSON object, NULL when empty
        );
        DROP INDEX IF EXISTS logs_by_level;  -- older stores have these (see the docstring)
        DROP INDEX IF EXISTS logs_by_service;
        DROP INDEX IF EXISTS logs_by_service_level;
        CREATE TABLE IF NOT EXISTS log_counts_hour (
            bucket  INTEGER NOT NULL,           -- ts // 3600 s
            service TEXT NOT NULL COLLATE NOCASE,
            level   TEXT NOT NULL COLLATE NOCASE,
            n       INTEGER NOT NULL,
            PRIMARY KEY (bucket, service, level)
        ) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS log_counts_minute (
            bucket  INTEGER NOT NULL,           -- ts // 60 s
            service TEXT NOT NULL COLLATE NOCASE,
            level   TEXT NOT NULL COLLATE NOCASE,
            n       INTEGER NOT NULL,
            PRIMARY KEY (bucket, service, level)
        ) WITHOUT ROWID;
        CREATE VIRTUAL TABLE IF NOT EXISTS logs_fts USING fts5(
            message, stack_trace, meta,
            content='', columnsize=0, tokenize="ascii tokenchars '._-'"
        );
        INSERT INTO logs_fts(logs_fts, rank) VALUES('automerge', 16);  -- see the docstring
    """

    def after_open(self, conn: sqlite3.Connection) -> None:
        row = conn.execute("SELECT max(ts) FROM logs").fetchone()
        self._max_ts: int = -1 if row[0] is None else int(row[0])

    def after_rollback(self) -> None:
        self.after_open(self.wconn)

    # -- writer ------------------------------------------------------------------------------
    def _allocate(self, stamps: list[int]) -> list[int]:
        """A unique ts for each of stamps (sorted): the stamp itself, or the next free ns."""
        out: list[int] = []
        prev = -(2**63)
        for t in stamps:
            c = t if t > prev else prev + 1
            out.append(c)
            prev = c
        if out[0] > self._max_ts:  # the usual case: everything is newer than what is stored
            return out
        conn = self.wconn
        probe = [c for c in out if c <= self._max_ts]
        # One seek first: a batch older than the newest row (another client's clock, a backfill)
        # usually falls where nothing is stored; probing each stamp cost ~0.7 ms per 1000.
        if not conn.execute("SELECT EXISTS(SELECT 1 FROM logs WHERE ts >= ? AND ts <= ?)",
                            (probe[0], probe[-1])).fetchone()[0]:
            return out
        sql = "SELECT count(*) FROM logs WHERE ts IN (SELECT value FROM json_each(?))"
        taken = conn.execute(sql, (orjson.dumps(probe).decode(),)).fetchone()[0]
        if not taken:
            return out
        # Slow path: some nanoseconds are taken; walk forward past them, a window of rows at a time.
        used: set[int] = set()
        lo = hi = 0
        window: set[int] = set()
        out = []
        for t in stamps:
            c = t
            while True:
                if not lo <= c < hi:
                    lo, hi = c, c + _PROBE_WINDOW
                    found = conn.execute("SELECT ts FROM logs WHERE ts >= ? AND ts < ?", (lo, hi))
                    window = {r[0] for r in found}
                if c not in used and c not in window:
                    break
                c += 1
            used.add(c)
            out.append(c)
        return out

    def write(self, items: list[LogRecord]) -> None:
        if items:
            self.apply(self.prepare(items))

    def prepare(self, items: list[LogRecord]) -> PreparedLogs:
        """The rows of items, oldest first, with their JSON and index text, and the count upserts
        (no database needed). With a writer process this runs in the daemon: measured with the
        daemon's parsing made cheaper, the writer was the busier side (67% of a core to 34%)."""
        rows = [
            (r.ts, r.level, r.service, r.message, r.trace_id, r.span_id, r.user_id, r.request_id, r.stack_trace,
             _json(r.labels) if r.labels else None, _json(r.attributes) if r.attributes else None)
            for r in sorted(items, key=_BY_TS)
        ]  # fmt: skip
        # rows: ts, level, service, message, trace_id, span_id, user_id, request_id, stack_trace, ...
        fts = [(r[0], fts_text(r[3]), fts_text(r[8]) if r[8] else "", meta_text(r[1], r[2], *r[4:8]))
               for r in rows]  # fmt: skip
        return rows, fts, _counts(rows)

    def apply(self, prepared: PreparedLogs) -> None:
        rows, fts, counts = prepared
        if not rows:
            return
        stamps = [r[0] for r in rows]
        if stamps[-1] > MAX_TS_NS or stamps[0] < -(2**63):
            raise PermanentError(f"log timestamp out of range: {stamps[-1]}")
        unique = self._allocate(stamps)
        if unique != stamps:  # some nanoseconds were taken (rare): the rows move to free ones
            rows = [(t, *r[1:]) for t, r in zip(unique, rows, strict=True)]
            fts = [(t, *f[1:]) for t, f in zip(unique, fts, strict=True)]
            counts = _counts(rows)
            if unique[-1] > MAX_TS_NS:
                raise PermanentError(f"log timestamp out of range: {unique[-1]}")
        conn = self.wconn
        conn.executemany(_INSERT, rows)
        conn.executemany(_INSERT_FTS, fts)
        for (table, _), table_counts in zip(_COUNT_TABLES, counts, strict=True):
            conn.executemany(_UPSERT_COUNT.format(table=table), table_counts)
        self._max_ts = max(self._max_ts, unique[-1])

    def delete_before(self, cutoff_ns: int) -> int:
        """Delete records older than cutoff_ns, index entries too, a chunk per transaction so
        that writers wait at most one chunk."""
        conn = self.wconn
        deleted = 0
        while True:
            conn.execute("BEGIN IMMEDIATE")
            try:
                rows = conn.execute(_SELECT_FTS, (cutoff_ns, _DELETE_CHUNK)).fetchall()
                if rows:
                    conn.executemany(_DELETE_FTS, [
                        (ts, index_text(m), index_text(st), meta_text(*meta)) for ts, m, st, *meta in rows
                    ])  # fmt: skip
                    conn.execute("DELETE FROM logs WHERE ts <= ?", (rows[-1][0],))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            deleted += len(rows)
            if len(rows) < _DELETE_CHUNK:
                break
        if deleted:
            self._trim_counts(cutoff_ns)
        return deleted

    def _trim_counts(self, cutoff_ns: int) -> None:
        """Drop the counts of buckets now empty; recount the bucket that the cutoff cuts."""
        conn = self.wconn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for table, size in _COUNT_TABLES:
                bucket = cutoff_ns // size
                conn.execute(f"DELETE FROM {table} WHERE bucket <= ?", (bucket,))
                recount = (f"INSERT INTO {table}(bucket, service, level, n) "
                           "SELECT ?, service, level, count(*) FROM logs WHERE ts >= ? AND ts < ? "
                           "GROUP BY service, level")  # fmt: skip
                conn.execute(recount, (bucket, bucket * size, (bucket + 1) * size))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- readers (worker threads) ------------------------------------------------------------
    def search(
        self,
        query: Node | None,
        *,
        level: str | None = None,
        service: str | None = None,
        from_ns: int,
        to_ns: int,
        limit: int,
    ) -> list[LogRecord]:
        """Records in [from_ns, to_ns] that match query and the level/service filters, newest first."""
        node = _with_filters(query, level, service)
        f = to_sql(node)
        conn = self.reader()
        try:
            if _level_service_only(node):
                return self._counted_rows(conn, f, from_ns, to_ns, 0, limit, True)
            if f.fts is not None:
                sql = (f"SELECT {_COLUMNS} {_FTS_JOIN} AND {f.where} "
                       "ORDER BY logs_fts.rowid DESC LIMIT ?")  # fmt: skip
                args: tuple[Any, ...] = (f.fts, from_ns, to_ns, *f.params, limit)
            else:
                sql = (f"SELECT {_COLUMNS} FROM logs AS l WHERE l.ts >= ? AND l.ts <= ? AND {f.where} "
                       "ORDER BY l.ts DESC LIMIT ?")  # fmt: skip
                args = (from_ns, to_ns, *f.params, limit)
            return [_record(row) for row in conn.execute(sql, args)]
        finally:
            conn.close()

    def _count_by_buckets(self, conn: sqlite3.Connection, f: SqlFilter, lo: int, hi: int, depth: int = 0,
                          memo: dict[tuple[int, int, int], int] | None = None) -> int:  # fmt: skip
        """Rows in [lo, hi] matching f, whose ``where`` speaks only of level and service: whole
        buckets from the count tables, the rest from the level at the next depth. ``memo``: counts
        already made for this filter (a page counts its total, then its near edge again)."""
        key = (lo, hi, depth)
        if memo is not None and key in memo:
            return memo[key]
        if depth == len(_COUNT_TABLES):
            total = self._count(conn, f, lo, hi)
        else:
            table, size = _COUNT_TABLES[depth]
            first, last = -(-lo // size), (hi + 1) // size - 1  # the buckets wholly inside [lo, hi]
            if first > last:
                return self._count_by_buckets(conn, f, lo, hi, depth + 1, memo)
            sql = f"SELECT sum(l.n) FROM {table} AS l WHERE l.bucket >= ? AND l.bucket <= ? AND {f.where}"
            total = int(conn.execute(sql, (first, last, *f.params)).fetchone()[0] or 0)
            if lo < first * size:
                total += self._count_by_buckets(conn, f, lo, first * size - 1, depth + 1, memo)
            if hi >= (last + 1) * size:
                total += self._count_by_buckets(conn, f, (last + 1) * size, hi, depth + 1, memo)
        if memo is not None:
            memo[key] = total
        return total

    def _count(self, conn: sqlite3.Connection, f: SqlFilter, from_ns: int, to_ns: int) -> int:
        if f.fts is not None and f.where == "1":
            sql = "SELECT count(*) FROM logs_fts WHERE logs_fts MATCH ? AND rowid >= ? AND rowid <= ?"
            args: tuple[Any, ...] = (f.fts, from_ns, to_ns)
        elif f.fts is not None:
            sql = f"SELECT count(*) {_FTS_JOIN} AND {f.where}"
            args = (f.fts, from_ns, to_ns, *f.params)
        else:
            sql = f"SELECT count(*) FROM logs AS l WHERE l.ts >= ? AND l.ts <= ? AND {f.where}"
            args = (from_ns, to_ns, *f.params)
        return int(conn.execute(sql, args).fetchone()[0])

    def count(self, query: Node | None, from_ns: int, to_ns: int) -> int:
        """How many records in [from_ns, to_ns] match query (the alert role's log rules)."""
        conn = self.reader()
        try:
            f = to_sql(query)
            if _level_service_only(query):
                return self._count_by_buckets(conn, f, from_ns, to_ns)
            return self._count(conn, f, from_ns, to_ns)
        finally:
            conn.close()

    def page(
        self,
        *,
        page: int,
        size: int,
        sort_desc: bool = True,
        level: str | None = None,
        service: str | None = None,
        from_ns: int,
        to_ns: int,
    ) -> tuple[int, list[LogRecord]]:
        """Page ``page`` (from 1) of ``size`` records in time order, and the total that match."""
        if page < 1 or size < 1:
            raise ValueError(f"page and size start at 1, got page={page} size={size}")
        f = to_sql(_with_filters(None, level, service))
        conn = self.reader()
        try:
            memo: dict[tuple[int, int, int], int] = {}
            total = self._count_by_buckets(conn, f, from_ns, to_ns, memo=memo)
            offset = (page - 1) * size
            if offset >= total:
                return total, []
            return total, self._counted_rows(conn, f, from_ns, to_ns, offset, size, sort_desc, memo)
        finally:
            conn.close()

    def _counted_rows(self, conn: sqlite3.Connection, f: SqlFilter, lo: int, hi: int, offset: int, size: int,
                      desc: bool, memo: dict[tuple[int, int, int], int] | None = None
                      ) -> list[LogRecord]:  # fmt: skip
        """Rows offset..offset+size of [lo, hi] in time order, for a filter on level and service only
        (the count tables know how many rows each bucket holds): the range shrinks to the buckets
        that hold the page, and the FTS5 index's words of level and service find the candidates."""
        lo, hi, offset = self._narrow(conn, f, lo, hi, offset, size, desc, memo)
        order = "DESC" if desc else "ASC"
        if f.fts is not None:
            sql = f"SELECT {_COLUMNS} {_FTS_JOIN} AND {f.where} ORDER BY logs_fts.rowid {order} LIMIT ? OFFSET ?"
            args: tuple[Any, ...] = (f.fts, lo, hi, *f.params, size, offset)
        else:  # no filter, or one whose values have no words: the rows of the range, in order
            sql = (f"SELECT {_COLUMNS} FROM logs AS l WHERE l.ts >= ? AND l.ts <= ? AND {f.where} "
                   f"ORDER BY l.ts {order} LIMIT ? OFFSET ?")  # fmt: skip
            args = (lo, hi, *f.params, size, offset)
        return [_record(row) for row in conn.execute(sql, args)]

    def _narrow(self, conn: sqlite3.Connection, f: SqlFilter, lo: int, hi: int, offset: int, size: int,
                desc: bool, memo: dict[tuple[int, int, int], int] | None = None
                ) -> tuple[int, int, int]:  # fmt: skip
        """A range and offset that select the same rows as offset..offset+size of [lo, hi].

        Coarse buckets then fine, walked in page order from the near end: the near bound moves to
        the bucket that holds the page's first row (the rows it passes come off the offset), the far
        bound to the bucket that holds its last. Without it a sparse filter (a rare level of one
        service) or a deep page would scan every row of the range from the near end."""
        for table, bsize in _COUNT_TABLES:
            first, last = -(-lo // bsize), (hi + 1) // bsize - 1  # the buckets wholly inside [lo, hi]
            if first > last:
                continue
            if desc:  # rows in the partial bucket at the near end come first
                near = ((last + 1) * bsize, hi) if hi >= (last + 1) * bsize else None
            else:
                near = (lo, first * bsize - 1) if lo < first * bsize else None
            seen = self._count_by_buckets(conn, f, *near, memo=memo) if near else 0
            skipped = 0
            sql = (f"SELECT l.bucket, sum(l.n) FROM {table} AS l WHERE l.bucket >= ? AND l.bucket <= ? "
                   f"AND {f.where} GROUP BY l.bucket ORDER BY l.bucket {'DESC' if desc else 'ASC'}")  # fmt: skip
            for bucket, n in conn.execute(sql, (first, last, *f.params)):
                if seen <= offset:  # every row before this bucket comes before the page
                    skipped = seen
                    if desc:
                        hi = (bucket + 1) * bsize - 1
                    else:
                        lo = bucket * bsize
                seen += n
                if seen >= offset + size:  # the page ends in this bucket
                    if desc:
                        lo = max(lo, bucket * bsize)
                    else:
                        hi = min(hi, (bucket + 1) * bsize - 1)
                    break
            offset -= skipped
        return lo, hi, offset

    def count_all(self) -> int:
        conn = self.reader()
        try:
            return int(conn.execute("SELECT count(*) FROM logs").fetchone()[0])
        finally:
            conn.close()

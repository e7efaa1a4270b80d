"""Metric points in SQLite: a series table and a points table keyed by (series, time).

Layout, measured in PERF-NOTES: ``points`` is a WITHOUT ROWID table whose primary key is
(series_id, ts), so one series' range is one contiguous B-tree scan and there is no second index
to maintain (~340k rows/s against ~318k with a rowid table plus index). A second sample for the same
series and nanosecond replaces the first (last write wins, as in Prometheus and VictoriaMetrics).
Series ids are cached in memory by the writer.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
from airisd_plugins.outputs.sqlite.base import SignalStore

from airisd.model import Point

AGGREGATIONS = ("avg", "min", "max", "sum", "count", "last")


# prepare()'s result: distinct series (key, name, labels JSON), and (series index, ts, value) a point.
PreparedPoints = tuple[list[tuple[str, str, str]], list[tuple[int, int, float]]]


def series_key(name: str, labels: dict[str, str]) -> str:
    """Canonical identity of a series: name plus labels sorted by key."""
    if not labels:
        return name
    return name + "\x00" + orjson.dumps(labels, option=orjson.OPT_SORT_KEYS).decode()


@dataclass(frozen=True)
class Series:
    id: int
    name: str
    labels: dict[str, str]


class MetricStore(SignalStore):
    filename: ClassVar[str] = "metrics.db"
    item_type: ClassVar[type] = Point
    prepared_type: ClassVar[Any] = Any  # PreparedPoints, as msgpack arrays
    SCHEMA: ClassVar[str] = """
        CREATE TABLE IF NOT EXISTS series (
            id      INTEGER PRIMARY KEY,
            name    TEXT NOT NULL,
            labels  TEXT NOT NULL,          -- JSON object, keys sorted
            key     TEXT NOT NULL UNIQUE
        );
        CREATE INDEX IF NOT EXISTS series_by_name ON series(name);
        CREATE TABLE IF NOT EXISTS points (
            series_id INTEGER NOT NULL,
            ts        INTEGER NOT NULL,     -- ns since epoch
            value     REAL NOT NULL,
            PRIMARY KEY (series_id, ts)
        ) WITHOUT ROWID;
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._index: dict[str, tuple[list[Series], dict[tuple[str, str], list[Series]]]] = {}
        self._index_max_id = 0
        self._index_lock = threading.Lock()
        # (name, labels as sent) -> (key, name, labels JSON): skips sorting the labels of a series
        # seen before (prepare() may run where the database is not open).
        self._prep_keys: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[str, str, str]] = {}

    def after_open(self, conn: sqlite3.Connection) -> None:
        self._series_ids: dict[str, int] = {k: i for i, k in conn.execute("SELECT id, key FROM series")}

    def after_rollback(self) -> None:
        self.after_open(self.wconn)

    # -- writer ------------------------------------------------------------------------------
    def write(self, items: list[Point]) -> None:
        if items:
            self.apply(self.prepare(items))

    def prepare(self, items: list[Point]) -> PreparedPoints:
        """The distinct series of items (canonical key, name, labels JSON) and each point as
        (index of its series, ts, value). No database needed: with a writer process it runs in
        the daemon, and the writer maps a few distinct keys to ids instead of decoding every
        point's labels."""
        keys = self._prep_keys
        series: list[tuple[str, str, str]] = []
        index: dict[tuple[str, str, str], int] = {}
        # Points of one series from one request share their labels dict (the batch decoder makes
        # one per series): within this call, (name, that dict's identity) finds the series index
        # without hashing the labels again.
        by_dict: dict[tuple[str, int], int] = {}
        rows: list[tuple[int, int, float]] = []
        append = rows.append
        for p in items:
            dkey = (p.name, id(p.labels))
            i = by_dict.get(dkey)
            if i is None:
                fkey = (p.name, tuple(p.labels.items()))
                s = keys.get(fkey)
                if s is None:
                    labels = orjson.dumps(p.labels, option=orjson.OPT_SORT_KEYS).decode()
                    s = (series_key(p.name, p.labels), p.name, labels)
                    if len(keys) >= 1_000_000:  # bounded: a label with unbounded values must not grow it forever
                        keys.clear()
                    keys[fkey] = s
                i = index.get(s)
                if i is None:
                    i = index[s] = len(series)
                    series.append(s)
                by_dict[dkey] = i
            append((i, p.ts, p.value))
        return series, rows

    def apply(self, prepared: PreparedPoints) -> None:
        series, rows = prepared
        conn = self.wconn
        ids = self._series_ids
        sids: list[int] = []
        for key, name, labels in series:
            sid = ids.get(key)
            if sid is None:
                cur = conn.execute("INSERT INTO series(name, labels, key) VALUES (?, ?, ?)", (name, labels, key))
                sid = ids[key] = cur.lastrowid  # type: ignore[assignment]
            sids.append(sid)  # type: ignore[arg-type]
        conn.executemany("INSERT OR REPLACE INTO points(series_id, ts, value) VALUES (?, ?, ?)",
                         [(sids[i], ts, value) for i, ts, value in rows])

    def delete_before(self, cutoff_ns: int) -> int:
        conn = self.wconn
        deleted = 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            for (sid,) in conn.execute("SELECT id FROM series").fetchall():
                deleted += conn.execute("DELETE FROM points WHERE series_id = ? AND ts < ?", (sid, cutoff_ns)).rowcount
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return deleted

    # -- readers (worker threads) ------------------------------------------------------------
    def find_series(self, conn: sqlite3.Connection, name: str, matchers: dict[str, str]) -> list[Series]:
        """Series of ``name`` whose labels hold every matcher, from an in-memory inverted index
        (name -> series, (label, value) -> series) kept up to date from the committed rows: the
        alert role asks this once per rule per round, so it must not re-read the series table."""
        index = self._series_index(conn)
        entry = index.get(name)
        if entry is None:
            return []
        every, postings = entry
        if not matchers:
            return list(every)
        lists = [postings.get(item, ()) for item in matchers.items()]
        smallest = min(lists, key=len)
        return [s for s in smallest if all(s.labels.get(k) == v for k, v in matchers.items())]

    def _series_index(
        self, conn: sqlite3.Connection
    ) -> dict[str, tuple[list[Series], dict[tuple[str, str], list[Series]]]]:
        # Series rows are never updated or deleted, and readers only see committed ids, so new
        # series are exactly the rows above the highest id indexed so far.
        with self._index_lock:
            rows = conn.execute("SELECT id, name, labels FROM series WHERE id > ? ORDER BY id",
                                (self._index_max_id,)).fetchall()
            for sid, name, labels_json in rows:
                series = Series(sid, name, orjson.loads(labels_json))
                every, postings = self._index.setdefault(name, ([], {}))
                every.append(series)
                for item in series.labels.items():
                    postings.setdefault(item, []).append(series)
                self._index_max_id = sid
            return self._index

    def query_points(
        self, name: str, matchers: dict[str, str], from_ns: int, to_ns: int, limit: int
    ) -> tuple[list[tuple[Series, list[tuple[int, float]]]], bool]:
        """Raw points per series in [from, to], oldest first; the bool says whether limit cut it."""
        conn = self.reader()
        try:
            out = []
            remaining = limit
            truncated = False
            for s in self.find_series(conn, name, matchers):
                rows = conn.execute(
                    "SELECT ts, value FROM points WHERE series_id = ? AND ts >= ? AND ts <= ? ORDER BY ts LIMIT ?",
                    (s.id, from_ns, to_ns, remaining + 1),
                ).fetchall()
                if len(rows) > remaining:
                    rows = rows[:remaining]
                    truncated = True
                if rows:
                    out.append((s, rows))
                remaining -= len(rows)
                if truncated:  # with the limit used up, one more row in a later series still truncates
                    break
            return out, truncated
        finally:
            conn.close()

    def query_buckets(
        self, name: str, matchers: dict[str, str], from_ns: int, to_ns: int, step_ns: int
    ) -> list[tuple[Series, list[tuple[int, float, float, float, float, int]]]]:
        """Per series: (bucket start, avg, min, max, sum, count) for every non-empty bucket. Buckets
        are aligned to multiples of step since the epoch, as Prometheus and InfluxDB align them."""
        conn = self.reader()
        try:
            out = []
            for s in self.find_series(conn, name, matchers):
                rows = conn.execute(
                    "SELECT ts - (ts % ?1) AS b, avg(value), min(value), max(value), sum(value), count(*) "
                    "FROM points WHERE series_id = ?2 AND ts >= ?3 AND ts <= ?4 GROUP BY b ORDER BY b",
                    (step_ns, s.id, from_ns, to_ns),
                ).fetchall()
                if rows:
                    out.append((s, rows))
            return out
        finally:
            conn.close()

    def aggregate(
        self, name: str, matchers: dict[str, str], from_ns: int, to_ns: int, aggregation: str
    ) -> float | None:
        """One value over every matching series in [from, to]; None when there are no points."""
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation {aggregation!r} is not one of {', '.join(AGGREGATIONS)}")
        conn = self.reader()
        try:
            ids = [s.id for s in self.find_series(conn, name, matchers)]
            if not ids:
                return None
            marks = ",".join("?" * len(ids))
            where = f"series_id IN ({marks}) AND ts >= ? AND ts <= ?"
            args = (*ids, from_ns, to_ns)
            if aggregation == "last":
                row = conn.execute(f"SELECT value FROM points WHERE {where} ORDER BY ts DESC LIMIT 1", args).fetchone()
                return None if row is None else float(row[0])
            fn = {"avg": "avg(value)", "min": "min(value)", "max": "max(value)", "sum": "sum(value)",
                  "count": "count(*)"}[aggregation]
            row = conn.execute(f"SELECT {fn}, count(*) FROM points WHERE {where}", args).fetchone()
            if row is None or row[1] == 0:
                return None
            value = float(row[0])
            return value if math.isfinite(value) else None
        finally:
            conn.close()

    def list_series(
        self, from_ns: int, to_ns: int, *, name: str | None, offset: int, limit: int
    ) -> tuple[int, list[Series]]:
        """Series that have at least one point in [from, to], ordered by name then labels."""
        conn = self.reader()
        try:
            if name:
                candidates = conn.execute(
                    "SELECT id, name, labels FROM series WHERE name = ? ORDER BY name, labels", (name,)).fetchall()
            else:
                candidates = conn.execute("SELECT id, name, labels FROM series ORDER BY name, labels").fetchall()
            seen = [
                (sid, n, labels)
                for sid, n, labels in candidates
                if conn.execute(
                    "SELECT 1 FROM points WHERE series_id = ? AND ts >= ? AND ts <= ? LIMIT 1", (sid, from_ns, to_ns)
                ).fetchone()
            ]
            page = [Series(sid, n, orjson.loads(labels)) for sid, n, labels in seen[offset : offset + limit]]
            return len(seen), page
        finally:
            conn.close()

    def count_points(self) -> int:
        conn = self.reader()
        try:
            return int(conn.execute("SELECT count(*) FROM points").fetchone()[0])
        finally:
            conn.close()

"""Batches to column-oriented INSERTs, and ClickHouse errors to our TransientError/PermanentError.

Rows are turned into columns here (one list per column, what clickhouse-connect encodes to the
Native format fastest). ``date`` is left to the server's DEFAULT toDate(timestamp).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

import orjson

from airisd.errors import PermanentError, TransientError
from airisd.logquery import tokenize
from airisd.model import LogRecord, Point, Signal, Span
from airisd.traceformats import stringify_tag

# ClickHouse error codes that retrying the same INSERT cannot fix: bad data, bad SQL, auth.
PERMANENT_CODES = frozenset({
    6, 26, 27, 32, 33, 36, 38, 41, 42, 43, 44, 46, 47, 53, 62, 69, 70, 72, 117, 252, 321, 403, 456, 457,
    192, 193, 194, 195, 516, 497, 164,  # unknown user, wrong password, access denied, readonly
})
# The tables or database are gone (someone dropped them): migrate again, then retry.
SCHEMA_GONE_CODES = frozenset({60, 81})

# (column, type) as in schema.py: handing the types to insert() spares a DESCRIBE per batch.
TS_TYPE = "DateTime64(9, 'UTC')"
STR, LSTR, MAP, TOKENS = "String", "LowCardinality(String)", "Map(String, String)", "Array(String)"
METRIC_COLUMNS = [("name", LSTR), ("labels", MAP), ("series", "UInt64"), ("timestamp", TS_TYPE), ("value", "Float64")]
LOG_COLUMNS = [("timestamp", TS_TYPE), ("level", LSTR), ("service", LSTR), ("message", STR), ("trace_id", STR),
               ("span_id", STR), ("labels", MAP), ("stack_trace", STR), ("user_id", STR), ("request_id", STR),
               ("attributes", MAP), ("attributes_json", STR), ("message_tokens", TOKENS), ("stack_tokens", TOKENS),
               ("meta_tokens", TOKENS)]
SPAN_COLUMNS = [("trace_id", STR), ("span_id", STR), ("parent_span_id", STR), ("operation_name", LSTR),
                ("service_name", LSTR), ("start_time", TS_TYPE), ("end_time", TS_TYPE), ("duration_ns", "Int64"),
                ("kind", LSTR), ("error", "Bool"), ("tags", MAP), ("logs", STR), ("tags_json", STR)]
TABLE_OF = {Signal.METRICS: "metrics", Signal.LOGS: "logs", Signal.TRACES: "spans"}


def series_id(key: str) -> int:
    """A stable 64-bit id for a series key (the same in every process and release)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


def series_key(name: str, labels: dict[str, str]) -> str:
    """Canonical identity of a series: name plus labels sorted by key (as the SQLite store's)."""
    if not labels:
        return name
    return name + "\x00" + orjson.dumps(labels, option=orjson.OPT_SORT_KEYS).decode()


class SeriesIds:
    """(name, labels as sent) -> series id, cached: hashing the sorted key once per series."""

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self._ids: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        self.max_entries = max_entries

    def get(self, name: str, labels: dict[str, str]) -> int:
        fkey = (name, tuple(labels.items()))
        sid = self._ids.get(fkey)
        if sid is None:
            sid = series_id(series_key(name, labels))
            if len(self._ids) < self.max_entries:
                self._ids[fkey] = sid
        return sid


def metric_columns(items: list[Point], ids: SeriesIds) -> list[list[Any]]:
    """Columns for the metrics table. A repeated (series, ns) in one batch keeps the last value, so
    the block holds one row per key, as FINAL would leave it."""
    rows: dict[tuple[int, int], tuple[str, dict[str, str], float]] = {}
    for p in items:
        sid = ids.get(p.name, p.labels)
        rows[(sid, p.ts)] = (p.name, p.labels, p.value)
    cols: list[list[Any]] = [[], [], [], [], []]
    names, labels, series, ts, values = cols
    for (sid, t), (name, lab, value) in rows.items():
        names.append(name)
        labels.append(lab)
        series.append(sid)
        ts.append(t)
        values.append(value)
    return cols


def _str_map(d: dict[str, Any]) -> dict[str, str]:
    return {k: v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in d.items()}


def attributes_json(d: dict[str, Any]) -> str:
    """Attributes as JSON, types kept (what log search compares by); integers beyond 64 bits as
    text, non-finite floats as null, as the SQLite store keeps them."""
    if not d:
        return ""
    try:
        return orjson.dumps(d, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except (orjson.JSONEncodeError, TypeError):
        return orjson.dumps(_sanitize(d), default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def _sanitize(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _sanitize(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_sanitize(x) for x in v]
    if isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**64:
        return str(v)
    return v


@lru_cache(maxsize=4096)
def _meta_head(level: str, service: str) -> tuple[str, ...]:  # levels and service names repeat
    return (*tokenize(level), ".", *tokenize(service), ".")


def meta_tokens(r: LogRecord) -> list[str]:
    """The six short fields' tokens, each field's run ended by "." (no query token is ".")."""
    out = list(_meta_head(r.level, r.service))
    for value in (r.trace_id, r.span_id, r.user_id, r.request_id):
        if value:
            out += tokenize(value)
        out.append(".")
    return out


def log_columns(items: list[LogRecord]) -> list[list[Any]]:
    return [
        [r.ts for r in items], [r.level for r in items], [r.service for r in items], [r.message for r in items],
        [r.trace_id for r in items], [r.span_id for r in items], [r.labels for r in items],
        [r.stack_trace for r in items], [r.user_id for r in items], [r.request_id for r in items],
        [_str_map(r.attributes) for r in items], [attributes_json(r.attributes) for r in items],
        [tokenize(r.message) for r in items], [tokenize(r.stack_trace) if r.stack_trace else [] for r in items],
        [meta_tokens(r) for r in items],
    ]


def span_columns(items: list[Span]) -> list[list[Any]]:
    """``tags`` holds each value as tag filters compare it (stringify_tag), ``tags_json`` as sent."""
    return [
        [s.trace_id for s in items], [s.span_id for s in items], [s.parent_span_id for s in items],
        [s.operation_name for s in items], [s.service_name for s in items], [s.start_ts for s in items],
        [s.end_ts for s in items], [s.end_ts - s.start_ts for s in items], [s.kind for s in items],
        [s.error for s in items], [{k: stringify_tag(v) for k, v in s.tags.items()} for s in items],
        [orjson.dumps([{"ts": lg.ts, "message": lg.message, "fields": lg.fields} for lg in s.logs]).decode()
         if s.logs else "" for s in items],
        [orjson.dumps(s.tags).decode() if s.tags else "" for s in items],
    ]


def columns_for(signal: Signal, items: list[Any], ids: SeriesIds
                ) -> tuple[str, list[str], list[str], list[list[Any]]]:
    """(table, column names, column types, columns) for one batch."""
    if signal is Signal.METRICS:
        spec, cols = METRIC_COLUMNS, metric_columns(items, ids)
    elif signal is Signal.LOGS:
        spec, cols = LOG_COLUMNS, log_columns(items)
    else:
        spec, cols = SPAN_COLUMNS, span_columns(items)
    return TABLE_OF[signal], [n for n, _ in spec], [t for _, t in spec], cols


def classify(exc: BaseException, what: str) -> TransientError | PermanentError:
    """Map a clickhouse-connect (or transport) error to ours: connection refused, timeouts, 5xx
    and unknown server errors are transient; bad data, bad SQL and auth are permanent."""
    # Imported here: loading the plugin must not load the client library (the daemon's idle memory).
    from clickhouse_connect.driver.exceptions import ClickHouseError, DatabaseError, OperationalError

    message = f"clickhouse {what}: {type(exc).__name__}: {exc}"
    if isinstance(exc, OperationalError):  # connection refused/reset, timeouts, 429/503/504
        return TransientError(message)
    if isinstance(exc, DatabaseError) and exc.code in PERMANENT_CODES:
        return PermanentError(message, details={"code": exc.code, "name": exc.name})
    if isinstance(exc, (ClickHouseError, OSError)):
        return TransientError(message, details={"code": getattr(exc, "code", None)})
    if isinstance(exc, (TypeError, ValueError, OverflowError)):  # a value the encoder rejects
        return PermanentError(message)
    return TransientError(message)


def schema_gone(exc: BaseException) -> bool:
    from clickhouse_connect.driver.exceptions import DatabaseError

    return isinstance(exc, DatabaseError) and exc.code in SCHEMA_GONE_CODES

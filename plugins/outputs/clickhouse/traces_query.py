"""The trace role's queries answered from ClickHouse, with the SQLite TraceStore's methods and
return shapes (get_trace, get_traces, find_trace_ids, search, services, operations,
operation_kinds) and Jaeger's search semantics: a trace matches when ONE of its spans satisfies
every condition; traces come newest matching span first.

Tag filters run in SQL: the ``tags`` map holds each value as a filter compares it
(``traceformats.stringify_tag``), and a key missing on the span falls back to ``resource.<key>``,
as ``traceformats.tags_match`` does; ``error`` tests the span's error flag. Spans are read back
from ``tags_json`` with their types. A span id stored twice (re-delivery) is returned once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
from airisd_plugins.outputs.clickhouse.writer import classify

from airisd.errors import PermanentError, TransientError
from airisd.model import Span, SpanLog
from airisd.traceformats import ID_PATTERN, RESOURCE_PREFIX, trace_summary

_decode_tags = msgspec.json.Decoder(dict[str, str | int | float | bool]).decode
_decode_logs = msgspec.json.Decoder(list[SpanLog]).decode
_SPAN = ("trace_id, span_id, parent_span_id, service_name, operation_name, kind, toUnixTimestamp64Nano(start_time), "
         "toUnixTimestamp64Nano(end_time), error")


class ClickHouseTraceStore:
    """Reads the ``spans`` table; methods as the SQLite TraceStore's."""

    def __init__(self, client_factory: Any, database: str) -> None:
        self._client_factory = client_factory
        self.table = f"`{database}`.spans"

    def _rows(self, sql: str, params: dict[str, Any]) -> list[tuple]:
        try:
            return self._client_factory().query(sql, parameters=params).result_rows
        except (TransientError, PermanentError):
            raise
        except Exception as exc:  # unreachable or failing: TransientError, which the roles answer with 503
            raise classify(exc, "trace query") from exc

    def _spans(self, trace_ids: list[str], *, narrow: bool = False) -> dict[str, list[Span]]:
        ids = [t for t in trace_ids if ID_PATTERN.fullmatch(t)]
        if not ids:
            return {}
        cols = _SPAN if narrow else _SPAN + ", tags_json, logs"
        rows = self._rows(f"SELECT {cols} FROM {self.table} WHERE trace_id IN {{ids:Array(String)}}", {"ids": ids})
        by_trace: dict[str, dict[str, Span]] = {}
        for r in rows:
            span = Span(trace_id=r[0], span_id=r[1], parent_span_id=r[2], service_name=r[3], operation_name=r[4],
                        kind=r[5], start_ts=int(r[6]), end_ts=int(r[7]), error=bool(r[8]),
                        tags=_decode_tags(r[9]) if not narrow and r[9] else {},
                        logs=_decode_logs(r[10]) if not narrow and r[10] else [])
            by_trace.setdefault(span.trace_id, {})[span.span_id] = span
        out = {}
        for tid in ids:
            if tid in by_trace:
                out[tid] = sorted(by_trace[tid].values(), key=lambda s: (s.start_ts, s.span_id))
        return out

    def get_trace(self, trace_id: str) -> list[Span]:
        """Every span of the trace, ordered by start time; [] if unknown."""
        return self._spans([trace_id]).get(trace_id, [])

    def get_traces(self, trace_ids: Iterable[str]) -> dict[str, list[Span]]:
        """Several traces at once; unknown ids are left out."""
        return self._spans(list(dict.fromkeys(trace_ids)))

    def find_trace_ids(
        self, *, service: str | None = None, operation: str | None = None, from_ns: int | None = None,
        to_ns: int | None = None, min_duration_ns: int | None = None, max_duration_ns: int | None = None,
        tags: Sequence[tuple[str, str]] = (), limit: int = 20,
    ) -> list[str]:
        """Ids of the traces with a span matching every condition, newest matching span first."""
        conds: list[str] = []
        params: dict[str, Any] = {"limit": limit}
        for column, op, value, type_ in (
            ("service_name", "=", service, "String"), ("operation_name", "=", operation, "String"),
            ("toUnixTimestamp64Nano(start_time)", ">=", from_ns, "Int64"),
            ("toUnixTimestamp64Nano(start_time)", "<=", to_ns, "Int64"),
            ("duration_ns", ">=", min_duration_ns, "Int64"), ("duration_ns", "<=", max_duration_ns, "Int64"),
        ):
            if value is not None:
                name = f"c{len(params)}"
                params[name] = value
                conds.append(f"{column} {op} {{{name}:{type_}}}")
        for key, value in tags:
            n = len(params)
            if key == "error":
                if value not in ("true", "false"):
                    return []  # error:maybe: no span has it
                conds.append(f"error = {int(value == 'true')}")
                continue
            params[f"k{n}"], params[f"r{n}"], params[f"v{n}"] = key, RESOURCE_PREFIX + key, value
            conds.append(f"(if(mapContains(tags, {{k{n}:String}}), tags[{{k{n}:String}}] = {{v{n}:String}}, "
                         f"mapContains(tags, {{r{n}:String}}) AND tags[{{r{n}:String}}] = {{v{n}:String}}))")
        where = " AND ".join(conds) or "1"
        rows = self._rows(f"SELECT trace_id, max(start_time) AS newest FROM {self.table} WHERE {where} "
                          "GROUP BY trace_id ORDER BY newest DESC, trace_id LIMIT {limit:UInt64}", params)
        return [r[0] for r in rows]

    def search(
        self, *, service: str | None = None, operation: str | None = None, from_ns: int | None = None,
        to_ns: int | None = None, min_duration_ns: int | None = None, max_duration_ns: int | None = None,
        tags: Sequence[tuple[str, str]] = (), limit: int = 20,
    ) -> list[dict[str, Any]]:
        """Summaries (traceformats.trace_summary) of the matching traces, in find_trace_ids' order."""
        ids = self.find_trace_ids(service=service, operation=operation, from_ns=from_ns, to_ns=to_ns,
                                  min_duration_ns=min_duration_ns, max_duration_ns=max_duration_ns, tags=tags,
                                  limit=limit)
        return self.summaries(ids)

    def summaries(self, trace_ids: Sequence[str]) -> list[dict[str, Any]]:
        spans = self._spans(list(trace_ids), narrow=True)
        return [trace_summary(spans[t]) for t in trace_ids if t in spans]

    def services(self) -> list[str]:
        return [r[0] for r in self._rows(f"SELECT DISTINCT service_name AS s FROM {self.table} ORDER BY s", {})]

    def operations(self, service: str, *, span_kind: str | None = None) -> list[str]:
        """Operation names of a service, optionally only those seen with one span kind."""
        params: dict[str, Any] = {"s": service}
        sql = f"SELECT DISTINCT operation_name AS o FROM {self.table} WHERE service_name = {{s:String}}"
        if span_kind:
            params["k"] = span_kind
            sql += " AND kind = {k:String}"
        return [r[0] for r in self._rows(sql + " ORDER BY o", params)]

    def operation_kinds(self, service: str) -> list[tuple[str, str]]:
        """(operation, span kind) pairs of a service, for Jaeger's ``/api/operations``."""
        rows = self._rows(f"SELECT DISTINCT operation_name AS o, kind AS k FROM {self.table} "
                          "WHERE service_name = {s:String} ORDER BY o, k", {"s": service})
        return [(r[0], r[1]) for r in rows]

    def count_spans(self) -> int:
        return int(self._rows(f"SELECT count() FROM {self.table}", {})[0][0])

"""Jaeger's query-API JSON (``/api/traces`` ``data`` items) back into our Spans: the reverse of
:func:`airisd.traceformats.jaeger_trace`, and what a real Jaeger renders from the OTLP we send.

- times and durations are µs in Jaeger's model, so they come back rounded to the µs;
- process tags become ``resource.<key>`` tags again; the ``span.kind`` tag becomes ``kind``;
- ``airisd.trace_id`` / ``airisd.span_id`` / ``airisd.parent_span_id`` (see :mod:`.otlp`) give the
  ids back in the form the user sent them;
- the error flag is read as :func:`airisd.traceformats.is_error` does; the boolean ``error`` tag
  that Jaeger adds to a span with status ERROR is dropped again, as it only repeats the flag;
- a log's ``event`` field is its message;
- a span id seen twice (a batch delivered twice) gives one span, the last copy, as SQLite does.
"""

from __future__ import annotations

from typing import Any

from airisd_plugins.outputs.jaeger.otlp import ORIGINAL_PARENT_ID, ORIGINAL_SPAN_ID, ORIGINAL_TRACE_ID, STATUS_CODE

from airisd.model import Span, SpanLog
from airisd.traceformats import RESOURCE_PREFIX, SPAN_KINDS, is_error

_TYPES = {"string": str, "bool": bool, "int64": int, "float64": float}


def _value(kv: dict[str, Any]) -> str | int | float | bool:
    value = kv.get("value")
    kind = str(kv.get("type", "string")).lower()
    if kind == "bool":
        return value if isinstance(value, bool) else str(value).lower() == "true"
    if kind == "int64" and isinstance(value, int | str) and not isinstance(value, bool):
        try:
            return int(value)  # Jaeger may send big ints as strings
        except (TypeError, ValueError):
            pass
    if kind == "float64" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str | int | float | bool) and kind in _TYPES:
        return value
    return "" if value is None else str(value)


def _kvs(items: Any) -> dict[str, str | int | float | bool]:
    out: dict[str, str | int | float | bool] = {}
    for kv in items or ():
        if isinstance(kv, dict) and isinstance(kv.get("key"), str):
            out[kv["key"]] = _value(kv)
    return out


def original_trace_id(trace: dict[str, Any]) -> str:
    """The id a Jaeger trace is known by to our users (the original when one was kept)."""
    for span in trace.get("spans") or ():
        for kv in span.get("tags") or ():
            if isinstance(kv, dict) and kv.get("key") == ORIGINAL_TRACE_ID and isinstance(kv.get("value"), str):
                return str(kv["value"])
    return str(trace.get("traceID", ""))


def spans_of(trace: dict[str, Any]) -> list[Span]:
    """The trace's spans, one per span id, ordered by start time (then span id)."""
    processes = trace.get("processes") or {}
    out: list[Span] = []
    for raw in trace.get("spans") or ():
        tags = _kvs(raw.get("tags"))
        process = processes.get(raw.get("processID")) or raw.get("process") or {}
        resource = {RESOURCE_PREFIX + k: v for k, v in _kvs(process.get("tags")).items()}
        trace_id = str(tags.pop(ORIGINAL_TRACE_ID, raw.get("traceID", "")))
        span_id = str(tags.pop(ORIGINAL_SPAN_ID, raw.get("spanID", "")))
        parent = ""
        for ref in raw.get("references") or ():
            if ref.get("refType", "CHILD_OF") == "CHILD_OF" and ref.get("spanID"):
                parent = str(ref["spanID"])
                break
        if not parent and raw.get("parentSpanID"):
            parent = str(raw["parentSpanID"])
        original_parent = tags.pop(ORIGINAL_PARENT_ID, None)
        if parent and original_parent is not None:
            parent = str(original_parent)
        kind = tags.pop("span.kind", "")
        kind = kind.lower() if isinstance(kind, str) and kind.lower() in SPAN_KINDS else ""
        if tags.get("error") is True and tags.get(STATUS_CODE) == "ERROR":
            del tags["error"]
        all_tags = {**resource, **tags}
        logs = []
        for entry in raw.get("logs") or ():
            fields = _kvs(entry.get("fields"))
            message = fields.pop("event", "")
            logs.append(SpanLog(ts=int(entry.get("timestamp", 0)) * 1000, message=str(message), fields=fields))
        start = int(raw.get("startTime", 0)) * 1000
        out.append(Span(
            trace_id=trace_id,
            span_id=span_id,
            parent_span_id=parent,
            operation_name=str(raw.get("operationName", "")),
            service_name=str(process.get("serviceName", "")) or "unknown_service",
            start_ts=start,
            end_ts=start + int(raw.get("duration", 0)) * 1000,
            kind=kind,
            error=is_error(all_tags) or tags.get("error") is True,
            tags=all_tags,
            logs=logs,
        ))
    latest = {s.span_id: s for s in out}  # a span delivered twice (at-least-once) is shown once
    return sorted(latest.values(), key=lambda s: (s.start_ts, s.span_id))

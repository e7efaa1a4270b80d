"""The trace role's store read from Jaeger's HTTP query API: the same methods and return shapes
as the SQLite TraceStore (plugins/outputs/sqlite/traces_store.py), so the role's two APIs (the
seed's and Jaeger's) answer from Jaeger's data unchanged.

Calls are synchronous (the role calls them from worker threads) over one pooled httpx.Client.
A backend that cannot be reached, or answers 5xx, raises TransientError (the role answers 503
STORE_UNAVAILABLE); an unknown trace is [] as in SQLite.

Mapping:

- ``find_trace_ids``/``search`` → ``GET /api/traces?service=&operation=&start=&end=&minDuration=
  &maxDuration=&tags=&limit=`` (start/end in µs, durations as Go durations, tags as a JSON object);
- ``get_trace`` → ``GET /api/traces/{id}`` with the id as it was sent (see
  :func:`~.otlp.wire_trace_id`), then with the id as given if that finds nothing;
- ``services`` → ``/api/services``; ``operations`` and ``operation_kinds`` → ``/api/operations``.

Jaeger needs a service to search: when it refuses a search without one (400), every service is
searched and the newest traces kept.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

import httpx
import orjson
from airisd_plugins.outputs.jaeger.config import redacted
from airisd_plugins.outputs.jaeger.jaeger_json import original_trace_id, spans_of
from airisd_plugins.outputs.jaeger.otlp import wire_trace_id

from airisd.errors import TransientError
from airisd.model import Span
from airisd.traceformats import ID_PATTERN, trace_summary

_MAX_SERVICES_FANOUT = 200


class JaegerQueryStore:
    def __init__(self, base_url: str, *, headers: dict[str, str] | None = None, timeout_secs: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.shown_url = redacted(self.base_url)  # for messages: no user or password
        self._headers = {"Accept": "application/json", **(headers or {})}
        self._timeout = httpx.Timeout(timeout_secs)
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- HTTP ---------------------------------------------------------------------------------
    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(base_url=self.base_url, headers=self._headers, timeout=self._timeout)
            return self._client

    def _get(self, path: str, params: dict[str, Any] | None = None, *, missing_ok: bool = False) -> Any:
        """The ``data`` of a Jaeger answer; None for a 404 when missing_ok."""
        try:
            response = self._http().get(path, params=params)
        except httpx.TransportError as exc:
            raise TransientError(f"jaeger query {self.shown_url}{path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code != 200:
            raise _QueryError(response.status_code, f"jaeger query {path}: HTTP {response.status_code}: "
                              f"{_errors(response)}")
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise TransientError(f"jaeger query {path}: not JSON: {exc}") from exc
        return body.get("data") if isinstance(body, dict) else None

    # -- traces -------------------------------------------------------------------------------
    def get_trace(self, trace_id: str) -> list[Span]:
        """Every span of the trace, ordered by start time; [] if unknown."""
        if ID_PATTERN.fullmatch(trace_id) is None:
            return []
        wire = wire_trace_id(trace_id).hex()
        data = self._get(f"/api/traces/{wire}", missing_ok=True)
        if not data and wire != trace_id:
            # stored by something other than this output (e.g. Zipkin ids, or airisd's own API)
            data = self._get(f"/api/traces/{trace_id}", missing_ok=True)
        return [s for t in data or () if isinstance(t, dict) for s in spans_of(t)]

    def get_traces(self, trace_ids: Iterable[str]) -> dict[str, list[Span]]:
        out = {}
        for tid in dict.fromkeys(trace_ids):
            spans = self.get_trace(tid)
            if spans:
                out[tid] = spans
        return out

    def _search(
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
    ) -> list[tuple[str, list[Span]]]:
        """Matching traces, newest first, as (id, spans)."""
        filters: dict[str, str] = {}
        for key, want in tags:
            if filters.setdefault(key, want) != want:
                return []  # two values for one key: no span can match
        params: dict[str, Any] = {"limit": limit}
        optional = {"operation": operation, "start": _micros(from_ns), "end": _micros(to_ns),
                    "minDuration": _go_duration(min_duration_ns), "maxDuration": _go_duration(max_duration_ns)}
        params.update({k: v for k, v in optional.items() if v is not None})
        if filters:
            params["tags"] = orjson.dumps(filters).decode()
        if service is not None:
            found = self._traces({**params, "service": service})
        else:
            try:
                found = self._traces(params)
            except _QueryError as exc:
                if exc.status != 400:
                    raise
                found = []  # Jaeger wants a service: ask each one
                for name in self.services()[:_MAX_SERVICES_FANOUT]:
                    found += self._traces({**params, "service": name})
                found.sort(key=lambda t: -max(s.start_ts for s in t[1]))
        out: dict[str, list[Span]] = {}
        for tid, spans in found:
            out.setdefault(tid, spans)
        return list(out.items())[:limit]

    def _traces(self, params: dict[str, Any]) -> list[tuple[str, list[Span]]]:
        data = self._get("/api/traces", params)
        out = []
        for trace in data or ():
            if isinstance(trace, dict):
                spans = spans_of(trace)
                if spans:
                    out.append((original_trace_id(trace), spans))
        return out

    def find_trace_ids(self, **query: Any) -> list[str]:
        """Ids of the traces with a span matching every condition, in Jaeger's order."""
        return [tid for tid, _ in self._search(**query)]

    def search(self, **query: Any) -> list[dict[str, Any]]:
        """Summaries of the matching traces (Jaeger's search answers whole traces)."""
        return [trace_summary(spans) for _, spans in self._search(**query)]

    def summaries(self, trace_ids: Sequence[str]) -> list[dict[str, Any]]:
        traces = self.get_traces(trace_ids)
        return [trace_summary(traces[t]) for t in trace_ids if t in traces]

    # -- catalogue ----------------------------------------------------------------------------
    def services(self) -> list[str]:
        return sorted({str(s) for s in self._get("/api/services") or ()})

    def operation_kinds(self, service: str) -> list[tuple[str, str]]:
        """(operation, span kind) pairs of a service."""
        data = self._get("/api/operations", {"service": service})
        pairs = {(str(o.get("name", "")), str(o.get("spanKind") or "")) for o in data or () if isinstance(o, dict)}
        return sorted(pairs)

    def operations(self, service: str, *, span_kind: str | None = None) -> list[str]:
        return sorted({op for op, kind in self.operation_kinds(service) if not span_kind or kind == span_kind})


class _QueryError(TransientError):
    """A non-200 answer of the query API (kept apart so a 400 can trigger the per-service search)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _errors(response: httpx.Response) -> str:
    try:
        body = orjson.loads(response.content)
        return "; ".join(str(e.get("msg", e)) for e in body.get("errors") or ())[:300]
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return response.text[:200]


def _micros(ns: int | None) -> int | None:
    return None if ns is None else ns // 1000


def _go_duration(ns: int | None) -> str | None:
    """A duration as Go's time.ParseDuration reads it (µs precision is what Jaeger keeps)."""
    if ns is None:
        return None
    return f"{ns // 1000}us" if ns % 1000 == 0 else f"{ns}ns"


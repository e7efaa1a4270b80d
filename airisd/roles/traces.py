"""The trace role's query APIs: the seed's (GET /traces/{id}, GET /traces/search) and the Jaeger
query HTTP API that Grafana's Jaeger data source and the Jaeger UI read."""

from __future__ import annotations

import re
from typing import Any

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import Response

from airisd.errors import NotFound, ValidationError
from airisd.http.envelope import ok
from airisd.http.request import Params
from airisd.plugin import Clock, Route
from airisd.traceformats import jaeger_search_query, jaeger_trace, search_query, trace_view

_TRACE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SEARCH_PARAMS = {"service", "operation", "from", "to", "min_duration", "max_duration", "tags", "limit"}
JAEGER_PARAMS = {"service", "operation", "start", "end", "minDuration", "maxDuration", "tags", "limit",
                 "lookback", "spanKind", "traceID"}
MAX_TRACE_IDS = 100  # traces one ?traceID= list may ask for


def _trace_id(raw: str) -> str:
    if not _TRACE_ID.match(raw):
        raise ValidationError("trace_id must be 1 to 64 characters of A-Z, a-z, 0-9, _ or -",
                              details={"field": "trace_id"})
    return raw


def jaeger_response(data: Any, *, status: int = 200, errors: list[dict[str, Any]] | None = None) -> Response:
    """Jaeger's envelope: {"data", "total", "limit", "offset", "errors"}."""
    total = len(data) if isinstance(data, list) else 0
    body = {"data": data, "total": total, "limit": 0, "offset": 0, "errors": errors}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def jaeger_error(status: int, message: str) -> Response:
    return jaeger_response(None, status=status, errors=[{"code": status, "msg": message}])


class TracesQueryApi:
    def __init__(self, store: Any, *, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def routes(self) -> list[Route]:
        # /traces/search before /traces/{trace_id}: routes match in order.
        return [
            Route("GET", "/traces/search", self.search, name="traces_search", scope="read"),
            Route("GET", "/traces/{trace_id}", self.get_trace, name="traces_get", scope="read"),
            Route("GET", "/api/services", self.jaeger_services, name="jaeger_services", scope="read"),
            Route("GET", "/api/services/{service}/operations", self.jaeger_operations_legacy,
                  name="jaeger_service_operations", scope="read"),
            Route("GET", "/api/operations", self.jaeger_operations, name="jaeger_operations", scope="read"),
            Route("GET", "/api/traces", self.jaeger_search, name="jaeger_traces", scope="read"),
            Route("GET", "/api/traces/{trace_id}", self.jaeger_get_trace, name="jaeger_trace", scope="read"),
        ]

    # -- the seed's API ----------------------------------------------------------------------
    async def get_trace(self, request: Request) -> Response:
        trace_id = _trace_id(request.path_params["trace_id"])
        Params(request, set())
        spans = await anyio.to_thread.run_sync(self.store.get_trace, trace_id)
        if not spans:
            raise NotFound(f"trace {trace_id} not found", details={"trace_id": trace_id})
        view = trace_view(spans)
        return ok(request, view, message=f"{len(spans)} spans")

    async def search(self, request: Request) -> Response:
        p = Params(request, SEARCH_PARAMS)
        q = search_query({k: p.get(k) or "" for k in SEARCH_PARAMS})
        results = await anyio.to_thread.run_sync(lambda: self.store.search(**q.as_kwargs()))
        return ok(request, {"count": len(results), "limit": q.limit, "traces": results},
                  message=f"{len(results)} traces")

    # -- Jaeger's query API ------------------------------------------------------------------
    async def jaeger_services(self, request: Request) -> Response:
        services = await anyio.to_thread.run_sync(self.store.services)
        return jaeger_response(services)

    async def jaeger_operations_legacy(self, request: Request) -> Response:
        service = request.path_params["service"]
        ops = await anyio.to_thread.run_sync(lambda: self.store.operations(service))
        return jaeger_response(ops)

    async def jaeger_operations(self, request: Request) -> Response:
        service = request.query_params.get("service", "")
        if not service:
            return jaeger_error(400, "parameter 'service' is required")
        kind = request.query_params.get("spanKind") or None
        pairs = await anyio.to_thread.run_sync(self.store.operation_kinds, service)
        data = [{"name": op, "spanKind": k} for op, k in pairs if kind is None or k == kind]
        return jaeger_response(data)

    async def jaeger_search(self, request: Request) -> Response:
        unknown = sorted(set(request.query_params) - JAEGER_PARAMS)
        if unknown:
            return jaeger_error(400, f"unknown parameter {unknown[0]!r}")
        wanted = request.query_params.getlist("traceID")
        if wanted:
            return await self._jaeger_by_ids(wanted)
        try:
            q = jaeger_search_query({k: v for k, v in request.query_params.items()})
        except ValidationError as exc:
            return jaeger_error(400, exc.message)

        def fetch() -> list[dict[str, Any]]:
            ids = self.store.find_trace_ids(**q.as_kwargs())
            traces = self.store.get_traces(ids)
            return [jaeger_trace(traces[t]) for t in ids if traces.get(t)]

        return jaeger_response(await anyio.to_thread.run_sync(fetch))

    async def _jaeger_by_ids(self, wanted: list[str]) -> Response:
        """Jaeger UI's trace comparison asks ``/api/traces?traceID=a&traceID=b``: those traces, in that
        order, the missing ones listed as errors as Jaeger does."""
        if len(wanted) > MAX_TRACE_IDS:
            return jaeger_error(400, f"at most {MAX_TRACE_IDS} traceID parameters, got {len(wanted)}")
        bad = [t for t in wanted if not _TRACE_ID.match(t)]
        if bad:
            return jaeger_error(400, f"malformed trace id {bad[0][:80]!r}")
        ids = list(dict.fromkeys(wanted))
        traces = await anyio.to_thread.run_sync(self.store.get_traces, ids)
        found = [jaeger_trace(traces[t]) for t in ids if traces.get(t)]
        missing = [{"code": 404, "msg": f"trace {t} not found", "traceID": t} for t in ids if not traces.get(t)]
        return jaeger_response(found, errors=missing or None)

    async def jaeger_get_trace(self, request: Request) -> Response:
        raw = request.path_params["trace_id"]
        if not _TRACE_ID.match(raw):
            return jaeger_error(400, "malformed trace id")
        spans = await anyio.to_thread.run_sync(self.store.get_trace, raw)
        if not spans:
            return jaeger_error(404, f"trace {raw} not found")
        return jaeger_response([jaeger_trace(spans)])

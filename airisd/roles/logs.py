"""The log role's query API: GET /logs/search (query language) and GET /logs (paged listing)."""

from __future__ import annotations

from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response

from airisd import logquery
from airisd.errors import ValidationError
from airisd.http.envelope import ok
from airisd.http.request import Params
from airisd.logparse import LEVELS, normalize_level
from airisd.model import LogRecord
from airisd.plugin import Clock, Route
from airisd.timeparse import MAX_TS_NS, format_ts

MAX_QUERY_CHARS = 4096


def record_to_json(r: LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {"timestamp": format_ts(r.ts), "level": r.level, "message": r.message,
                           "service": r.service}
    for name in ("trace_id", "span_id", "stack_trace", "user_id", "request_id"):
        value = getattr(r, name)
        if value:
            out[name] = value
    out["labels"] = r.labels
    if r.attributes:
        out["attributes"] = r.attributes
    return out


class LogsQueryApi:
    def __init__(self, store: Any, *, clock: Clock, max_range_secs: int, max_results: int, max_page: int) -> None:
        self.store = store
        self.clock = clock
        self.max_range_secs = max_range_secs
        self.max_results = max_results
        self.max_page = max_page

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/logs/search", self.search, name="logs_search", scope="read"),
            Route("GET", "/logs", self.list_logs, name="logs_list", scope="read"),
        ]

    def _level(self, p: Params) -> str | None:
        raw = p.get("level")
        if not raw:
            return None
        level = normalize_level(raw)
        if level == "UNKNOWN" and raw.strip().upper() != "UNKNOWN":
            raise ValidationError(f"level {raw[:40]!r} is not one of {', '.join(LEVELS)}", details={"field": "level"})
        return level

    def _range(self, p: Params) -> tuple[int, int]:
        """Logs: a missing from/to is unbounded (newest first keeps that cheap)."""
        from_ns = p.timestamp("from")
        to_ns = p.timestamp("to")
        lo = 0 if from_ns is None else from_ns
        hi = MAX_TS_NS if to_ns is None else to_ns
        if lo > hi:
            raise ValidationError("'from' is after 'to'", details={"field": "from"})
        if from_ns is not None and to_ns is not None and hi - lo > self.max_range_secs * 1_000_000_000:
            raise ValidationError(f"time range is longer than {self.max_range_secs} s (http.max_query_range_secs)",
                                  details={"field": "from"})
        return lo, hi

    async def search(self, request: Request) -> Response:
        p = Params(request, {"q", "level", "service", "from", "to", "limit"})
        q = p.get("q") or ""
        if len(q) > MAX_QUERY_CHARS:
            raise ValidationError(f"q is longer than {MAX_QUERY_CHARS} characters", details={"field": "q"})
        query = logquery.parse(q) if q.strip() else None
        level = self._level(p)
        service = p.get("service") or None
        from_ns, to_ns = self._range(p)
        limit = p.integer("limit", 100, lo=1, hi=self.max_results)
        records = await anyio.to_thread.run_sync(
            lambda: self.store.search(query, level=level, service=service, from_ns=from_ns, to_ns=to_ns, limit=limit))
        return ok(request, {
            "query": logquery.to_string(query) if query is not None else "",
            "count": len(records), "limit": limit,
            "items": [record_to_json(r) for r in records],
        }, message=f"{len(records)} logs")

    async def list_logs(self, request: Request) -> Response:
        p = Params(request, {"page", "size", "limit", "sort", "level", "service", "from", "to"})
        page = p.integer("page", 1, lo=1, hi=1_000_000)
        size = p.integer("size", p.integer("limit", 50, lo=1, hi=self.max_page), lo=1, hi=self.max_page)
        sort = p.get("sort") or "timestamp:desc"
        if sort not in ("timestamp:desc", "timestamp:asc"):
            raise ValidationError(f"sort {sort[:40]!r}: use timestamp:desc or timestamp:asc", details={"field": "sort"})
        level = self._level(p)
        service = p.get("service") or None
        from_ns, to_ns = self._range(p)
        total, records = await anyio.to_thread.run_sync(
            lambda: self.store.page(page=page, size=size, sort_desc=sort != "timestamp:asc", level=level,
                                    service=service, from_ns=from_ns, to_ns=to_ns))
        return ok(request, {"total": total, "page": page, "size": size, "sort": sort,
                            "items": [record_to_json(r) for r in records]}, message=f"{len(records)} of {total} logs")

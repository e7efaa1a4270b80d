"""The metrics role's query API: GET /metrics/query and GET /metrics (series listing)."""

from __future__ import annotations

from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response

from airisd.errors import ValidationError
from airisd.http.envelope import ok
from airisd.http.request import Params
from airisd.plugin import Clock, Route
from airisd.querysyntax import parse_interval, parse_label_filter
from airisd.timeparse import format_duration, format_ts

DEFAULT_RANGE_SECS = 3600


class MetricsQueryApi:
    def __init__(self, store: Any, *, clock: Clock, max_range_secs: int, max_points: int, max_page: int) -> None:
        self.store = store
        self.clock = clock
        self.max_range_secs = max_range_secs
        self.max_points = max_points
        self.max_page = max_page

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/metrics/query", self.query, name="metrics_query", scope="read"),
            Route("GET", "/metrics", self.list_series, name="metrics_list", scope="read"),
        ]

    async def query(self, request: Request) -> Response:
        p = Params(request, {"name", "from", "to", "interval", "labels", "limit"})
        name = p.require("name")
        if len(name) > 256:
            raise ValidationError("name is longer than 256 characters", details={"field": "name"})
        from_ns, to_ns = p.time_range(self.clock.time_ns(), default_secs=DEFAULT_RANGE_SECS,
                                      max_secs=self.max_range_secs)
        matchers = parse_label_filter(p.get("labels") or "")
        limit = p.integer("limit", self.max_points, lo=1, hi=self.max_points)
        interval = p.get("interval")
        data: dict[str, Any] = {"name": name, "from": format_ts(from_ns), "to": format_ts(to_ns),
                                "labels": matchers}
        if interval:
            step = parse_interval(interval, from_ns=from_ns, to_ns=to_ns)
            rows = await anyio.to_thread.run_sync(self.store.query_buckets, name, matchers, from_ns, to_ns, step)
            data["interval"] = format_duration(step)
            data["series"] = [
                {
                    "labels": s.labels,
                    "buckets": [
                        {"timestamp": format_ts(b), "avg": avg, "min": mn, "max": mx, "sum": sm, "count": n}
                        for b, avg, mn, mx, sm, n in buckets
                    ],
                }
                for s, buckets in rows
            ]
        else:
            series, truncated = await anyio.to_thread.run_sync(
                self.store.query_points, name, matchers, from_ns, to_ns, limit)
            data["interval"] = None
            data["series"] = [
                {"labels": s.labels, "points": [{"timestamp": format_ts(ts), "value": v} for ts, v in pts]}
                for s, pts in series
            ]
            data["truncated"] = truncated
        count = sum(len(s.get("points", s.get("buckets", []))) for s in data["series"])
        return ok(request, data, message=f"{len(data['series'])} series, {count} {'buckets' if interval else 'points'}")

    async def list_series(self, request: Request) -> Response:
        p = Params(request, {"from", "to", "name", "page", "size", "limit"})
        from_ns, to_ns = p.time_range(self.clock.time_ns(), default_secs=DEFAULT_RANGE_SECS,
                                      max_secs=self.max_range_secs)
        page = p.integer("page", 1, lo=1, hi=1_000_000)
        size = p.integer("size", p.integer("limit", 100, lo=1, hi=self.max_page), lo=1, hi=self.max_page)
        total, series = await anyio.to_thread.run_sync(
            lambda: self.store.list_series(from_ns, to_ns, name=p.get("name"), offset=(page - 1) * size, limit=size))
        names = sorted({s.name for s in series})
        return ok(request, {
            "from": format_ts(from_ns), "to": format_ts(to_ns),
            "total": total, "page": page, "size": size, "names": names,
            "items": [{"name": s.name, "labels": s.labels} for s in series],
        })

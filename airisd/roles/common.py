"""Routes every role serves: /health, /health/detailed and /metrics/prometheus."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from airisd import __version__
from airisd.http.envelope import ok
from airisd.plugin import Route
from airisd.selfmetrics import Registry

HealthProvider = Callable[[], Awaitable[dict[str, Any]]]


class CommonApi:
    def __init__(self, role: str, metrics: Registry, detailed: HealthProvider, started_at: float) -> None:
        self.role = role
        self.metrics = metrics
        self.detailed = detailed
        self.started_at = started_at
        metrics.gauge("build_info", "Build information (value is always 1)", ("version",)).set(1, __version__)
        metrics.gauge("uptime_seconds", "Seconds since the daemon started").set_function(
            lambda: time.monotonic() - started_at)
        metrics.gauge("resident_memory_bytes", "Peak resident set size of the process").set_function(
            lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/health", self.health, name="health", scope="public"),
            Route("GET", "/health/detailed", self.health_detailed, name="health_detailed", scope="read"),
            Route("GET", "/metrics/prometheus", self.prometheus, name="prometheus", scope="read"),
        ]

    async def health(self, request: Request) -> Response:
        return ok(request, {"status": "ok", "role": self.role, "version": __version__})

    async def health_detailed(self, request: Request) -> Response:
        data = await self.detailed()
        data.update({"role": self.role, "version": __version__, "pid": os.getpid(),
                     "uptime_secs": round(time.monotonic() - self.started_at, 3)})
        healthy = data.get("status") == "ok"
        return ok(request, data, message="healthy" if healthy else "degraded", status=200 if healthy else 503)

    async def prometheus(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

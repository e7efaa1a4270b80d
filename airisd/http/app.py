"""One ASGI app per role listener.

Every route is wrapped once, here: request id, authentication and authorization by the route's
scope, error → envelope, and the request counters. So a handler only parses, acts and answers, and
cannot leak a traceback: an unexpected exception is logged once and answered as a 500 envelope
(which the test suite treats as a bug).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as StarletteRoute

from airisd.errors import AirisError, ApiError, NotFound, PluginError, ValidationError
from airisd.http.envelope import JSON, error_body, error_response, new_request_id
from airisd.plugin import Route
from airisd.selfmetrics import Registry
from airisd.turns import give_up_turn

log = logging.getLogger("airisd.http")

Endpoint = Callable[[Request], Awaitable[Response]]
AuthCheck = Callable[[Request, str], Awaitable[None]]  # raises Unauthorized / Forbidden / RateLimited


@dataclass
class HttpContext:
    role: str
    metrics: Registry
    auth_check: AuthCheck | None = None
    tracer: Any = None  # airisd.selftrace.SelfTracer when self-tracing is on
    extra_headers: dict[str, str] = field(default_factory=dict)


def _wrap(route: Route, ctx: HttpContext) -> Endpoint:
    m_requests = ctx.metrics.counter("http_requests_total", "HTTP requests by role, route and status",
                                     ("role", "method", "route", "status"))
    m_latency = ctx.metrics.histogram("http_request_seconds", "HTTP request latency", ("role", "route"))
    route_label = route.path

    async def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        started_ns = time.time_ns()
        rid = request.headers.get("x-request-id", "")
        if not (0 < len(rid) <= 64 and rid.replace("-", "").replace("_", "").isalnum()):
            rid = new_request_id()
        request.scope.setdefault("state", {})["request_id"] = rid
        try:
            if route.scope != "public" and ctx.auth_check is not None:
                await ctx.auth_check(request, route.scope)
            try:
                response = await route.endpoint(request)
            finally:
                give_up_turn()
        except AirisError as exc:
            if isinstance(exc, PluginError):  # a store or backend failed: the server's fault, not the client's
                exc = _unavailable(exc)
            response = error_response(request, exc)
        except Exception:
            log.exception("unhandled error in a request handler", extra={"kv": {"route": route_label,
                                                                                "request_id": rid}})
            response = Response(error_body("INTERNAL_ERROR", "internal error; see the daemon's log", {}, rid),
                                status_code=500, media_type=JSON)
        response.headers["X-Request-ID"] = rid
        for k, v in ctx.extra_headers.items():
            response.headers.setdefault(k, v)
        # X-RateLimit-* left by auth_check (issue 6)
        for k, v in request.scope.get("state", {}).get("response_headers", {}).items():
            response.headers.setdefault(k, v)
        if ctx.tracer is not None:
            ctx.tracer.record(role=ctx.role, method=request.method, route=route_label, target=request.url.path,
                              status=response.status_code, start_ns=started_ns, end_ns=time.time_ns(),
                              traceparent=request.headers.get("traceparent"))
        m_requests.inc(1, ctx.role, request.method, route_label, str(response.status_code))
        m_latency.observe(time.perf_counter() - started, ctx.role, route_label)
        return response

    endpoint.__name__ = route.name or route.endpoint.__name__
    return endpoint


def _unavailable(exc: AirisError) -> AirisError:
    err = AirisError(f"store or backend error: {exc.message}", details=exc.details)
    err.status, err.code = 503, "STORE_UNAVAILABLE"
    return err


def build_app(routes: Sequence[Route], ctx: HttpContext) -> Starlette:
    seen: dict[tuple[str, str], Route] = {}
    for r in routes:
        key = (r.method.upper(), r.path)
        if key in seen:
            raise ValueError(f"two routes for {r.method} {r.path} on the {ctx.role} listener")
        seen[key] = r
    by_path: dict[str, list[Route]] = {}
    for r in routes:
        by_path.setdefault(r.path, []).append(r)
    star_routes = []
    for path, rs in by_path.items():
        for r in rs:
            star_routes.append(StarletteRoute(path, _wrap(r, ctx), methods=[r.method.upper()]))

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        if status == 405:
            err: ApiError = ValidationError(f"method {request.method} is not allowed on {request.url.path}")
            err.status, err.code = 405, "METHOD_NOT_ALLOWED"
        else:
            err = NotFound(f"no route for {request.method} {request.url.path} on the {ctx.role} role")
        return error_response(request, err)

    return Starlette(routes=star_routes, exception_handlers={404: not_found, 405: not_found})


def route(method: str, path: str, *, scope: str = "read", name: str = "") -> Callable[[Any], Route]:
    """Decorator sugar: ``@route("GET", "/x")`` turns an endpoint into a Route."""

    def deco(fn: Any) -> Route:
        return Route(method, path, fn, name=name or fn.__name__, scope=scope)

    return deco

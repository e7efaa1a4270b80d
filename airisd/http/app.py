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
from starlette.routing import Match
from starlette.routing import Route as StarletteRoute
from starlette.types import Receive, Scope, Send

from airisd.errors import AirisError, ApiError, NotFound, PluginError, ValidationError
from airisd.http.envelope import JSON, error_body, error_response, new_request_id
from airisd.http.request import header
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
    latency_labels = (ctx.role, route_label)
    status_labels: dict[tuple[str, int], tuple[str, str, str, str]] = {}  # made once, not per request

    async def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        tracer = ctx.tracer
        started_ns = time.time_ns() if tracer is not None else 0
        scope = request.scope
        rid = header(request, b"x-request-id") or ""
        if not (0 < len(rid) <= 64 and rid.replace("-", "").replace("_", "").isalnum()):
            rid = new_request_id()
        scope.setdefault("state", {})["request_id"] = rid
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
        _set_headers(response.raw_headers, rid, ctx.extra_headers, scope.get("state", {}).get("response_headers"))
        status = response.status_code
        if tracer is not None:
            tracer.record(role=ctx.role, method=request.method, route=route_label, target=request.url.path,
                          status=status, start_ns=started_ns, end_ns=time.time_ns(),
                          traceparent=header(request, b"traceparent"))
        method = scope["method"]
        labels = status_labels.get((method, status))
        if labels is None:
            labels = status_labels[(method, status)] = (ctx.role, method, route_label, str(status))
        m_requests.inc(1, *labels)
        m_latency.observe(time.perf_counter() - started, *latency_labels)
        return response

    endpoint.__name__ = route.name or route.endpoint.__name__
    return endpoint


def _set_headers(raw: list[tuple[bytes, bytes]], rid: str, extra: dict[str, str],
                 rate_limit: dict[str, str] | None) -> None:
    """X-Request-ID set (replacing any), then ``extra`` and the X-RateLimit-* headers auth_check left
    (issue 6) added unless present: what MutableHeaders' ``[]=`` and ``setdefault`` do, on the raw
    list and without building a MutableHeaders per response."""
    found = [i for i, (k, _) in enumerate(raw) if k == b"x-request-id"]
    for i in reversed(found[1:]):
        del raw[i]
    if found:
        raw[found[0]] = (b"x-request-id", rid.encode("latin-1"))
    else:
        raw.append((b"x-request-id", rid.encode("latin-1")))
    if extra or rate_limit:
        present = {k for k, _ in raw}
        for headers in (extra, rate_limit or {}):
            for k, v in headers.items():
                key = _header_keys.get(k)
                if key is None:
                    key = k.lower().encode("latin-1")
                    if len(_header_keys) < 64:  # the names come from code and config: a handful
                        _header_keys[k] = key
                if key not in present:
                    raw.append((key, v.encode("latin-1")))
                    present.add(key)


_header_keys: dict[str, bytes] = {}  # header name → its raw (lower-case) form


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
    # (method, path) → endpoint, for the routes the router would pick for that exact path anyway
    exact: dict[tuple[str, str], Endpoint] = {}
    for star in star_routes:
        if "{" in star.path:
            continue
        for method in star.methods or ():
            probe = {"type": "http", "path": star.path, "method": method, "root_path": ""}
            first = next(sr for sr in star_routes if sr.matches(probe)[0] is Match.FULL)
            if first is star:
                exact[(method, star.path)] = star.endpoint

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        if status == 405:
            err: ApiError = ValidationError(f"method {request.method} is not allowed on {request.url.path}")
            err.status, err.code = 405, "METHOD_NOT_ALLOWED"
        else:
            err = NotFound(f"no route for {request.method} {request.url.path} on the {ctx.role} role")
        return error_response(request, err)

    return _App(exact, routes=star_routes, exception_handlers={404: not_found, 405: not_found})


class _App(Starlette):
    """Starlette, with a direct way in for routes without path parameters: one dict lookup on
    (method, path) instead of the router's regex match against each route in turn, and none of the
    middleware layers (each wraps ``send`` again). Those layers add nothing for these routes: the
    endpoint (``_wrap``) answers every Exception itself. Every other request (path parameters, 404,
    405, slash redirects, a root_path, lifespan) goes through Starlette as before; a GET route's
    HEAD is direct too, as Starlette's Route accepts it."""

    def __init__(self, exact: dict[tuple[str, str], Endpoint], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._exact = exact
        self._routes_by_endpoint = {r.endpoint: r for r in self.router.routes if isinstance(r, StarletteRoute)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            endpoint = self._exact.get((scope["method"], scope["path"]))
            if endpoint is not None:
                # the keys the router and Route.matches would have set
                scope["app"] = self
                scope.setdefault("router", self.router)
                scope["route"] = self._routes_by_endpoint[endpoint]
                scope["endpoint"] = endpoint
                scope["path_params"] = dict(scope.get("path_params", {}))
                response = await endpoint(Request(scope, receive, send))
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def route(method: str, path: str, *, scope: str = "read", name: str = "") -> Callable[[Any], Route]:
    """Decorator sugar: ``@route("GET", "/x")`` turns an endpoint into a Route."""

    def deco(fn: Any) -> Route:
        return Route(method, path, fn, name=name or fn.__name__, scope=scope)

    return deco

"""The small-request path's shortcuts give what the generic code gives: the direct route table
against Starlette's router, raw header edits against MutableHeaders, the envelope response against
Response, the cached timestamp against format_ts, histogram buckets against the per-bound loop,
the credential whitespace check against str.isspace, and the cached token principal against a
fresh verification."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

import airisd.http.envelope as envelope
from airisd.auth import Authenticator
from airisd.auth.tokens import TokenService
from airisd.errors import Unauthorized, ValidationError
from airisd.http.app import HttpContext, _set_headers, build_app
from airisd.http.envelope import JSON, EnvelopeResponse, new_request_id, now_timestamp, ok
from airisd.http.request import header
from airisd.plugin import Route
from airisd.selfmetrics import Histogram, Registry, _fmt
from airisd.timeparse import format_ts

# --- the route table ------------------------------------------------------------------------------


async def _echo(request: Request) -> Response:
    body = await request.body()
    return ok(request, {"path": request.url.path, "params": request.path_params, "body": body.decode(),
                        "route": request.scope["route"].path, "q": str(request.query_params)})


async def _fail(request: Request) -> Response:
    raise ValidationError("bad thing", details={"field": "x"})


async def _plain(request: Request) -> Response:
    return PlainTextResponse("hi", headers={"X-Request-ID": "from-handler", "X-Other": "1"})


async def _rate_limited_check(request: Request, scope: str) -> None:
    if request.headers.get("authorization") != "Bearer ok":
        raise Unauthorized("no", details={"reason": "missing"})
    request.scope.setdefault("state", {})["response_headers"] = {"X-RateLimit-Limit": "10",
                                                                  "X-RateLimit-Remaining": "9"}


ROUTES = [
    Route("GET", "/items/{id}", _echo, name="item", scope="public"),
    Route("GET", "/items/special", _echo, name="special", scope="public"),  # shadowed by the one above
    Route("POST", "/items", _echo, name="items_post", scope="write"),
    Route("GET", "/items", _echo, name="items_get", scope="public"),
    Route("POST", "/fail", _fail, name="fail", scope="public"),
    Route("GET", "/plain", _plain, name="plain", scope="public"),
]


def _apps() -> tuple[Starlette, Starlette]:
    """Two apps over the same routes: ours, and the same app served by Starlette's own __call__."""
    app = build_app(ROUTES, HttpContext(role="metrics", metrics=Registry(), auth_check=_rate_limited_check))

    async def starlette_only(scope: Any, receive: Any, send: Any) -> None:
        await Starlette.__call__(app, scope, receive, send)

    return app, starlette_only  # type: ignore[return-value]


def test_only_unshadowed_exact_routes_are_direct() -> None:
    app, _ = _apps()
    assert sorted(app._exact) == [("GET", "/items"), ("GET", "/plain"), ("HEAD", "/items"),  # type: ignore[attr-defined]
                                  ("HEAD", "/plain"), ("POST", "/fail"), ("POST", "/items")]


REQUESTS = [
    ("POST", "/items", {"authorization": "Bearer ok"}, b'{"a": 1}'),
    ("POST", "/items", {"authorization": "Bearer ok", "x-request-id": "abc-123_x"}, b"x"),
    ("POST", "/items", {"authorization": "Bearer ok", "x-request-id": "bad id!"}, b""),
    ("POST", "/items", {}, b"unauthenticated"),
    ("GET", "/items", {}, b""),
    ("GET", "/items?x=1&y=2", {"x-request-id": "q"}, b""),
    ("HEAD", "/items", {}, b""),
    ("PUT", "/items", {}, b""),
    ("GET", "/items/", {}, b""),
    ("GET", "/items/7", {}, b""),
    ("GET", "/items/special", {}, b""),
    ("POST", "/fail", {}, b""),
    ("GET", "/plain", {"x-request-id": "mine"}, b""),
    ("GET", "/nowhere", {}, b""),
]


def _normalize(resp: httpx.Response) -> tuple[int, list[tuple[str, str]], Any]:
    headers = [(k, v) for k, v in resp.headers.multi_items()]
    rid = resp.headers.get("x-request-id", "")
    body: Any = resp.content
    if resp.headers.get("content-type") == JSON and resp.content:
        body = resp.json()
        body.pop("timestamp", None)
        body_rid = body.get("request_id", "")
        if body_rid.startswith("req_"):
            assert body.pop("request_id") == (rid or body_rid)
    if rid.startswith("req_"):
        headers = [(k, "req_*" if k == "x-request-id" else v) for k, v in headers]
    return resp.status_code, headers, body


@pytest.mark.anyio
@pytest.mark.parametrize(("method", "path", "headers", "body"), REQUESTS)
async def test_direct_routes_answer_as_starlette_does(method: str, path: str, headers: dict[str, str],
                                                      body: bytes) -> None:
    ours, theirs = _apps()
    answers = []
    for app in (ours, theirs):
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://airisd", follow_redirects=False) as c:
            answers.append(_normalize(await c.request(method, path, headers=headers, content=body)))
    assert answers[0] == answers[1]


@pytest.mark.anyio
async def test_direct_route_sets_the_scope_keys_the_router_sets() -> None:
    app, _ = _apps()
    seen: dict[str, Any] = {}

    async def send(message: Any) -> None:
        pass

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "GET", "path": "/items", "root_path": "", "query_string": b"",
             "headers": [], "http_version": "1.1", "scheme": "http", "server": ("x", 80), "client": ("y", 1)}
    await app(scope, receive, send)
    seen.update(scope)
    assert seen["app"] is app and seen["router"] is app.router and seen["path_params"] == {}
    assert seen["route"].path == "/items" and seen["endpoint"] is seen["route"].endpoint


# --- headers --------------------------------------------------------------------------------------

_KEYS = st.sampled_from([b"content-length", b"content-type", b"x-request-id", b"x-ratelimit-limit", b"x-other",
                         b"X-Request-ID"])
_RAW = st.lists(st.tuples(_KEYS, st.binary(max_size=5)), max_size=6)
_NAMES = st.sampled_from(["X-RateLimit-Limit", "x-ratelimit-limit", "X-RateLimit-Remaining", "X-Other",
                          "Content-Type", "X-Request-ID"])
_DICT = st.dictionaries(_NAMES, st.text(st.characters(max_codepoint=255), max_size=5), max_size=4)


@given(_RAW, st.text(st.characters(max_codepoint=255), max_size=8), _DICT, st.none() | _DICT)
def test_set_headers_matches_mutable_headers(raw: list[tuple[bytes, bytes]], rid: str, extra: dict[str, str],
                                             rate: dict[str, str] | None) -> None:
    expected = list(raw)
    mh = MutableHeaders(raw=expected)
    mh["X-Request-ID"] = rid
    for k, v in extra.items():
        mh.setdefault(k, v)
    for k, v in (rate or {}).items():
        mh.setdefault(k, v)
    got = list(raw)
    _set_headers(got, rid, extra, rate)
    assert got == expected


@given(st.lists(st.tuples(st.sampled_from([b"a", b"x-request-id", b"authorization", b"content-length"]),
                          st.binary(max_size=4)), max_size=5),
       st.sampled_from([b"a", b"x-request-id", b"authorization", b"content-length", b"missing"]))
def test_header_matches_request_headers(raw: list[tuple[bytes, bytes]], name: bytes) -> None:
    request = Request({"type": "http", "headers": raw})
    assert header(request, name) == request.headers.get(name.decode())


# --- the envelope ---------------------------------------------------------------------------------


@given(st.binary(max_size=300), st.sampled_from([100, 101, 199, 200, 201, 202, 204, 206, 304, 400, 404, 500]))
def test_envelope_response_matches_response(body: bytes, status: int) -> None:
    ours = EnvelopeResponse(body, status)
    theirs = Response(body, status_code=status, media_type=JSON)
    assert (ours.raw_headers, ours.body, ours.status_code, ours.background, ours.media_type) == (
        theirs.raw_headers, theirs.body, theirs.status_code, theirs.background, theirs.media_type)
    ours.headers["x-a"] = "1"
    assert ours.raw_headers[-1] == (b"x-a", b"1")


def test_ok_with_headers_keeps_them() -> None:
    request = Request({"type": "http", "headers": [], "state": {"request_id": "req_x"}})
    resp = ok(request, {"a": 1}, status=202, headers={"Location": "/x"})
    assert resp.raw_headers[0] == (b"location", b"/x") and resp.status_code == 202


@given(st.integers(min_value=-(10**19), max_value=10**19))
@settings(max_examples=300)
def test_now_timestamp_matches_format_ts(ns: int) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(envelope, "now_ns", lambda: ns)
        assert now_timestamp() == format_ts(ns)
        assert now_timestamp() == format_ts(ns)  # from the cache
        mp.setattr(envelope, "now_ns", lambda: ns + 1_000_000)
        assert now_timestamp() == format_ts(ns + 1_000_000)


def test_request_ids_are_unique_and_shaped_as_before() -> None:
    ids = [new_request_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"req_[0-9a-f]{16}", i) for i in ids)


@pytest.fixture
def wrapped_counter() -> Iterator[None]:
    """The counter just before it wraps: the next ids draw a new prefix."""
    saved = envelope._id_prefix, envelope._id_counter
    import itertools

    envelope._id_counter = itertools.count((1 << 32) - 2)
    yield
    envelope._id_prefix, envelope._id_counter = saved


def test_request_id_counter_wrap_draws_a_new_prefix(wrapped_counter: None) -> None:
    before = envelope._id_prefix
    a, b, c = new_request_id(), new_request_id(), new_request_id()
    assert a == f"req_{before}fffffffe" and b == f"req_{before}ffffffff"
    assert re.fullmatch(r"req_[0-9a-f]{8}00000000", c) and c != f"req_{before}00000000"


# --- self-metrics ---------------------------------------------------------------------------------


class _OldHistogram(Histogram):
    """Histogram as it was: every observation loops over every bound (cumulative rows)."""

    def observe(self, value: float, *labels: str) -> None:
        row = self._series.get(labels)
        if row is None:
            row = self._series[labels] = [0.0] * (len(self.buckets) + 2)
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                row[i] += 1
        row[-2] += value
        row[-1] += 1

    def render(self) -> list[str]:
        lines = self.header()
        for labels, row in sorted(self._series.items()):
            for i, bound in enumerate(self.buckets):
                le = 'le="' + _fmt(bound) + '"'
                lines.append(f"{self.name}_bucket{self._labels(labels, le)} {_fmt(row[i])}")
            inf = 'le="+Inf"'
            lines.append(f"{self.name}_bucket{self._labels(labels, inf)} {_fmt(row[-1])}")
            lines.append(f"{self.name}_sum{self._labels(labels)} {_fmt(row[-2])}")
            lines.append(f"{self.name}_count{self._labels(labels)} {_fmt(row[-1])}")
        return lines


_VALUES = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0005, 0.001, 0.25, 10.0, 11.0])


@given(st.lists(st.tuples(_VALUES, st.sampled_from(["x", "y"])), max_size=30),
       st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=1, max_size=8, unique=True))
def test_histogram_matches_the_per_bound_loop(observations: list[tuple[float, str]], bounds: list[float]) -> None:
    new, old = Histogram("h", "help", ("a",), buckets=bounds), _OldHistogram("h", "help", ("a",), buckets=bounds)
    for value, label in observations:
        new.observe(value, label)
        old.observe(value, label)
    assert new.render() == old.render()
    assert new.count("x") == old.count("x") and new.count("y") == old.count("y")


# --- authentication -------------------------------------------------------------------------------

_CRED_CHARS = st.characters(codec="utf-8") | st.sampled_from(list(" \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\x85\xa0\u2028"))


def _old_check(credential: str) -> bool:
    return not (not credential or any(c.isspace() for c in credential) or not credential.isascii())


@given(st.text(_CRED_CHARS, max_size=40))
def test_whitespace_check_matches_isspace(credential: str) -> None:
    new_ok = bool(credential) and credential.isascii() and credential.split() == [credential]
    assert new_ok == _old_check(credential)


class _Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


SECRET = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKL"


def _outcome(service: TokenService, token: str) -> Any:
    try:
        return service.verify(token)
    except Unauthorized as exc:
        return ("refused", exc.message, exc.details)


@given(st.lists(st.integers(min_value=-4000, max_value=4000), min_size=1, max_size=12))
@settings(max_examples=60)
def test_cached_principal_matches_a_fresh_verification(offsets: list[int]) -> None:
    clock = _Clock()
    cached = TokenService(SECRET, clock=clock)
    token, _ = TokenService(SECRET, clock=_Clock()).issue("alice", "reader")
    for offset in offsets:  # the same token at times before nbf, inside its life and after exp
        clock.t = 1_700_000_000.0 + offset
        fresh = TokenService(SECRET, clock=lambda t=clock.t: t)  # type: ignore[misc]
        assert _outcome(cached, token) == _outcome(fresh, token)


def test_bearer_with_inner_whitespace_is_malformed(tmp_path: Any) -> None:
    auth = Authenticator.open(tmp_path, jwt_secret=SECRET.decode())
    try:
        for value in ("Bearer a\x1cb", "Bearer a b", "Token a\tb", "Bearer é"):
            with pytest.raises(Unauthorized) as info:
                auth.authenticate_header(value)
            assert info.value.details["reason"] == "malformed"
    finally:
        auth.close()


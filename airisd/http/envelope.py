"""The seed's response envelope.

    {"success": true,  "data": ..., "message": "Success", "timestamp": "...Z", "request_id": "req_..."}
    {"success": false, "error": {"code", "message", "details"}, "timestamp", "request_id"}
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from airisd.errors import AirisError, Backpressure, RateLimited
from airisd.timeparse import NS_PER_MS, NS_PER_S, now_ns

JSON = "application/json"
_JSON_CONTENT_TYPE = (b"content-type", JSON.encode("latin-1"))

# Request ids: 8 random hex digits per process, then a counter: ~1 µs cheaper than 8 fresh random
# bytes per request, the same shape (req_ + 16 hex digits), never repeated within a process (a
# counter that wraps draws a new prefix); across processes the random prefix tells them apart.
_id_prefix = ""
_id_counter = itertools.count(1 << 32)


def new_request_id() -> str:
    global _id_prefix, _id_counter
    n = next(_id_counter)
    if n >= 1 << 32:
        _id_prefix, _id_counter = os.urandom(4).hex(), itertools.count(1)
        n = 0
    return f"req_{_id_prefix}{n:08x}"


_ts_cache: tuple[int, str] = (-1, "")  # (second, its "%Y-%m-%dT%H:%M:%S") for now_timestamp()


def now_timestamp() -> str:
    """``format_ts(now_ns())``, with the seconds' text made once a second rather than per call."""
    global _ts_cache
    secs, rem = divmod(now_ns(), NS_PER_S)
    cached_secs, base = _ts_cache
    if secs != cached_secs:
        base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
        _ts_cache = (secs, base)
    return f"{base}.{rem // NS_PER_MS:03d}Z"


def request_id(request: Request) -> str:
    rid = request.scope.get("state", {}).get("request_id")
    return rid if isinstance(rid, str) else new_request_id()


def _dumps(body: dict[str, Any]) -> bytes:
    # Non-finite floats never reach here (inputs reject them); default=str keeps odd types printable.
    return orjson.dumps(body, default=str, option=orjson.OPT_NON_STR_KEYS)


class EnvelopeResponse(Response):
    """A Response whose headers are known in advance (a JSON body, no extra headers): the same
    ``raw_headers`` as ``Response(body, status, media_type=JSON)``, without the generic header logic."""

    media_type = JSON

    def __init__(self, body: bytes, status: int) -> None:
        self.status_code = status
        self.background = None
        self.body = body
        if status < 200 or status in (204, 304):  # Starlette sends no Content-Length for these
            self.raw_headers = [_JSON_CONTENT_TYPE]
        else:
            self.raw_headers = [(b"content-length", str(len(body)).encode("latin-1")), _JSON_CONTENT_TYPE]


def ok(request: Request, data: Any = None, *, message: str = "Success", status: int = 200,
       headers: dict[str, str] | None = None) -> Response:
    body = {"success": True, "data": data, "message": message, "timestamp": now_timestamp(),
            "request_id": request_id(request)}
    if headers:
        return Response(_dumps(body), status_code=status, media_type=JSON, headers=headers)
    return EnvelopeResponse(_dumps(body), status)


def error_body(code: str, message: str, details: dict[str, Any] | None, rid: str) -> bytes:
    return _dumps({
        "success": False,
        "error": {"code": code, "message": message, "details": details or {}},
        "timestamp": now_timestamp(),
        "request_id": rid,
    })


def error_response(request: Request, exc: AirisError) -> Response:
    headers = {}
    if isinstance(exc, RateLimited | Backpressure):
        headers["Retry-After"] = str(max(1, exc.retry_after_secs))
    extra = getattr(exc, "headers", None)
    if isinstance(extra, dict):
        headers.update(extra)
    status = exc.status if 400 <= exc.status < 600 else 500
    return Response(error_body(exc.code, exc.message, exc.details, request_id(request)), status_code=status,
                    media_type=JSON, headers=headers)

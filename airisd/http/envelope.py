"""The seed's response envelope.

    {"success": true,  "data": ..., "message": "Success", "timestamp": "...Z", "request_id": "req_..."}
    {"success": false, "error": {"code", "message", "details"}, "timestamp", "request_id"}
"""

from __future__ import annotations

import secrets
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from airisd.errors import AirisError, Backpressure, RateLimited
from airisd.timeparse import format_ts, now_ns

JSON = "application/json"


def new_request_id() -> str:
    return "req_" + secrets.token_hex(8)


def request_id(request: Request) -> str:
    rid = request.scope.get("state", {}).get("request_id")
    return rid if isinstance(rid, str) else new_request_id()


def _dumps(body: dict[str, Any]) -> bytes:
    # Non-finite floats never reach here (inputs reject them); default=str keeps odd types printable.
    return orjson.dumps(body, default=str, option=orjson.OPT_NON_STR_KEYS)


def ok(request: Request, data: Any = None, *, message: str = "Success", status: int = 200,
       headers: dict[str, str] | None = None) -> Response:
    body = {"success": True, "data": data, "message": message, "timestamp": format_ts(now_ns()),
            "request_id": request_id(request)}
    return Response(_dumps(body), status_code=status, media_type=JSON, headers=headers)


def error_body(code: str, message: str, details: dict[str, Any] | None, rid: str) -> bytes:
    return _dumps({
        "success": False,
        "error": {"code": code, "message": message, "details": details or {}},
        "timestamp": format_ts(now_ns()),
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

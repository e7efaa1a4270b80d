"""Reading requests defensively: bounded bodies, strict JSON, validated query parameters."""

from __future__ import annotations

import gzip
import math
import zlib
from collections.abc import Iterable
from typing import Any

import orjson
from starlette.requests import Request

from airisd.errors import PayloadTooLarge, UnsupportedMediaType, ValidationError
from airisd.timeparse import parse_duration, parse_timestamp
from airisd.turns import take_turn


def header(request: Request, name: bytes) -> str | None:
    """``request.headers.get(name)`` for a lower-case ``name``: the first value, by a scan of the raw
    ASGI headers, without building a Headers object or raising a KeyError for a missing one."""
    for key, value in request.scope["headers"]:
        if key == name:
            return value.decode("latin-1")  # type: ignore[no-any-return]
    return None


async def read_body(request: Request, limit: int, *, turn: bool = False) -> bytes:
    """The body, decompressed if Content-Encoding asks; 413 once it passes ``limit`` bytes (before
    and after decompression, so a small gzip bomb is refused too). ``turn``: then wait for this
    request's turn to parse it (airisd.turns), for the ingestion handlers."""
    declared = header(request, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit} (http.max_body_bytes)",
                              details={"limit_bytes": limit})
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes (http.max_body_bytes)",
                                  details={"limit_bytes": limit})
        chunks.append(chunk)
    body = b"".join(chunks)
    if turn:
        await take_turn()
    encoding = (header(request, b"content-encoding") or "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip", "deflate"):
        return _inflate(body, limit, gzip_=encoding != "deflate")
    raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported (use gzip, deflate or none)",
                               details={"field": "Content-Encoding"})


def _inflate(body: bytes, limit: int, *, gzip_: bool) -> bytes:
    d = zlib.decompressobj(wbits=31 if gzip_ else 15)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise ValidationError(f"body is not valid {'gzip' if gzip_ else 'deflate'}: {exc}",
                              details={"field": "Content-Encoding"}) from None
    if len(out) > limit:
        raise PayloadTooLarge(f"decompressed body exceeds {limit} bytes (http.max_body_bytes)",
                              details={"limit_bytes": limit})
    return out


_ = gzip  # gzip framing is handled by zlib's wbits=31


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise ValidationError("request body is empty; expected JSON", details={"field": "body"})
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"malformed JSON: {exc}", details={"field": "body", "position": exc.pos}) from None


async def read_json(request: Request, limit: int) -> Any:
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if ctype and ctype not in ("application/json", "text/json", "application/x-ndjson", "*/*") and \
            not ctype.endswith("+json"):
        raise UnsupportedMediaType(f"Content-Type {ctype!r}: send application/json",
                                   details={"field": "Content-Type"})
    return parse_json(await read_body(request, limit))


class Params:
    """Query parameters, checked against the names a route accepts."""

    def __init__(self, request: Request, allowed: Iterable[str]) -> None:
        allowed = set(allowed)
        unknown = sorted({k for k in request.query_params if k not in allowed})
        if unknown:
            raise ValidationError(
                f"unknown query parameter {unknown[0]!r} (accepted: {', '.join(sorted(allowed))})",
                details={"field": unknown[0], "accepted": sorted(allowed)},
            )
        self._q = request.query_params

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self._q.getlist(name)
        if len(values) > 1:
            raise ValidationError(f"query parameter {name!r} is given {len(values)} times", details={"field": name})
        return values[0] if values else default

    def require(self, name: str) -> str:
        value = self.get(name)
        if value is None or value == "":
            raise ValidationError(f"query parameter {name!r} is required", details={"field": name})
        return value

    def integer(self, name: str, default: int, *, lo: int, hi: int) -> int:
        raw = self.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ValidationError(f"{name} must be an integer, got {raw[:40]!r}", details={"field": name}) from None
        if not lo <= value <= hi:
            raise ValidationError(f"{name} must be between {lo} and {hi}, got {value}", details={"field": name})
        return value

    def timestamp(self, name: str) -> int | None:
        raw = self.get(name)
        if raw is None or raw == "":
            return None
        try:
            return parse_timestamp(raw)
        except ValueError as exc:
            raise ValidationError(f"{name}: {exc}", details={"field": name}) from None

    def duration(self, name: str) -> int | None:
        raw = self.get(name)
        if raw is None or raw == "":
            return None
        try:
            return parse_duration(raw)
        except ValueError as exc:
            raise ValidationError(f"{name}: {exc}", details={"field": name}) from None

    def time_range(self, now: int, *, default_secs: int, max_secs: int) -> tuple[int, int]:
        """``from``/``to``; a missing ``to`` is now, a missing ``from`` is ``default_secs`` before ``to``."""
        to_ns = self.timestamp("to")
        from_ns = self.timestamp("from")
        if to_ns is None:
            to_ns = now
        if from_ns is None:
            from_ns = max(0, to_ns - default_secs * 1_000_000_000)
        if from_ns > to_ns:
            raise ValidationError("'from' is after 'to'", details={"field": "from"})
        if to_ns - from_ns > max_secs * 1_000_000_000:
            raise ValidationError(f"time range is longer than {max_secs} s (http.max_query_range_secs)",
                                  details={"field": "from", "max_range_secs": max_secs})
        return from_ns, to_ns


def finite_float(value: Any, *, field: str, details: dict[str, Any]) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(f"{field} must be a number, got {type(value).__name__}", details=details)
    try:
        f = float(value)
    except OverflowError:
        raise ValidationError(f"{field} is out of range for a 64-bit float", details=details) from None
    if not math.isfinite(f):
        raise ValidationError(f"{field} must be finite (NaN and Infinity are refused)", details=details)
    return f

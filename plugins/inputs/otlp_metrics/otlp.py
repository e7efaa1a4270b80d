"""What the OTLP/HTTP metrics and logs inputs share: reading a request in either encoding into the
protobuf message, the spec's answers, and the request handler itself.

JSON bodies are loaded with orjson and handed to protobuf's own JSON parser, so both encodings end
in the same protobuf walk. OTLP's JSON differs from protobuf's JSON mapping in one place: trace and
span ids are hex, not base64; they are converted first (an id that is not hex becomes an id of the
wrong length, which the walk then rejects alone, as it would a bad binary id). Exemplars are
dropped before parsing (airisd does not store them).
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from starlette.requests import Request
from starlette.responses import Response

from airisd.errors import AirisError, ApiError, Backpressure
from airisd.http.request import read_body
from airisd.model import Batch, Signal
from airisd.otlp_traces import JSON, PROTOBUF, OtlpDecodeError, media_type, otlp_error_response

_BAD_ID = base64.b64encode(b"\xff").decode()


@dataclass
class Decoded:
    """Records decoded from one request, and how many were rejected and why (partial success)."""

    items: list[Any] = field(default_factory=list)
    rejected: int = 0
    message: str = ""

    def reject(self, where: str, reason: str, count: int = 1) -> None:
        self.rejected += count
        if not self.message:
            self.message = f"{where}: {reason}"


def _hex_to_b64(value: Any) -> Any:
    if not isinstance(value, str) or value == "":
        return value
    try:
        return base64.b64encode(bytes.fromhex(value)).decode()
    except ValueError:
        return _BAD_ID


def _fix_json(node: Any, id_keys: frozenset[str]) -> None:
    """Hex ids to base64 and exemplars out, in place, anywhere in the tree."""
    if isinstance(node, dict):
        for key in list(node):
            if key in id_keys:
                node[key] = _hex_to_b64(node[key])
            elif key == "exemplars":
                del node[key]
            else:
                _fix_json(node[key], id_keys)
    elif isinstance(node, list):
        for item in node:
            _fix_json(item, id_keys)


_ID_KEYS = frozenset(("traceId", "spanId", "trace_id", "span_id"))


def parse_request(body: bytes, content_type: str, message: Message) -> Message:
    """Fill ``message`` from a protobuf or OTLP-JSON body; OtlpDecodeError if it does not parse."""
    if media_type(content_type) == PROTOBUF:
        try:
            message.ParseFromString(body)
        except DecodeError as exc:
            raise OtlpDecodeError(f"body is not a protobuf {type(message).__name__}: {exc}") from None
        return message
    try:
        data = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise OtlpDecodeError(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise OtlpDecodeError("body must be a JSON object")
    _fix_json(data, _ID_KEYS)
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise OtlpDecodeError(f"body is not an OTLP {type(message).__name__}: {exc}") from None
    return message


def encode_response(response: Message, content_type: str) -> bytes:
    if media_type(content_type) == PROTOBUF:
        return bytes(response.SerializeToString())
    return json_format.MessageToJson(response, indent=None).encode()


Decoder = Callable[[bytes, str, int], Decoded]
Responder = Callable[[int, str], Message]  # (rejected, message) -> Export*ServiceResponse


async def handle(
    request: Request,
    *,
    plugin: Any,
    signal: Signal,
    decode: Decoder,
    respond: Responder,
    max_body: int,
    m_ingested: Any,
    m_rejected: Any,
) -> Response:
    """One OTLP/HTTP export request, answered as the spec says: 200 with the response message
    (partial success when something was rejected), 400 with a Status for a body that does not
    decode, 415 for another media type, 503 with Retry-After when queues are full."""
    ctype = request.headers.get("content-type", PROTOBUF)
    try:
        mt = media_type(ctype)
    except ApiError as exc:
        m_rejected.inc(1, plugin.name, "unsupported_media_type")
        return Response(otlp_error_response(exc.message, JSON), status_code=415, media_type=JSON)
    try:
        body = await read_body(request, max_body)
        decoded = decode(body, ctype, plugin.ctx.clock.time_ns())
    except (OtlpDecodeError, ApiError) as exc:
        m_rejected.inc(1, plugin.name, exc.code.lower())
        status = exc.status if 400 <= exc.status < 500 else 400
        return Response(otlp_error_response(exc.message, mt), status_code=status, media_type=mt)
    if decoded.items:
        try:
            await plugin.ctx.emit(Batch(signal, decoded.items))
        except Backpressure as exc:
            return Response(
                otlp_error_response(exc.message, mt, code=14),
                status_code=503,
                media_type=mt,
                headers={"Retry-After": str(max(1, exc.retry_after_secs))},
            )
        except AirisError as exc:
            return Response(otlp_error_response(exc.message, mt, code=14), status_code=503, media_type=mt)
        m_ingested.inc(len(decoded.items), plugin.name)
    if decoded.rejected:
        m_rejected.inc(decoded.rejected, plugin.name, "invalid_record")
    body_out = encode_response(respond(decoded.rejected, decoded.message), mt)
    return Response(body_out, status_code=200, media_type=mt)


Handler = Callable[[Request], Awaitable[Response]]

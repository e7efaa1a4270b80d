"""OTLP/HTTP traces: POST /v1/traces, protobuf or JSON, gzip, with OTLP's own responses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import Response

from airisd.errors import AirisError, ApiError, Backpressure
from airisd.hookspecs import hookimpl
from airisd.http.request import read_body
from airisd.model import Batch, Signal
from airisd.otlp_traces import (
    OtlpDecodeError,
    decode_otlp_traces_partial,
    media_type,
    otlp_error_response,
    otlp_success_response,
)
from airisd.plugin import Input, Plugin, PluginConfig, Route


class OtlpTracesConfig(PluginConfig):
    pass


class OtlpTracesInput(Input):
    name: ClassVar[str] = "otlp_traces"
    role: ClassVar[str | None] = "trace"
    Config: ClassVar[type[OtlpTracesConfig]] = OtlpTracesConfig
    description: ClassVar[str] = "OTLP/HTTP traces: POST /v1/traces (protobuf or JSON, gzip)"

    def __init__(self, config: OtlpTracesConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        self.m_ingested = ctx.metrics.counter("spans_ingested_total", "Spans accepted", ("input",))
        self.m_rejected = ctx.metrics.counter("spans_rejected_total", "Span requests refused, by reason",
                                              ("input", "reason"))

    def routes(self) -> Sequence[Route]:
        return (Route("POST", "/v1/traces", self.export, name="otlp_traces", scope="write"),)

    async def export(self, request: Request) -> Response:
        ctype = request.headers.get("content-type", "application/x-protobuf")
        try:
            mt = media_type(ctype)
        except ApiError as exc:
            self.m_rejected.inc(1, self.name, "unsupported_media_type")
            return Response(otlp_error_response(exc.message, "application/json"), status_code=415,
                            media_type="application/json")
        try:
            body = await read_body(request, self.max_body, turn=True)
            batch = decode_otlp_traces_partial(body, ctype)
        except (OtlpDecodeError, ApiError) as exc:
            self.m_rejected.inc(1, self.name, exc.code.lower())
            status = exc.status if 400 <= exc.status < 500 else 400
            return Response(otlp_error_response(exc.message, mt), status_code=status, media_type=mt)
        if batch.spans:
            try:
                await self.ctx.emit(Batch(Signal.TRACES, batch.spans))
            except Backpressure as exc:
                # OTLP clients retry 429/502/503/504 and honour Retry-After.
                return Response(otlp_error_response(exc.message, mt, code=14), status_code=503, media_type=mt,
                                headers={"Retry-After": str(exc.retry_after_secs)})
            except AirisError as exc:
                return Response(otlp_error_response(exc.message, mt, code=14), status_code=503, media_type=mt)
        self.m_ingested.inc(len(batch.spans), self.name)
        if batch.rejected:
            self.m_rejected.inc(batch.rejected, self.name, "invalid_span")
        return Response(otlp_success_response(batch.rejected, batch.message, mt), status_code=200, media_type=mt)


@hookimpl
def airisd_plugin_classes() -> list[type[Plugin]]:
    return [OtlpTracesInput]


plugin_class = OtlpTracesInput

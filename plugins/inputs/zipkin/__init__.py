"""Zipkin v2 JSON: POST /api/v2/spans, answered 202 as Zipkin does."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import Response

from airisd.hookspecs import hookimpl
from airisd.http.request import read_body
from airisd.model import Batch, Signal
from airisd.plugin import Input, Plugin, PluginConfig, Route
from airisd.traceformats import spans_from_zipkin


class ZipkinConfig(PluginConfig):
    pass


class ZipkinInput(Input):
    name: ClassVar[str] = "zipkin"
    role: ClassVar[str | None] = "trace"
    Config: ClassVar[type[ZipkinConfig]] = ZipkinConfig
    description: ClassVar[str] = "Zipkin v2 JSON spans: POST /api/v2/spans"

    def __init__(self, config: ZipkinConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        self.m_ingested = ctx.metrics.counter("spans_ingested_total", "Spans accepted", ("input",))

    def routes(self) -> Sequence[Route]:
        return (Route("POST", "/api/v2/spans", self.post, name="zipkin_spans", scope="write"),)

    async def post(self, request: Request) -> Response:
        spans = spans_from_zipkin(await read_body(request, self.max_body))
        if spans:
            await self.ctx.emit(Batch(Signal.TRACES, spans))
        self.m_ingested.inc(len(spans), self.name)
        return Response(status_code=202)


@hookimpl
def airisd_plugin_classes() -> list[type[Plugin]]:
    return [ZipkinInput]


plugin_class = ZipkinInput

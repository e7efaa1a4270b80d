"""The seed's span API: POST /traces (one span, {"spans": [...]} or a list) and POST /traces/batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import Response

from airisd.hookspecs import hookimpl
from airisd.http.envelope import ok
from airisd.http.request import parse_json, read_body
from airisd.model import Batch, Signal
from airisd.plugin import Input, Plugin, PluginConfig, Route
from airisd.traceformats import spans_from_payload


class HttpTracesConfig(PluginConfig):
    pass


class HttpTracesInput(Input):
    name: ClassVar[str] = "http_traces"
    role: ClassVar[str | None] = "trace"
    Config: ClassVar[type[HttpTracesConfig]] = HttpTracesConfig
    description: ClassVar[str] = "The seed's span API: POST /traces, POST /traces/batch"

    def __init__(self, config: HttpTracesConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        self.m_ingested = ctx.metrics.counter("spans_ingested_total", "Spans accepted", ("input",))
        self.m_rejected = ctx.metrics.counter("spans_rejected_total", "Span requests refused, by reason",
                                              ("input", "reason"))

    def routes(self) -> Sequence[Route]:
        return (
            Route("POST", "/traces", self.post, name="traces_post", scope="write"),
            Route("POST", "/traces/batch", self.post, name="traces_batch", scope="write"),
        )

    async def post(self, request: Request) -> Response:
        try:
            spans = spans_from_payload(parse_json(await read_body(request, self.max_body)))
        except Exception as exc:
            self.m_rejected.inc(1, self.name, getattr(exc, "code", "error").lower())
            raise
        await self.ctx.emit(Batch(Signal.TRACES, spans))
        self.m_ingested.inc(len(spans), self.name)
        return ok(request, {"accepted": len(spans)}, message=f"{len(spans)} spans stored", status=201)


@hookimpl
def airisd_plugin_classes() -> list[type[Plugin]]:
    return [HttpTracesInput]


plugin_class = HttpTracesInput

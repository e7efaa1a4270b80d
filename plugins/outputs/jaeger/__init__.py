"""The jaeger output: spans to Jaeger (or any OTLP/HTTP receiver) as OTLP protobuf, and Jaeger's
query API as the trace role's store (``[stores] trace = "jaeger"``)."""

from __future__ import annotations

from typing import Any, ClassVar

import anyio
from airisd_plugins.outputs.jaeger.config import JaegerConfig, redacted
from airisd_plugins.outputs.jaeger.exporter import OtlpHttpExporter
from airisd_plugins.outputs.jaeger.otlp import encode_spans
from airisd_plugins.outputs.jaeger.query import JaegerQueryStore

from airisd.hookspecs import hookimpl
from airisd.model import Batch, Signal
from airisd.plugin import Output, Plugin

_ENCODE_IN_THREAD = 200  # spans: bigger batches are encoded off the event loop


class JaegerOutput(Output):
    name: ClassVar[str] = "jaeger"
    Config: ClassVar[type[JaegerConfig]] = JaegerConfig
    description: ClassVar[str] = "Spans to Jaeger as OTLP/HTTP protobuf; Jaeger's query API as the trace store"
    signals: ClassVar[frozenset[Signal]] = frozenset({Signal.TRACES})
    config: JaegerConfig

    def __init__(self, config: JaegerConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        self.url = config.traces_url()
        self.exporter = OtlpHttpExporter(self.url, headers=dict(config.headers), timeout_secs=config.timeout_secs,
                                         gzip_body=config.compression == "gzip")
        self._store: JaegerQueryStore | None = None
        self.m_rejected = ctx.metrics.counter(
            "jaeger_rejected_spans_total", "Spans a receiver accepted the request of but rejected (partial success)",
            ("endpoint",))

    async def start(self) -> None:
        await self.exporter.start()
        self.ctx.log.info("jaeger output", extra={"kv": {"endpoint": redacted(self.url)}})

    async def write(self, batch: Batch) -> None:
        if batch.signal is not Signal.TRACES or not batch.items:
            return
        items = batch.items
        if len(items) >= _ENCODE_IN_THREAD:
            body = await anyio.to_thread.run_sync(encode_spans, items)
        else:
            body = encode_spans(items)
        outcome = await self.exporter.export(body)  # RetryLater carries Retry-After to the runner
        if outcome.rejected_spans:
            self.m_rejected.inc(outcome.rejected_spans, redacted(self.url))
            self.ctx.log.warning("receiver rejected spans", extra={"kv": {
                "endpoint": redacted(self.url), "rejected": outcome.rejected_spans, "sent": len(items),
                "message": outcome.message[:200]}})

    def query_api(self, signal: Signal) -> Any | None:
        if signal is not Signal.TRACES:
            return None
        if self._store is None:
            self._store = JaegerQueryStore(self.config.query_base_url(), headers=dict(self.config.query_headers),
                                           timeout_secs=self.config.query_timeout_secs)
        return self._store

    async def check(self) -> dict[str, Any]:
        """For /health/detailed, when this output answers the trace role's queries: can the query
        API be read?"""
        if self._store is None:
            return {}
        where = self._store.shown_url
        try:
            await anyio.to_thread.run_sync(self._store.services)
        except Exception as exc:
            return {"traces": {"reachable": False, "query_url": where, "error": f"{type(exc).__name__}: {exc}"}}
        return {"traces": {"reachable": True, "query_url": where}}

    async def shutdown(self) -> None:
        await self.exporter.close()
        if self._store is not None:
            await anyio.to_thread.run_sync(self._store.close)


@hookimpl
def airisd_plugin_classes() -> list[type[Plugin]]:
    return [JaegerOutput]


plugin_class = JaegerOutput

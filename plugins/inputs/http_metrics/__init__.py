"""The seed's metrics ingestion API: POST /metrics and POST /metrics/batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from airisd_plugins.inputs.http_metrics.decode import Limits, decode_batch, decode_point
from starlette.requests import Request
from starlette.responses import Response

from airisd.hookspecs import hookimpl
from airisd.http.envelope import ok
from airisd.http.request import read_body
from airisd.model import Batch, Signal
from airisd.plugin import Input, Plugin, PluginConfig, Route


class HttpMetricsConfig(PluginConfig):
    ## Largest name, label count and label sizes accepted; larger is a 400 naming the field.
    max_name_length: int = 256
    max_labels: int = 64
    max_label_key_length: int = 128
    max_label_value_length: int = 1024
    ## Timestamps further than this in the future are refused (clock errors, ms sent as µs).
    max_future_secs: int = 7 * 86400
    max_batch_points: int = 50_000

    def validate(self) -> None:
        for name in ("max_name_length", "max_labels", "max_label_key_length", "max_label_value_length",
                     "max_batch_points"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


class HttpMetricsInput(Input):
    name: ClassVar[str] = "http_metrics"
    role: ClassVar[str | None] = "metrics"
    Config: ClassVar[type[HttpMetricsConfig]] = HttpMetricsConfig
    description: ClassVar[str] = "The seed's JSON metrics API: POST /metrics, POST /metrics/batch"
    config: HttpMetricsConfig

    def __init__(self, config: HttpMetricsConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        self.limits = Limits(
            max_name_length=config.max_name_length, max_labels=config.max_labels,
            max_label_key_length=config.max_label_key_length, max_label_value_length=config.max_label_value_length,
            max_future_secs=config.max_future_secs, max_batch_points=config.max_batch_points,
        )
        self.m_rejected = ctx.metrics.counter("points_rejected_total", "Metric points refused, by reason",
                                              ("input", "reason"))
        self.m_ingested = ctx.metrics.counter("points_ingested_total", "Metric points accepted", ("input",))

    def routes(self) -> Sequence[Route]:
        return (
            Route("POST", "/metrics", self.post_one, name="metrics_post", scope="write"),
            Route("POST", "/metrics/batch", self.post_batch, name="metrics_batch", scope="write"),
        )

    async def post_one(self, request: Request) -> Response:
        body = await read_body(request, self.max_body)
        try:
            point = decode_point(body, now_ns=self.ctx.clock.time_ns(), limits=self.limits)
        except Exception as exc:
            self.m_rejected.inc(1, self.name, getattr(exc, "code", "error").lower())
            raise
        await self.ctx.emit(Batch(Signal.METRICS, [point]))
        self.m_ingested.inc(1, self.name)
        return ok(request, {"accepted": 1}, message="Metric stored", status=201)

    async def post_batch(self, request: Request) -> Response:
        body = await read_body(request, self.max_body, turn=True)
        try:
            points = decode_batch(body, now_ns=self.ctx.clock.time_ns(), limits=self.limits)
        except Exception as exc:
            self.m_rejected.inc(1, self.name, getattr(exc, "code", "error").lower())
            raise
        await self.ctx.emit(Batch(Signal.METRICS, points))
        self.m_ingested.inc(len(points), self.name)
        return ok(request, {"accepted": len(points)}, message=f"{len(points)} metrics stored", status=201)


@hookimpl
def airisd_plugin_classes() -> list[type[Plugin]]:
    return [HttpMetricsInput]


plugin_class = HttpMetricsInput

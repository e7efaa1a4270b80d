"""OTLP/HTTP metrics: POST /v1/metrics, protobuf or JSON, gzip, with OTLP's own responses.
The mapping to points is in decode.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from airisd_plugins.inputs.otlp_metrics.decode import decode_metrics, metrics_response
from airisd_plugins.inputs.otlp_metrics.otlp import Decoded, handle
from airisd_plugins.inputs.prometheus_remote_write.shared import MetricLimitsConfig
from starlette.requests import Request
from starlette.responses import Response

from airisd.hookspecs import hookimpl
from airisd.model import Signal
from airisd.plugin import Input, Plugin, Route


class OtlpMetricsConfig(MetricLimitsConfig):
    """A data point beyond the limits is rejected alone (OTLP partial success)."""


class OtlpMetricsInput(Input):
    name: ClassVar[str] = "otlp_metrics"
    role: ClassVar[str | None] = "metrics"
    Config: ClassVar[type[OtlpMetricsConfig]] = OtlpMetricsConfig
    description: ClassVar[str] = "OTLP/HTTP metrics: POST /v1/metrics (protobuf or JSON, gzip)"
    config: OtlpMetricsConfig

    def __init__(self, config: OtlpMetricsConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        self.limits = config.metric_limits()
        self.m_ingested = ctx.metrics.counter("points_ingested_total", "Metric points accepted", ("input",))
        self.m_rejected = ctx.metrics.counter(
            "points_rejected_total", "Metric points refused, by reason", ("input", "reason")
        )

    def routes(self) -> Sequence[Route]:
        return (Route("POST", "/v1/metrics", self.export, name="otlp_metrics", scope="write"),)

    def _decode(self, body: bytes, content_type: str, now_ns: int) -> Decoded:
        return decode_metrics(body, content_type, now_ns, self.limits)

    async def export(self, request: Request) -> Response:
        return await handle(
            request,
            plugin=self,
            signal=Signal.METRICS,
            decode=self._decode,
            respond=metrics_response,
            max_body=self.max_body,
            m_ingested=self.m_ingested,
            m_rejected=self.m_rejected,
        )


@hookimpl
def airisd_plugin_classes() -> list[type[Plugin]]:
    return [OtlpMetricsInput]


plugin_class = OtlpMetricsInput

"""OTLP metrics (ExportMetricsServiceRequest) to points, named as Prometheus names them.

- gauge, sum → ``<name>`` (a sum is stored as sent: cumulative or delta);
- histogram → ``<name>_bucket{le="<bound>"}`` (cumulative counts, up to ``le="+Inf"``),
  ``<name>_sum``, ``<name>_count``, and ``<name>_min`` / ``<name>_max`` when sent;
- exponential histogram → ``<name>_count``, ``<name>_sum``, ``<name>_min`` / ``<name>_max`` when
  sent (its buckets are not stored);
- summary → ``<name>{quantile="<q>"}``, ``<name>_sum``, ``<name>_count``.

The metric name is kept as sent (``http.server.duration`` stays dotted; airisd's names may hold
dots). Labels: every resource attribute (``service.name``, ``host.name``, ...) and the instrumentation
scope's name as ``otel.scope.name``, then the data point's attributes, which win on a clash.
Attribute values become text (``true``/``false``, numbers written out, arrays and maps as JSON).
The time is the point's ``time_unix_nano`` (the time received when 0). A data point flagged "no
recorded value" is skipped; one whose value is NaN or infinite, or that breaks a limit, is
rejected alone and counted in the response's ``partial_success``.
"""

from __future__ import annotations

from typing import Any

from airisd_plugins.inputs.otlp_metrics.otlp import Decoded, parse_request
from airisd_plugins.inputs.prometheus_remote_write.shared import MetricLimits, label_text
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsPartialSuccess,
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from airisd.model import Point
from airisd.otlp_traces import _pb_attrs

NO_RECORDED_VALUE = 1


def format_bound(b: float) -> str:
    """A bucket bound as Prometheus writes ``le``: 1 not 1.0, +Inf."""
    if b == float("inf"):
        return "+Inf"
    if b == float("-inf"):
        return "-Inf"
    if b.is_integer() and abs(b) < 1e15:
        return str(int(b))
    return repr(b)


def _labels(attributes: Any) -> dict[str, str]:
    return {k: label_text(v) for k, v in _pb_attrs(attributes).items()}


class _Walker:
    def __init__(self, now_ns: int, limits: MetricLimits) -> None:
        self.now = now_ns
        self.limits = limits
        self.out = Decoded()

    def emit(self, where: str, points: list[Point]) -> None:
        """All points of one data point, or none (rejected alone)."""
        for p in points:
            problem = self.limits.problem(p)
            if problem is not None:
                self.out.reject(where, problem)
                return
        self.out.items.extend(points)

    def metric(self, where: str, m: Any, base: dict[str, str]) -> None:
        kind = m.WhichOneof("data")
        name = m.name
        if kind in ("gauge", "sum"):
            for i, dp in enumerate(getattr(m, kind).data_points):
                if dp.flags & NO_RECORDED_VALUE:
                    continue
                value = dp.as_double if dp.WhichOneof("value") == "as_double" else float(dp.as_int)
                labels = {**base, **_labels(dp.attributes)}
                self.emit(
                    f"{where}.{kind}.dataPoints[{i}]",
                    [Point(name=name, value=value, ts=dp.time_unix_nano or self.now, labels=labels)],
                )
        elif kind == "histogram":
            for i, dp in enumerate(m.histogram.data_points):
                self.histogram(f"{where}.histogram.dataPoints[{i}]", name, dp, base)
        elif kind == "exponential_histogram":
            for i, dp in enumerate(m.exponential_histogram.data_points):
                if dp.flags & NO_RECORDED_VALUE:
                    continue
                labels = {**base, **_labels(dp.attributes)}
                self.emit(
                    f"{where}.exponentialHistogram.dataPoints[{i}]",
                    self._stats(name, dp, labels, dp.time_unix_nano or self.now),
                )
        elif kind == "summary":
            for i, dp in enumerate(m.summary.data_points):
                if dp.flags & NO_RECORDED_VALUE:
                    continue
                labels = {**base, **_labels(dp.attributes)}
                ts = dp.time_unix_nano or self.now
                points = [
                    Point(
                        name=name,
                        value=q.value,
                        ts=ts,
                        labels={**labels, "quantile": format_bound(q.quantile)},
                    )
                    for q in dp.quantile_values
                ]
                points.append(Point(name=name + "_sum", value=dp.sum, ts=ts, labels=labels))
                points.append(Point(name=name + "_count", value=float(dp.count), ts=ts, labels=labels))
                self.emit(f"{where}.summary.dataPoints[{i}]", points)
        elif kind is not None:
            self.out.reject(where, f"metric {name[:60]!r}: unknown data kind {kind}")

    def _stats(self, name: str, dp: Any, labels: dict[str, str], ts: int) -> list[Point]:
        points = [Point(name=name + "_count", value=float(dp.count), ts=ts, labels=labels)]
        if dp.HasField("sum"):
            points.append(Point(name=name + "_sum", value=dp.sum, ts=ts, labels=labels))
        if dp.HasField("min"):
            points.append(Point(name=name + "_min", value=dp.min, ts=ts, labels=labels))
        if dp.HasField("max"):
            points.append(Point(name=name + "_max", value=dp.max, ts=ts, labels=labels))
        return points

    def histogram(self, where: str, name: str, dp: Any, base: dict[str, str]) -> None:
        if dp.flags & NO_RECORDED_VALUE:
            return
        bounds = list(dp.explicit_bounds)
        counts = list(dp.bucket_counts)
        if counts and len(counts) != len(bounds) + 1:
            self.out.reject(where, f"{len(counts)} bucket counts for {len(bounds)} bounds (want bounds + 1)")
            return
        labels = {**base, **_labels(dp.attributes)}
        ts = dp.time_unix_nano or self.now
        points: list[Point] = []
        if counts:
            running = 0
            for bound, count in zip([*bounds, float("inf")], counts, strict=True):
                running += count
                points.append(
                    Point(
                        name=name + "_bucket",
                        value=float(running),
                        ts=ts,
                        labels={**labels, "le": format_bound(bound)},
                    )
                )
        self.emit(where, points + self._stats(name, dp, labels, ts))


def decode_metrics(
    body: bytes, content_type: str, now_ns: int, limits: MetricLimits | None = None
) -> Decoded:
    """Points of an export request; raises OtlpDecodeError when the body does not decode."""
    request = parse_request(body, content_type, ExportMetricsServiceRequest())
    w = _Walker(now_ns, limits or MetricLimits())
    for ri, rm in enumerate(request.resource_metrics):  # type: ignore[attr-defined]
        res = _labels(rm.resource.attributes)
        for si, sm in enumerate(rm.scope_metrics):
            base = {**res, "otel.scope.name": sm.scope.name} if sm.scope.name else res
            for mi, m in enumerate(sm.metrics):
                w.metric(f"resourceMetrics[{ri}].scopeMetrics[{si}].metrics[{mi}]", m, base)
    return w.out


def metrics_response(rejected: int, message: str) -> ExportMetricsServiceResponse:
    response = ExportMetricsServiceResponse()
    if rejected or message:
        response.partial_success.CopyFrom(
            ExportMetricsPartialSuccess(rejected_data_points=rejected, error_message=message)
        )
    return response

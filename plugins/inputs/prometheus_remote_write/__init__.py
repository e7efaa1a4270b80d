"""Prometheus remote_write: POST /api/v1/write, snappy-compressed protobuf, as Prometheus, Grafana
Agent / Alloy, vmagent and the OTel Collector's prometheusremotewrite exporter send it.

v1 (``prometheus.WriteRequest``) is the default; v2 (``io.prometheus.write.v2.Request``, chosen
by ``Content-Type: application/x-protobuf;proto=io.prometheus.write.v2.Request``) is read too,
float samples only, and answered with the ``X-Prometheus-Remote-Write-*-Written`` headers.

Mapping: the ``__name__`` label is the point name, the other labels are its labels (unchanged),
the timestamp (ms) becomes ns. NaN samples (Prometheus' staleness markers) and infinities cannot
be stored and are skipped, counted in ``airisd_points_rejected_total{reason="non_finite"}``;
native histograms, exemplars and metadata are not stored (``reason="histogram"`` counts the
first). Answers: 204 when stored; 400 with a plain-text reason for a body that is not snappy or
not the protobuf message, or for series that break a rule (no name, too many labels), in which
case the valid series are stored first, as Prometheus' own receiver does (a 4xx is not retried);
503 with Retry-After when queues are full (Prometheus retries 5xx).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from airisd_plugins.inputs.prometheus_remote_write.proto import WriteRequest, WriteRequestV2
from airisd_plugins.inputs.prometheus_remote_write.shared import (
    MetricLimits,
    MetricLimitsConfig,
    SnappyError,
    read_raw_body,
    snappy_block,
)
from google.protobuf.message import DecodeError
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from airisd.errors import AirisError, Backpressure, PayloadTooLarge
from airisd.hookspecs import hookimpl
from airisd.model import Batch, Point, Signal
from airisd.plugin import Input, Plugin, Route
from airisd.timeparse import MAX_TS_NS

V2_PROTO = "io.prometheus.write.v2.Request"
V1_PROTO = "prometheus.WriteRequest"


class RemoteWriteError(ValueError):
    """The body is not a remote_write request (answer 400 with this text)."""


@dataclass
class Decoded:
    points: list[Point] = field(default_factory=list)
    invalid: int = 0  # series refused (no name, limits)
    first_problem: str = ""
    non_finite: int = 0
    histograms: int = 0


def proto_version(content_type: str) -> int:
    """1 or 2 from the Content-Type; RemoteWriteError for another message or media type."""
    parts = [p.strip() for p in content_type.split(";")]
    media = parts[0].lower()
    if media not in ("", "application/x-protobuf", "application/protobuf"):
        raise RemoteWriteError(
            f"Content-Type {content_type[:80]!r}: remote_write sends application/x-protobuf"
        )
    for p in parts[1:]:
        key, _, value = p.partition("=")
        if key.strip().lower() == "proto":
            value = value.strip().strip('"')
            if value == V2_PROTO:
                return 2
            if value != V1_PROTO:
                raise RemoteWriteError(
                    f"unsupported remote_write message {value[:80]!r} (accepted: {V1_PROTO}, {V2_PROTO})"
                )
    return 1


def _sample_ts(ms: int) -> int | None:
    ns = ms * 1_000_000
    return ns if 0 <= ns <= MAX_TS_NS else None


def decode_v1(data: bytes, limits: MetricLimits) -> Decoded:
    req = WriteRequest()
    try:
        req.ParseFromString(data)
    except DecodeError as exc:
        raise RemoteWriteError(f"body is not a protobuf WriteRequest: {exc}") from None
    out = Decoded()
    for ts in req.timeseries:
        labels = {lb.name: lb.value for lb in ts.labels}
        _add_series(out, labels, [(s.value, s.timestamp) for s in ts.samples], limits)
        out.histograms += len(ts.histograms)
    return out


def decode_v2(data: bytes, limits: MetricLimits) -> Decoded:
    req = WriteRequestV2()
    try:
        req.ParseFromString(data)
    except DecodeError as exc:
        raise RemoteWriteError(f"body is not a protobuf {V2_PROTO}: {exc}") from None
    symbols = list(req.symbols)
    out = Decoded()
    for i, ts in enumerate(req.timeseries):
        refs = list(ts.labels_refs)
        if len(refs) % 2 or any(r >= len(symbols) for r in refs):
            raise RemoteWriteError(
                f"timeseries[{i}]: labels_refs must be pairs of indexes into symbols ({len(symbols)} symbols)"
            )
        labels = {symbols[refs[j]]: symbols[refs[j + 1]] for j in range(0, len(refs), 2)}
        _add_series(out, labels, [(s.value, s.timestamp) for s in ts.samples], limits)
        out.histograms += len(ts.histograms)
    return out


def _add_series(
    out: Decoded, labels: dict[str, str], samples: list[tuple[float, int]], limits: MetricLimits
) -> None:
    name = labels.pop("__name__", "")
    if not name:
        out.invalid += 1
        out.first_problem = out.first_problem or f"series {labels!r} has no __name__ label"
        return
    problem = limits.problem(Point(name=name, value=0.0, ts=0, labels=labels))
    if problem is not None:
        out.invalid += 1
        out.first_problem = out.first_problem or problem
        return
    points = out.points
    inf = float("inf")
    for value, ms in samples:
        if value != value or value == inf or value == -inf:
            out.non_finite += 1
            continue
        ts = _sample_ts(ms)
        if ts is None:
            out.invalid += 1
            out.first_problem = out.first_problem or f"{name[:60]}: timestamp {ms} ms is out of range"
            continue
        points.append(Point(name=name, value=value, ts=ts, labels=labels))


class RemoteWriteConfig(MetricLimitsConfig):
    """A series beyond the limits is refused (400)."""


class RemoteWriteInput(Input):
    name: ClassVar[str] = "prometheus_remote_write"
    role: ClassVar[str | None] = "metrics"
    Config: ClassVar[type[RemoteWriteConfig]] = RemoteWriteConfig
    description: ClassVar[str] = "Prometheus remote_write: POST /api/v1/write (snappy protobuf, v1 and v2)"
    config: RemoteWriteConfig

    def __init__(self, config: RemoteWriteConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        self.limits = config.metric_limits()
        self.m_rejected = ctx.metrics.counter(
            "points_rejected_total", "Metric points refused, by reason", ("input", "reason")
        )
        self.m_ingested = ctx.metrics.counter("points_ingested_total", "Metric points accepted", ("input",))

    def routes(self) -> Sequence[Route]:
        return (Route("POST", "/api/v1/write", self.write, name="prometheus_remote_write", scope="write"),)

    def _bad(self, reason: str, message: str, status: int = 400) -> Response:
        self.m_rejected.inc(1, self.name, reason)
        return PlainTextResponse(message + "\n", status_code=status)

    async def write(self, request: Request) -> Response:
        try:
            version = proto_version(request.headers.get("content-type", ""))
        except RemoteWriteError as exc:
            return self._bad("unsupported_media_type", str(exc), 415)
        encoding = request.headers.get("content-encoding", "snappy").strip().lower()
        if encoding not in ("snappy", ""):
            return self._bad(
                "unsupported_media_type",
                f"Content-Encoding {encoding[:40]!r}: remote_write "
                "bodies are snappy-compressed (Content-Encoding: snappy)",
                415,
            )
        try:
            raw = await read_raw_body(request, self.max_body)
            data = snappy_block(raw, self.max_body)
            decoded = decode_v2(data, self.limits) if version == 2 else decode_v1(data, self.limits)
        except PayloadTooLarge as exc:
            return self._bad("payload_too_large", exc.message, 413)
        except (SnappyError, RemoteWriteError) as exc:
            return self._bad("invalid_body", str(exc))
        except AirisError as exc:
            return self._bad("invalid_body", exc.message, exc.status if 400 <= exc.status < 500 else 400)
        if decoded.non_finite:
            self.m_rejected.inc(decoded.non_finite, self.name, "non_finite")
        if decoded.histograms:
            self.m_rejected.inc(decoded.histograms, self.name, "histogram")
        if decoded.points:
            try:
                await self.ctx.emit(Batch(Signal.METRICS, decoded.points))
            except Backpressure as exc:
                return PlainTextResponse(
                    exc.message + "\n",
                    status_code=503,
                    headers={"Retry-After": str(max(1, exc.retry_after_secs))},
                )
            except AirisError as exc:
                return PlainTextResponse(exc.message + "\n", status_code=503 if exc.status >= 500 else 400)
            self.m_ingested.inc(len(decoded.points), self.name)
        if decoded.invalid:
            return self._bad(
                "invalid_series",
                f"{decoded.invalid} series or samples refused, "
                f"{len(decoded.points)} samples stored; first: {decoded.first_problem}",
            )
        headers = {}
        if version == 2:
            headers = {
                "X-Prometheus-Remote-Write-Samples-Written": str(len(decoded.points)),
                "X-Prometheus-Remote-Write-Histograms-Written": "0",
                "X-Prometheus-Remote-Write-Exemplars-Written": "0",
            }
        return Response(status_code=204, headers=headers)


@hookimpl
def airisd_plugin_classes() -> list[type[Plugin]]:
    return [RemoteWriteInput]


plugin_class = RemoteWriteInput

"""Self-tracing: airisd traces its own HTTP requests into its own trace pipeline.

With ``[tracing] self_tracing = true`` (the seed's ``ENABLE_DISTRIBUTED_TRACING``), a sampled
request becomes a span of service ``<role>-service`` (``metrics-service``, ``log-service``, ...)
and operation ``METHOD /route`` (``POST /metrics``), so the seed's example can be found in
airisd's own traces. A W3C ``traceparent`` header joins the caller's trace and its sampled flag
decides; otherwise ``sampling_rate`` (``JAEGER_SAMPLING_RATE``) does, by a hash of the trace id.
Spans are buffered and submitted once per ``flush_interval_secs``, off the request path; if the
trace pipeline pushes back, those self-spans are dropped and counted, never the user's data.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import anyio
import msgspec
from airisd_plugins.processors.sample import trace_hash

from airisd.errors import AirisError
from airisd.model import Batch, Signal, Span
from airisd.plugin import Emit
from airisd.selfmetrics import Registry

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
UNTRACED_ROUTES = frozenset({"/health", "/metrics/prometheus"})
MAX_BUFFERED = 10_000


class TracingConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    self_tracing: bool = False
    sampling_rate: float = 0.1
    flush_interval_secs: float = 1.0

    def validate(self) -> None:
        if not 0.0 <= self.sampling_rate <= 1.0:
            raise ValueError(f"sampling_rate must be between 0.0 and 1.0, got {self.sampling_rate}")
        if self.flush_interval_secs <= 0:
            raise ValueError("flush_interval_secs must be positive")


class SelfTracer:
    def __init__(self, config: TracingConfig, emit: Emit, metrics: Registry) -> None:
        self.config = config
        self.emit = emit
        self.threshold = int(config.sampling_rate * 2**64)
        self._buffer: list[Span] = []
        self.m_dropped = metrics.counter("selftrace_dropped_total", "Self-trace spans dropped (buffer or backpressure)")
        self.m_spans = metrics.counter("selftrace_spans_total", "Self-trace spans recorded")

    def decide(self, traceparent: str | None) -> tuple[str, str, bool] | None:
        """(trace id, parent span id, sampled) for a request, or None to leave it untraced."""
        if traceparent:
            m = _TRACEPARENT.match(traceparent.strip().lower())
            if m and m.group(1) != "0" * 32:
                return m.group(1), m.group(2), bool(int(m.group(3), 16) & 1)
        trace_id = secrets.token_hex(16)
        return trace_id, "", trace_hash(trace_id) < self.threshold

    def record(self, *, role: str, method: str, route: str, target: str, status: int, start_ns: int, end_ns: int,
               traceparent: str | None) -> None:
        if route in UNTRACED_ROUTES:
            return
        decision = self.decide(traceparent)
        if decision is None or not decision[2]:
            return
        if len(self._buffer) >= MAX_BUFFERED:
            self.m_dropped.inc()
            return
        trace_id, parent, _ = decision
        tags: dict[str, Any] = {"http.method": method, "http.route": route, "http.target": target[:512],
                                "http.status_code": status, "component": "airisd"}
        self._buffer.append(Span(
            trace_id=trace_id, span_id=secrets.token_hex(8), parent_span_id=parent,
            operation_name=f"{method} {route}", service_name=f"{role}-service", start_ts=start_ns,
            end_ts=max(end_ns, start_ns), kind="server", error=status >= 500, tags=tags))
        self.m_spans.inc()

    async def run(self) -> None:
        while True:
            await anyio.sleep(self.config.flush_interval_secs)
            await self.flush()

    async def flush(self) -> None:
        if not self._buffer:
            return
        spans, self._buffer = self._buffer, []
        try:
            await self.emit(Batch(Signal.TRACES, spans))
        except AirisError:
            self.m_dropped.inc(len(spans))

"""The records that flow through the pipeline, one type per signal.

Timestamps are integer nanoseconds since the Unix epoch (UTC) everywhere inside the daemon; the
edges (HTTP, stores) convert. Records are msgspec Structs: cheap to build, to copy and to encode.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec


class Signal(StrEnum):
    METRICS = "metrics"
    LOGS = "logs"
    TRACES = "traces"


# The records are not tracked by the cycle collector (gc=False): they hold strings, numbers and
# containers of them, never a cycle, and ingestion makes thousands per request, whose tracking made
# each one ~3x dearer to create (and a metric batch's decoding ~15%).


class Point(msgspec.Struct, kw_only=True, gc=False):
    """One metric sample: a series (name + labels) at a time."""

    name: str
    value: float
    ts: int  # ns since epoch
    labels: dict[str, str] = msgspec.field(default_factory=dict)


class LogRecord(msgspec.Struct, kw_only=True, gc=False):
    """One log line. Fields beyond the seed's named ones live in ``attributes``."""

    ts: int  # ns since epoch
    level: str  # normalised: TRACE, DEBUG, INFO, WARN, ERROR, FATAL or UNKNOWN
    message: str
    service: str = ""
    trace_id: str = ""
    span_id: str = ""
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    stack_trace: str = ""
    user_id: str = ""
    request_id: str = ""
    attributes: dict[str, Any] = msgspec.field(default_factory=dict)


class SpanLog(msgspec.Struct, kw_only=True, gc=False):
    """An event inside a span (the seed's ``logs`` entries, OTLP span events)."""

    ts: int
    message: str = ""
    fields: dict[str, Any] = msgspec.field(default_factory=dict)


class Span(msgspec.Struct, kw_only=True, gc=False):
    """One span. ``end_ts - start_ts`` is its duration in ns."""

    trace_id: str
    span_id: str
    parent_span_id: str = ""
    operation_name: str
    service_name: str
    start_ts: int
    end_ts: int
    kind: str = ""  # server, client, producer, consumer, internal or ""
    error: bool = False
    tags: dict[str, str | int | float | bool] = msgspec.field(default_factory=dict)
    logs: list[SpanLog] = msgspec.field(default_factory=list)

    @property
    def duration_ns(self) -> int:
        return self.end_ts - self.start_ts


Record = Point | LogRecord | Span

SIGNAL_OF_TYPE: dict[type, Signal] = {Point: Signal.METRICS, LogRecord: Signal.LOGS, Span: Signal.TRACES}


class Batch:
    """Records of one signal travelling together through processors to outputs."""

    __slots__ = ("ahead", "items", "signal")

    def __init__(self, signal: Signal, items: list[Any]) -> None:
        self.signal = signal
        self.items = items
        # What outputs prepared from these items when the batch was queued, by output name
        # (Output.prepare_ahead); a batch read back from a disk buffer has none.
        self.ahead: dict[str, Any] | None = None

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"Batch({self.signal.value}, {len(self.items)} items)"

"""The wire format between the ``kafka`` output and the ``kafka`` input, shared by both.

One Kafka message carries a list of records of one signal that share one key (a metric series, a
service, a trace id; or none), so a consumer that keeps a key's partition keeps its order, and a
batch of a thousand points is a handful of messages rather than a thousand.

    value    a JSON array (default) or a MessagePack array of records, in the field names of
             airisd.model (Point, LogRecord, Span); timestamps are integer ns since the epoch
    key      the records' key as UTF-8, or no key
    headers  airisd-signal: metrics | logs | traces
             airisd-encoding: json | msgpack
             airisd-records: how many records the value holds

Decoding is typed (msgspec): a message whose value does not decode into records of its signal, or
whose timestamps or values could not be stored, is refused with ``BadMessage`` and the consumer
counts and skips it (a poison message must not jam the group).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import msgspec

from airisd.model import LogRecord, Point, Signal, Span

FORMATS = ("json", "msgpack")
HEADER_SIGNAL = "airisd-signal"
HEADER_ENCODING = "airisd-encoding"
HEADER_RECORDS = "airisd-records"
MAX_TS_NS = (1 << 63) - 1

RECORD_TYPES: dict[Signal, type] = {Signal.METRICS: Point, Signal.LOGS: LogRecord, Signal.TRACES: Span}

# Which key each signal may be partitioned by; the first is the default.
KEYS: dict[Signal, tuple[str, ...]] = {
    Signal.METRICS: ("series", "name", "none"),
    Signal.LOGS: ("service", "trace_id", "none"),
    Signal.TRACES: ("trace_id", "service", "none"),
}


class BadMessage(ValueError):
    """A message that cannot become records: the consumer counts it, logs it and skips it."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


# -- keys -----------------------------------------------------------------------------------------

def _series_key(p: Point) -> str:
    if not p.labels:
        return p.name
    return p.name + "{" + ",".join(f"{k}={p.labels[k]}" for k in sorted(p.labels)) + "}"


KEY_FUNCS: dict[tuple[Signal, str], Callable[[Any], str]] = {
    (Signal.METRICS, "series"): _series_key,
    (Signal.METRICS, "name"): lambda p: p.name,
    (Signal.LOGS, "service"): lambda r: r.service,
    (Signal.LOGS, "trace_id"): lambda r: r.trace_id,
    (Signal.TRACES, "trace_id"): lambda s: s.trace_id,
    (Signal.TRACES, "service"): lambda s: s.service_name,
}


def group_by_key(signal: Signal, key: str, items: Sequence[Any], max_records: int) -> Iterator[tuple[str, list[Any]]]:
    """Records in groups of at most ``max_records`` sharing one key ("" for none), each group in
    the order the records came."""
    func = KEY_FUNCS.get((signal, key))
    if func is None:
        for i in range(0, len(items), max_records):
            yield "", list(items[i:i + max_records])
        return
    groups: dict[str, list[Any]] = {}
    for item in items:
        groups.setdefault(func(item), []).append(item)
    for k, records in groups.items():
        for i in range(0, len(records), max_records):
            yield k, records[i:i + max_records]


# -- values ---------------------------------------------------------------------------------------

_JSON_ENC = msgspec.json.Encoder()
_MSGPACK_ENC = msgspec.msgpack.Encoder()
_DECODERS: dict[tuple[Signal, str], Callable[[bytes], list[Any]]] = {}
for _sig, _typ in RECORD_TYPES.items():
    _DECODERS[(_sig, "json")] = msgspec.json.Decoder(list[_typ]).decode  # type: ignore[valid-type]
    _DECODERS[(_sig, "msgpack")] = msgspec.msgpack.Decoder(list[_typ]).decode  # type: ignore[valid-type]


def encode(items: Sequence[Any], fmt: str) -> bytes:
    """The message value for a list of records."""
    return _JSON_ENC.encode(items) if fmt == "json" else _MSGPACK_ENC.encode(items)


def headers(signal: Signal, fmt: str, count: int) -> list[tuple[str, bytes]]:
    return [(HEADER_SIGNAL, signal.value.encode()), (HEADER_ENCODING, fmt.encode()),
            (HEADER_RECORDS, str(count).encode())]


def read_headers(raw: Sequence[tuple[str, bytes]] | None, *, default_signal: Signal | None,
                 default_format: str) -> tuple[Signal, str]:
    """The signal and encoding a message declares; a message without headers (another producer)
    is taken as its topic's signal in the configured format."""
    signal, fmt = default_signal, default_format
    for name, value in raw or ():
        if name == HEADER_SIGNAL:
            try:
                signal = Signal(value.decode("utf-8", "replace"))
            except ValueError:
                raise BadMessage("bad_header", f"{HEADER_SIGNAL} {value[:40]!r} is not a signal") from None
        elif name == HEADER_ENCODING:
            fmt = value.decode("utf-8", "replace")
            if fmt not in FORMATS:
                raise BadMessage("bad_header", f"{HEADER_ENCODING} {value[:40]!r} is not json or msgpack")
    if signal is None:
        raise BadMessage("bad_header", f"no {HEADER_SIGNAL} header and the topic is not one of ours")
    return signal, fmt


def decode(signal: Signal, fmt: str, value: bytes | None) -> list[Any]:
    """The records of one message; ``BadMessage`` when it is not a list of storable records."""
    if not value:
        raise BadMessage("empty", "the message has no value")
    try:
        items = _DECODERS[(signal, fmt)](value)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BadMessage("undecodable", f"not a {fmt} list of {signal.value} records: {exc}") from None
    check = _CHECKS[signal]
    for item in items:
        problem = check(item)
        if problem:
            raise BadMessage("invalid_record", problem)
    return items


# The stores refuse (or choke on) what the HTTP inputs never let through: check it here too.
def _ts_ok(ts: int) -> bool:
    return 0 <= ts <= MAX_TS_NS


def _check_point(p: Point) -> str:
    if not _ts_ok(p.ts):
        return f"point {p.name!r}: timestamp {p.ts} out of range"
    if not math.isfinite(p.value):
        return f"point {p.name!r}: value {p.value} is not finite"
    return ""


def _check_log(r: LogRecord) -> str:
    return "" if _ts_ok(r.ts) else f"log record: timestamp {r.ts} out of range"


def _check_span(s: Span) -> str:
    if not (_ts_ok(s.start_ts) and _ts_ok(s.end_ts)):
        return f"span {s.span_id!r}: timestamps {s.start_ts}..{s.end_ts} out of range"
    for v in s.tags.values():
        if isinstance(v, int) and not isinstance(v, bool) and not -(1 << 63) <= v <= MAX_TS_NS:
            return f"span {s.span_id!r}: tag value {v} out of the 64-bit range"
    return ""


_CHECKS: dict[Signal, Callable[[Any], str]] = {
    Signal.METRICS: _check_point, Signal.LOGS: _check_log, Signal.TRACES: _check_span,
}

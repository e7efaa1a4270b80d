"""Decoding Loki push bodies: JSON and snappy-compressed protobuf ``logproto.PushRequest``.

JSON (``Content-Type: application/json``, optionally gzip)::

    {"streams": [{"stream": {"job": "api", "level": "error"},
                  "values": [["1705314600000000000", "line", {"trace_id": "..."}]]}]}

(the third element, structured metadata, is optional; the legacy form ``{"labels": "{job=\\"api\\"}",
"entries": [{"ts": "2024-01-15T10:30:00Z", "line": "..."}]}`` is read too).

Protobuf (``Content-Type: application/x-protobuf``, the body a snappy block): ``PushRequest``
with ``streams[].labels`` as a label-set string ``{job="api", level="error"}`` (Go-quoted values)
and ``entries[]`` of (timestamp, line, structured metadata).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf.message import DecodeError

from airisd.timeparse import MAX_TS_NS, parse_timestamp

_PROTO = """
name: "airisd/loki_push.proto" package: "logproto" syntax: "proto3"
message_type {
  name: "PushRequest"
  field { name: "streams" number: 1 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".logproto.StreamAdapter" }
}
message_type {
  name: "StreamAdapter"
  field { name: "labels" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
  field { name: "entries" number: 2 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".logproto.EntryAdapter" }
  field { name: "hash" number: 3 label: LABEL_OPTIONAL type: TYPE_UINT64 }
}
message_type {
  name: "EntryAdapter"
  field { name: "timestamp" number: 1 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".logproto.Timestamp" }
  field { name: "line" number: 2 label: LABEL_OPTIONAL type: TYPE_STRING }
  field { name: "structuredMetadata" number: 3 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".logproto.LabelPairAdapter" }
}
message_type {
  name: "LabelPairAdapter"
  field { name: "name" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
  field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_STRING }
}
message_type {
  name: "Timestamp"
  field { name: "seconds" number: 1 label: LABEL_OPTIONAL type: TYPE_INT64 }
  field { name: "nanos" number: 2 label: LABEL_OPTIONAL type: TYPE_INT32 }
}
"""
_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(text_format.Parse(_PROTO, descriptor_pb2.FileDescriptorProto()))
PushRequest = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("logproto.PushRequest"))


class PushError(ValueError):
    """The body is not a Loki push request (400 with this text)."""


@dataclass
class Entry:
    ts: int
    line: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class Stream:
    labels: dict[str, str]
    entries: list[Entry]


_LABEL_NAME = re.compile(r"\s*([a-zA-Z_][a-zA-Z0-9_.]*)\s*=\s*\"")
_SIMPLE = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
}


def _go_unquote(s: str, i: int) -> tuple[str, int]:
    """Read a Go double-quoted string's body from s[i] (just after the opening quote)."""
    out: list[str] = []
    n = len(s)
    while i < n:
        c = s[i]
        if c == '"':
            return "".join(out), i + 1
        if c != "\\":
            out.append(c)
            i += 1
            continue
        if i + 1 >= n:
            break
        e = s[i + 1]
        if e in _SIMPLE:
            out.append(_SIMPLE[e])
            i += 2
        elif e in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[e]
            digits = s[i + 2 : i + 2 + width]
            try:
                code = int(digits, 16)
                if len(digits) != width:
                    raise ValueError
                out.append(chr(code))
            except ValueError:
                raise PushError(f"bad escape \\{e}{digits} in the label set") from None
            i += 2 + width
        elif e in "01234567":
            digits = s[i + 1 : i + 4]
            try:
                out.append(chr(int(digits, 8)))
            except ValueError:
                raise PushError(f"bad octal escape \\{digits} in the label set") from None
            i += 4
        else:
            raise PushError(f"bad escape \\{e} in the label set")
    raise PushError("unterminated label value in the label set")


def parse_label_set(text: str) -> dict[str, str]:
    """``{job="api", level="error"}`` → {"job": "api", "level": "error"}; PushError if malformed."""
    s = text.strip()
    if not (s.startswith("{") and s.endswith("}")):
        raise PushError(f'labels {text[:100]!r}: expected {{name="value", ...}}')
    labels: dict[str, str] = {}
    i, end = 1, len(s) - 1
    while True:
        while i < end and s[i] in " \t":
            i += 1
        if i >= end:
            return labels
        m = _LABEL_NAME.match(s, i, end)
        if m is None:
            raise PushError(f'labels {text[:100]!r}: expected name="value" at offset {i}')
        value, i = _go_unquote(s[:end], m.end())
        labels[m.group(1)] = value
        while i < end and s[i] in " \t":
            i += 1
        if i < end:
            if s[i] != ",":
                raise PushError(f"labels {text[:100]!r}: expected , at offset {i}")
            i += 1


def _ns(value: Any, where: str) -> int:
    if isinstance(value, str) and value.isdigit():
        ts = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        ts = value
    else:
        raise PushError(f"{where}: timestamp must be a string of Unix nanoseconds, got {str(value)[:40]!r}")
    if not 0 <= ts <= MAX_TS_NS:
        raise PushError(f"{where}: timestamp {ts} is out of range")
    return ts


def _metadata(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise PushError(f"{where}: structured metadata must be an object of strings")
    return value


def decode_json(body: bytes) -> list[Stream]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PushError(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("streams"), list):
        raise PushError('body must be {"streams": [...]}')
    streams: list[Stream] = []
    for si, st in enumerate(data["streams"]):
        where = f"streams[{si}]"
        if not isinstance(st, dict):
            raise PushError(f"{where}: must be an object")
        entries: list[Entry] = []
        if "entries" in st or "labels" in st:  # the legacy shape
            if not isinstance(st.get("labels"), str):
                raise PushError(f"{where}.labels: must be a label-set string")
            labels = parse_label_set(st["labels"])
            for ei, e in enumerate(st.get("entries") or []):
                if not isinstance(e, dict) or not isinstance(e.get("line"), str):
                    raise PushError(f'{where}.entries[{ei}]: must be {{"ts", "line"}}')
                try:
                    ts = parse_timestamp(e.get("ts") or e.get("timestamp"))  # type: ignore[arg-type]
                except (ValueError, TypeError) as exc:
                    raise PushError(f"{where}.entries[{ei}].ts: {exc}") from None
                entries.append(Entry(ts, e["line"]))
        else:
            raw_labels = st.get("stream", {})
            if not isinstance(raw_labels, dict) or not all(isinstance(v, str) for v in raw_labels.values()):
                raise PushError(f"{where}.stream: must be an object of strings")
            labels = raw_labels
            values = st.get("values")
            if not isinstance(values, list):
                raise PushError(f"{where}.values: must be an array of [timestamp, line] pairs")
            for vi, v in enumerate(values):
                vw = f"{where}.values[{vi}]"
                if not isinstance(v, list) or len(v) not in (2, 3) or not isinstance(v[1], str):
                    raise PushError(f'{vw}: must be ["<unix ns>", "<line>"] or with structured metadata')
                entries.append(Entry(_ns(v[0], vw), v[1], _metadata(v[2] if len(v) == 3 else None, vw)))
        streams.append(Stream(labels, entries))
    return streams


def decode_protobuf(data: bytes) -> list[Stream]:
    req = PushRequest()
    try:
        req.ParseFromString(data)
    except DecodeError as exc:
        raise PushError(f"body is not a protobuf PushRequest: {exc}") from None
    streams: list[Stream] = []
    for si, st in enumerate(req.streams):
        labels = parse_label_set(st.labels) if st.labels else {}
        entries = []
        for ei, e in enumerate(st.entries):
            ts = e.timestamp.seconds * 1_000_000_000 + e.timestamp.nanos
            if not 0 <= ts <= MAX_TS_NS:
                raise PushError(f"streams[{si}].entries[{ei}]: timestamp is out of range")
            entries.append(Entry(ts, e.line, {p.name: p.value for p in e.structuredMetadata}))
        streams.append(Stream(labels, entries))
    return streams


def encode_protobuf(streams: list[Stream]) -> bytes:
    """A PushRequest as promtail builds it (for tests and benchmarks; not snappy-compressed)."""
    req = PushRequest()
    for st in streams:
        s = req.streams.add()
        s.labels = "{" + ", ".join(f'{k}="{_go_quote(v)}"' for k, v in st.labels.items()) + "}"
        for e in st.entries:
            entry = s.entries.add()
            entry.timestamp.seconds, entry.timestamp.nanos = divmod(e.ts, 1_000_000_000)
            entry.line = e.line
            for k, v in e.metadata.items():
                pair = entry.structuredMetadata.add()
                pair.name, pair.value = k, v
    return bytes(req.SerializeToString())


def _go_quote(v: str) -> str:
    out = (
        v.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return "".join(
        c if c.isprintable() or c == " " else f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}"
        for c in out
    )

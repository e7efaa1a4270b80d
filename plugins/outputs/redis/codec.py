"""One record, one stream entry: how records become XADD fields and back.

``fields`` (the default): every field of the record that is not at its default becomes a stream
field, so consumers (``XREAD``, ``XRANGE``, consumer groups) read ``level`` or ``value`` without a
decoder: strings as they are, numbers in their exact text (``repr`` of a float round-trips),
booleans as ``true``/``false``, maps and lists as JSON. ``json``: one field ``data`` holding the
record as JSON (msgspec; NaN and infinities as null). ``decode`` inverts both.
"""

from __future__ import annotations

from typing import Any

import msgspec

from airisd.model import LogRecord, Point, Record, Signal, Span

FORMATS = ("fields", "json")
TYPES: dict[Signal, type[Record]] = {Signal.METRICS: Point, Signal.LOGS: LogRecord, Signal.TRACES: Span}
SIGNALS: dict[type, Signal] = {cls: sig for sig, cls in TYPES.items()}
_json = msgspec.json.Encoder()
_defaults: dict[type, dict[str, Any]] = {}


def _defaults_of(cls: type) -> dict[str, Any]:
    found = _defaults.get(cls)
    if found is None:
        info = msgspec.inspect.type_info(cls)
        assert isinstance(info, msgspec.inspect.StructType)
        found = {}
        for f in info.fields:
            if f.default is not msgspec.NODEFAULT:
                found[f.name] = f.default
            elif f.default_factory is not msgspec.NODEFAULT:
                found[f.name] = f.default_factory()
        _defaults[cls] = found
    return found


def encode(record: Record, fmt: str = "fields") -> dict[str, str]:
    """The XADD fields of one record (text: Redis' Lua msgpack reader knows no binary type)."""
    if fmt == "json":
        return {"data": _json.encode(record).decode()}
    defaults = _defaults_of(type(record))
    out: dict[str, str] = {}
    for name in record.__struct_fields__:
        value = getattr(record, name)
        if name in defaults and value == defaults[name]:
            continue
        if isinstance(value, str):
            out[name] = value
        elif isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif isinstance(value, int | float):
            out[name] = repr(value)
        else:
            out[name] = _json.encode(value).decode()
    return out


def decode(signal: Signal, fields: dict[bytes, bytes] | dict[str, str]) -> Record:
    """A record back from its stream entry (either format)."""
    cls = TYPES[signal]
    raw = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
           for k, v in fields.items()}
    if set(raw) == {"data"}:
        return msgspec.json.decode(raw["data"], type=cls)
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    values: dict[str, Any] = {}
    for f in info.fields:
        if f.name not in raw:
            continue
        text = raw[f.name]
        kind = f.type
        if isinstance(kind, msgspec.inspect.StrType):
            values[f.name] = text
        elif isinstance(kind, msgspec.inspect.BoolType):
            values[f.name] = text == "true"
        elif isinstance(kind, msgspec.inspect.IntType):
            values[f.name] = int(text)
        elif isinstance(kind, msgspec.inspect.FloatType):
            values[f.name] = float(text)
        else:
            values[f.name] = msgspec.json.decode(text)
    return msgspec.convert(values, cls)

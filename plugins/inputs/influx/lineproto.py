"""InfluxDB line protocol: parse (and format, for tests and benchmarks).

    measurement[,tag=value...] field=value[,field=value...] [timestamp]

Escaping, as InfluxDB defines it: in the measurement a backslash escapes a comma or a space; in
tag keys, tag values and field keys it escapes a comma, an equals sign or a space; inside a
double-quoted string field it escapes a double quote or a backslash. A backslash before any other
character is a literal backslash. Field values: floats (``1``, ``-1.5``, ``1e3``), signed integers
(``1i``), unsigned integers (``1u``), strings (``"text"``, which may span lines), and booleans
(``t``, ``T``, ``true``, ``True``, ``TRUE`` and the ``f`` forms). Lines starting with ``#`` and
blank lines are skipped. NaN and infinities are not line protocol and are refused.

Most lines have no backslash and no quote: those take a fast path of ``str.split``; the others go
through a character scanner with the same rules.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

FieldValue = float | int | str | bool

_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INT = re.compile(r"[+-]?\d+")
_UINT = re.compile(r"\d+")
_DIGITS = frozenset("0123456789")
_TRUE = frozenset(("t", "T", "true", "True", "TRUE"))
_FALSE = frozenset(("f", "F", "false", "False", "FALSE"))
INT64_MIN, INT64_MAX, UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


class UInt(int):
    """An unsigned integer field (``1u``); kept apart from ``1i`` so a line formats back the same."""


@dataclass
class Line:
    measurement: str
    tags: dict[str, str] = field(default_factory=dict)
    fields: dict[str, FieldValue] = field(default_factory=dict)
    timestamp: int | None = None  # in the request's precision


class LineError(ValueError):
    """One line that does not parse; ``lineno`` counts from 1, ``text`` is the line."""

    def __init__(self, lineno: int, text: str, reason: str) -> None:
        super().__init__(f"unable to parse '{text[:200]}': {reason} (line {lineno})")
        self.lineno = lineno
        self.text = text
        self.reason = reason


class _Bad(ValueError):
    pass


def parse(text: str) -> Iterator[Line | LineError]:
    """Every line of a body, in order: a Line or a LineError for each non-blank, non-comment line.

    Lines of the same series share one (measurement, tags) result: the tags dict is the same
    object for all of them, so callers must not change it in place."""
    keys: dict[str, tuple[str, dict[str, str]]] = {}
    lines = text.split("\n")
    i = 0
    n = len(lines)
    while i < n:
        raw = lines[i]
        lineno = i + 1
        i += 1
        s = raw.strip(" \t\r")
        if not s or s[0] == "#":
            continue
        if "\\" not in s and '"' not in s:
            try:
                yield _parse_fast(s, keys)
            except _Bad as exc:
                yield LineError(lineno, s, str(exc))
            continue
        # A quoted string field may hold newlines (and trailing spaces): join following lines
        # while a quote is open, then strip what trails the whole line.
        s = raw.lstrip(" \t").rstrip("\r")
        while _open_quote(s) and i < n:
            s = s + "\n" + lines[i].rstrip("\r")
            i += 1
        s = s.rstrip(" \t")
        try:
            yield _parse_slow(s)
        except _Bad as exc:
            yield LineError(lineno, s, str(exc))


def _open_quote(s: str) -> bool:
    """True when s ends inside a double-quoted field string (only field values are quoted)."""
    state = 0  # 0: measurement and tags, 1: fields, 2: timestamp
    seen_field_char = False
    quoted = False
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if quoted:
            if c == "\\" and i + 1 < n and s[i + 1] in '"\\':
                i += 2
                continue
            if c == '"':
                quoted = False
        elif c == "\\":
            i += 2
            continue
        elif c == " ":
            if state == 0:
                state = 1
            elif state == 1 and seen_field_char:
                state = 2
        elif state == 1:
            seen_field_char = True
            if c == '"' and s[i - 1] == "=":
                quoted = True
        i += 1
    return quoted


def _parse_fast(s: str, keys: dict[str, tuple[str, dict[str, str]]]) -> Line:
    parts = s.split(" ")
    if "" in parts:  # runs of spaces; only spaces separate (split() would cut at U+00A0 too)
        parts = [p for p in parts if p]
    if len(parts) == 2:
        key, fields_s = parts
        ts = None
    elif len(parts) == 3:
        key, fields_s, ts_s = parts
        ts = _timestamp(ts_s)
    elif len(parts) < 2:
        raise _Bad("missing fields")
    else:
        raise _Bad("too many spaces: expected 'measurement[,tags] fields [timestamp]'")
    known = keys.get(key)
    if known is None:
        known = keys[key] = _key(key)
    meas, tags = known
    fields: dict[str, FieldValue] = {}
    for pair in fields_s.split(","):
        k, eq, v = pair.partition("=")
        if not eq or not k or not v:
            raise _Bad(f"invalid field {pair[:100]!r}: expected key=value")
        fields[k] = _scalar(v)
    return Line(meas, tags, fields, ts)


def _key(key: str) -> tuple[str, dict[str, str]]:
    tags: dict[str, str] = {}
    if "," in key:
        meas, *pairs = key.split(",")
        for pair in pairs:
            k, eq, v = pair.partition("=")
            if not eq or not k or not v or "=" in v:
                raise _Bad(f"invalid tag {pair[:100]!r}: expected key=value")
            tags[k] = v
    else:
        meas = key
    if not meas:
        raise _Bad("missing measurement")
    return meas, tags


def _timestamp(ts_s: str) -> int:
    if ts_s.isascii() and ts_s.isdigit():  # the common case, without the regex
        value = int(ts_s)
        if value > INT64_MAX:
            raise _Bad(f"timestamp {ts_s[:40]} is out of the int64 range")
        return value
    if not _INT.fullmatch(ts_s):
        raise _Bad(f"bad timestamp {ts_s[:40]!r}")
    value = int(ts_s)
    if not INT64_MIN <= value <= INT64_MAX:
        raise _Bad(f"timestamp {ts_s[:40]} is out of the int64 range")
    return value


def _scalar(v: str) -> FieldValue:
    last = v[-1]
    if last in _DIGITS and v.isascii() and "_" not in v:  # a plain float: float() alone decides
        try:
            f = float(v)
        except ValueError:
            raise _Bad(f"invalid field value {v[:60]!r}") from None
        if not math.isfinite(f):
            raise _Bad(f"float {v[:40]} is out of range")
        return f
    if last == "i" and _INT.fullmatch(v, 0, len(v) - 1):
        n = int(v[:-1])
        if not INT64_MIN <= n <= INT64_MAX:
            raise _Bad(f"integer {v[:40]} is out of the int64 range")
        return n
    if last == "u" and _UINT.fullmatch(v, 0, len(v) - 1):
        u = int(v[:-1])
        if u > UINT64_MAX:
            raise _Bad(f"unsigned integer {v[:40]} is out of the uint64 range")
        return UInt(u)
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    if _FLOAT.fullmatch(v):
        f = float(v)
        if not math.isfinite(f):
            raise _Bad(f"float {v[:40]} is out of range")
        return f
    raise _Bad(f"invalid field value {v[:60]!r}")


def _token(s: str, i: int, stops: str, escapable: str) -> tuple[str, int]:
    out: list[str] = []
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\" and i + 1 < n and s[i + 1] in escapable:
            out.append(s[i + 1])
            i += 2
            continue
        if c in stops:
            break
        out.append(c)
        i += 1
    return "".join(out), i


def _parse_slow(s: str) -> Line:
    n = len(s)
    meas, i = _token(s, 0, ", ", ", ")
    if not meas:
        raise _Bad("missing measurement")
    tags: dict[str, str] = {}
    while i < n and s[i] == ",":
        k, i = _token(s, i + 1, ",= ", ",= ")
        if i >= n or s[i] != "=" or not k:
            raise _Bad(f"invalid tag key {k[:100]!r}: expected key=value")
        v, i = _token(s, i + 1, ",= ", ",= ")
        if not v or (i < n and s[i] == "="):
            raise _Bad(f"invalid value for tag {k[:100]!r}")
        tags[k] = v
    if i >= n or s[i] != " ":
        raise _Bad("missing fields")
    while i < n and s[i] == " ":
        i += 1
    fields: dict[str, FieldValue] = {}
    while True:
        k, i = _token(s, i, ",= ", ",= ")
        if i >= n or s[i] != "=" or not k:
            raise _Bad(f"invalid field {k[:100]!r}: expected key=value")
        i += 1
        if i < n and s[i] == '"':
            value, i = _quoted(s, i + 1)
            fields[k] = value
        else:
            start = i
            while i < n and s[i] not in ", ":
                i += 1
            if i == start:
                raise _Bad(f"missing value for field {k[:100]!r}")
            fields[k] = _scalar(s[start:i])
        if i < n and s[i] == ",":
            i += 1
            continue
        break
    while i < n and s[i] == " ":
        i += 1
    ts = _timestamp(s[i:].strip()) if i < n else None
    return Line(meas, tags, fields, ts)


def _quoted(s: str, i: int) -> tuple[str, int]:
    out: list[str] = []
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\" and i + 1 < n and s[i + 1] in '"\\':
            out.append(s[i + 1])
            i += 2
            continue
        if c == '"':
            i += 1
            if i < n and s[i] not in ", ":
                raise _Bad("unexpected character after a string field")
            return "".join(out), i
        out.append(c)
        i += 1
    raise _Bad("unterminated string field")


# -- formatting ----------------------------------------------------------------------------------

_MEAS_ESC = str.maketrans({",": "\\,", " ": "\\ "})
_KEY_ESC = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_STR_ESC = str.maketrans({'"': '\\"', "\\": "\\\\"})


def _fmt_value(v: FieldValue) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, UInt):
        return f"{int(v)}u"
    if isinstance(v, int):
        return f"{v}i"
    if isinstance(v, float):
        return repr(v)
    return '"' + v.translate(_STR_ESC) + '"'


def _esc_key(k: str) -> str:
    """A key or tag value: a trailing backslash would escape the separator after it, so it is not
    representable; callers avoid it (InfluxDB has the same hole)."""
    return k.translate(_KEY_ESC)


def format_line(line: Line) -> str:
    head = line.measurement.translate(_MEAS_ESC)
    if line.tags:
        head += "," + ",".join(f"{_esc_key(k)}={_esc_key(v)}" for k, v in line.tags.items())
    body = ",".join(f"{_esc_key(k)}={_fmt_value(v)}" for k, v in line.fields.items())
    out = f"{head} {body}"
    if line.timestamp is not None:
        out += f" {line.timestamp}"
    return out

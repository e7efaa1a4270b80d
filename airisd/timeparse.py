"""Timestamps and durations as users write them, to and from integer nanoseconds.

Accepted timestamps: RFC 3339 / ISO 8601 with or without fractions and offsets (no offset means
UTC), and numbers as epoch seconds or milliseconds (or micro-/nanoseconds), told apart by magnitude.
Absurd values (before 1970, after 2262, or NaN) are errors, not clamped.
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime
from decimal import Decimal

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000
MAX_TS_NS = 9_223_372_036_854_775_807  # int64: the year 2262

# Epoch numbers: below 1e11 seconds (year 5138) is seconds, below 1e14 is ms, below 1e17 is µs,
# else ns. The same rule Vector and VictoriaMetrics use, give or take the boundaries.
_S_LIMIT = 1e11
_MS_LIMIT = 1e14
_US_LIMIT = 1e17

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?\s*(Z|z|[+-]\d{2}:?\d{2})?$"
)
_DATE_ONLY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def now_ns() -> int:
    return time.time_ns()


def parse_timestamp(value: str | int | float) -> int:
    """Return ns since the epoch, or raise ValueError saying what was expected."""
    if isinstance(value, bool):
        raise ValueError("expected an RFC 3339 string or epoch seconds/milliseconds, got a boolean")
    if isinstance(value, int | float):
        return _from_number(value)
    if not isinstance(value, str):
        raise ValueError(f"expected an RFC 3339 string or a number, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise ValueError("empty timestamp")
    if re.fullmatch(r"[+-]?\d+(\.\d+)?", text):
        return _from_number(Decimal(text) if "." in text else int(text))
    return _from_rfc3339(text)


def _from_number(value: int | float | Decimal) -> int:
    shown = str(value)[:64]
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("timestamp must be a finite number")
        # The digits the sender wrote (1705314600.123), not the binary float's error: value * 1e9 in
        # floating point would store .122999906 and show .122.
        value = Decimal(repr(value))
    if value < 0:
        raise ValueError(f"timestamp {shown} is before 1970")
    if value < _S_LIMIT:
        ns = round(value * NS_PER_S)
    elif value < _MS_LIMIT:
        ns = round(value * NS_PER_MS)
    elif value < _US_LIMIT:
        ns = round(value * 1000)
    else:
        ns = int(value)
    if ns > MAX_TS_NS:
        raise ValueError(f"timestamp {shown} is out of range")
    return ns


def _from_rfc3339(text: str) -> int:
    m = _RFC3339.match(text)
    if m is None:
        d = _DATE_ONLY.match(text)
        if d is None:
            raise ValueError(f"{text[:64]!r} is not an RFC 3339 timestamp (e.g. 2024-01-15T10:30:00Z)")
        year, month, day = (int(g) for g in d.groups())
        hh = mm = ss = 0
        frac, offset = "", None
    else:
        year, month, day, hh, mm, ss = (int(g) for g in m.groups()[:6])
        frac, offset = m.group(7) or "", m.group(8)
    if year < 1970 or year > 2262:
        raise ValueError(f"timestamp year {year} is out of range (1970-2262)")
    try:
        # Leap second 60 is folded onto 59.999999999 rather than rejected.
        leap = ss == 60
        dt = datetime(year, month, day, hh, mm, 59 if leap else ss, tzinfo=UTC)
    except ValueError as exc:
        raise ValueError(f"{text[:64]!r}: {exc}") from None
    secs = int(dt.timestamp())
    if offset and offset not in ("Z", "z"):
        sign = 1 if offset[0] == "+" else -1
        digits = offset[1:].replace(":", "")
        oh, om = int(digits[:2]), int(digits[2:])
        if oh > 23 or om > 59:
            raise ValueError(f"{text[:64]!r}: bad UTC offset")
        secs -= sign * (oh * 3600 + om * 60)
    ns = secs * NS_PER_S + int(frac.ljust(9, "0")) if frac else secs * NS_PER_S
    if leap:
        ns += NS_PER_S - 1
    if ns < 0 or ns > MAX_TS_NS:
        raise ValueError(f"timestamp {text[:64]!r} is out of range")
    return ns


def format_ts(ns: int) -> str:
    """RFC 3339 in UTC with millisecond precision and a Z, as the seed's responses show."""
    secs, rem = divmod(ns, NS_PER_S)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    return f"{base}.{rem // NS_PER_MS:03d}Z"


_DURATION_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": NS_PER_MS,
    "s": NS_PER_S,
    "m": 60 * NS_PER_S,
    "h": 3600 * NS_PER_S,
    "d": 86400 * NS_PER_S,
    "w": 7 * 86400 * NS_PER_S,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d|w)")
MAX_DURATION_NS = 10 * 365 * 86400 * NS_PER_S


def parse_duration(text: str) -> int:
    """'500ms', '1.5s', '2m', '1h30m', '1d' -> ns. A bare number is refused (which unit?)."""
    if not isinstance(text, str):
        raise ValueError(f"expected a duration such as '500ms', '1.5s' or '2m', got {type(text).__name__}")
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    if len(s) > 64:
        raise ValueError(f"{text[:64]!r}... is not a duration (too long)")
    pos, total = 0, Decimal(0)  # exact: float loses nanoseconds past 2**53 (104 days)
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None:
            raise ValueError(
                f"{text[:64]!r} is not a duration (use a number and a unit: 500ms, 1.5s, 2m, 1h, 1d)")
        total += Decimal(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if total > MAX_DURATION_NS:
        raise ValueError(f"duration {text[:64]!r} is too long (at most 10 years)")
    return round(total)


def format_duration(ns: int) -> str:
    """The shortest exact spelling of ns in one unit: 60_000_000_000 -> '1m'."""
    for unit in ("w", "d", "h", "m", "s", "ms", "us"):
        size = _DURATION_UNITS[unit]
        if ns and ns % size == 0:
            return f"{ns // size}{unit}"
    return f"{ns}ns"

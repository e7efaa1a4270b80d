"""Small query-parameter grammars shared by the roles: label filters and bucket intervals."""

from __future__ import annotations

import re

from airisd.errors import ValidationError
from airisd.timeparse import NS_PER_S, parse_duration

_SPLIT = re.compile(r"(?<!\\),")
MIN_INTERVAL_NS = NS_PER_S
MAX_BUCKETS = 20_000


def parse_label_filter(text: str, *, field: str = "labels", max_items: int = 64) -> dict[str, str]:
    """``host:web-01,region:us-east-1`` -> {"host": "web-01", "region": "us-east-1"}.

    Each item is ``key:value``, split at the first colon (values may hold colons); a comma inside a
    value is written ``\\,``. All items must match (AND). A key given twice is an error.
    """
    out: dict[str, str] = {}
    if not text:
        return out
    items = _SPLIT.split(text)
    if len(items) > max_items:
        raise ValidationError(f"{field}: at most {max_items} label filters", details={"field": field})
    for item in items:
        key, sep, value = item.partition(":")
        key = key.strip()
        value = value.replace("\\,", ",")
        if not sep or not key:
            raise ValidationError(
                f"{field}: {item[:60]!r} is not key:value (e.g. labels=host:web-server-01)", details={"field": field})
        if key in out:
            raise ValidationError(f"{field}: label {key[:60]!r} is given twice", details={"field": field})
        out[key] = value
    return out


def format_label_filter(labels: dict[str, str]) -> str:
    return ",".join(f"{k}:{v.replace(',', chr(92) + ',')}" for k, v in labels.items())


def parse_interval(text: str, *, from_ns: int, to_ns: int, field: str = "interval") -> int:
    """A bucket width such as 10s, 1m, 5m, 1h, 1d (whole seconds, at least 1 s)."""
    try:
        step = parse_duration(text)
    except ValueError as exc:
        raise ValidationError(f"{field}: {exc}", details={"field": field}) from None
    if step < MIN_INTERVAL_NS or step % NS_PER_S:
        raise ValidationError(f"{field}: {text!r} must be a whole number of seconds, at least 1s",
                              details={"field": field})
    if (to_ns - from_ns) // step > MAX_BUCKETS:
        raise ValidationError(
            f"{field}: {text!r} over this range makes more than {MAX_BUCKETS} buckets; widen the interval",
            details={"field": field})
    return step

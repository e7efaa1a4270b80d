"""Small query-parameter grammars shared by the roles: label filters and bucket intervals."""

from __future__ import annotations

from airisd.errors import ValidationError
from airisd.timeparse import NS_PER_S, parse_duration

MIN_INTERVAL_NS = NS_PER_S
MAX_BUCKETS = 20_000


def _split_items(text: str) -> list[str]:
    """Split at commas; ``\\,`` is a literal comma and ``\\\\`` a literal backslash (any other
    backslash is itself, so ``path:C:\\temp`` needs no escaping)."""
    items: list[str] = []
    cur: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n and text[i + 1] in ",\\":
            cur.append(text[i + 1])
            i += 2
            continue
        if ch == ",":
            items.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    items.append("".join(cur))
    return items


def parse_label_filter(text: str, *, field: str = "labels", max_items: int = 64) -> dict[str, str]:
    """``host:web-01,region:us-east-1`` -> {"host": "web-01", "region": "us-east-1"}.

    Each item is ``key:value``, split at the first colon (values may hold colons); a comma inside a
    value is written ``\\,`` and a backslash before a comma ``\\\\``. All items must match (AND). A
    key given twice is an error.
    """
    out: dict[str, str] = {}
    if not text:
        return out
    items = _split_items(text)
    if len(items) > max_items:
        raise ValidationError(f"{field}: at most {max_items} label filters", details={"field": field})
    for item in items:
        key, sep, value = item.partition(":")
        key = key.strip()
        if not sep or not key:
            raise ValidationError(
                f"{field}: {item[:60]!r} is not key:value (e.g. labels=host:web-server-01)",
                details={"field": field})
        if key in out:
            raise ValidationError(f"{field}: label {key[:60]!r} is given twice", details={"field": field})
        out[key] = value
    return out


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,")


def format_label_filter(labels: dict[str, str]) -> str:
    """The inverse of parse_label_filter for keys without colons."""
    return ",".join(f"{_escape(k)}:{_escape(v)}" for k, v in labels.items())


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

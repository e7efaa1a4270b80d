"""The Prometheus text exposition format (0.0.4), as a scrape target serves it on /metrics.

    # HELP http_requests_total The total number of HTTP requests.
    # TYPE http_requests_total counter
    http_requests_total{method="post",code="200"} 1027 1395066363000
    http_request_duration_seconds_bucket{le="0.05"} 24054

Histograms and summaries need nothing special: their series already carry their suffixes
(``_bucket`` with ``le``, ``_sum``, ``_count``; the summary's ``quantile`` label). Values are Go
floats including ``NaN``, ``+Inf`` and ``-Inf``; the optional timestamp is integer milliseconds.
Label values escape ``\\``, ``\"`` and ``\n``. OpenMetrics extras that can reach a 0.0.4 parser
are tolerated: ``# EOF`` ends the text and an exemplar (`` # {...} v``) after the value is dropped.

``parse`` never raises: a line that does not parse is yielded as a ``TextError`` so the caller
can keep the others and report the first.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_FLOAT = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[iI][nN][fF](?:inity)?|[nN][aA][nN])")
_INT = re.compile(r"[+-]?\d+")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


@dataclass
class Sample:
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    value: float = 0.0
    timestamp_ms: int | None = None


class TextError(ValueError):
    def __init__(self, lineno: int, text: str, reason: str) -> None:
        super().__init__(f"line {lineno}: {reason}: {text[:120]!r}")
        self.lineno = lineno
        self.reason = reason


class _Bad(ValueError):
    pass


def parse(text: str) -> Iterator[Sample | TextError]:
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.strip(" \t\r")
        if not line:
            continue
        if line[0] == "#":
            if line == "# EOF":
                return
            continue
        try:
            yield _parse_line(line)
        except _Bad as exc:
            yield TextError(lineno, line, str(exc))


def _parse_line(s: str) -> Sample:
    m = _NAME.match(s)
    if m is None:
        raise _Bad("expected a metric name")
    name = m.group()
    i = m.end()
    n = len(s)
    labels: dict[str, str] = {}
    if i < n and s[i] == "{":
        i = _parse_labels(s, i + 1, labels)
    rest = s[i:].split()
    if rest and rest[0].startswith("#"):
        raise _Bad("missing value")
    if "#" in rest:  # an OpenMetrics exemplar follows
        rest = rest[: rest.index("#")]
    if not rest:
        raise _Bad("missing value")
    if len(rest) > 2 or (i < n and s[i] not in " \t"):
        raise _Bad("unexpected text after the sample")
    if not _FLOAT.fullmatch(rest[0]):
        raise _Bad(f"bad value {rest[0][:40]!r}")
    value = float(rest[0])
    ts = None
    if len(rest) == 2:
        if not _INT.fullmatch(rest[1]):
            raise _Bad(f"bad timestamp {rest[1][:40]!r}")
        ts = int(rest[1])
    return Sample(name, labels, value, ts)


def _parse_labels(s: str, i: int, labels: dict[str, str]) -> int:
    n = len(s)
    while True:
        while i < n and s[i] in " \t":
            i += 1
        if i < n and s[i] == "}":
            return i + 1
        m = _LABEL_NAME.match(s, i)
        if m is None:
            raise _Bad("expected a label name")
        key = m.group()
        i = m.end()
        while i < n and s[i] in " \t":
            i += 1
        if i + 1 >= n or s[i] != "=" or s[i + 1] != '"':
            raise _Bad(f'expected ="value" after label {key!r}')
        i += 2
        out: list[str] = []
        while True:
            if i >= n:
                raise _Bad(f"unterminated value of label {key!r}")
            c = s[i]
            if c == "\\" and i + 1 < n:
                nxt = s[i + 1]
                out.append(_ESCAPES.get(nxt, "\\" + nxt))
                i += 2
                continue
            if c == '"':
                i += 1
                break
            out.append(c)
            i += 1
        if key in labels:
            raise _Bad(f"label {key!r} appears twice")
        labels[key] = "".join(out)
        while i < n and s[i] in " \t":
            i += 1
        if i < n and s[i] == ",":
            i += 1
            continue
        if i < n and s[i] == "}":
            return i + 1
        raise _Bad("expected , or } in the label set")


def _fmt_value(v: float) -> str:
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


def format_sample(s: Sample) -> str:
    """One exposition line (for tests and fixtures)."""
    out = s.name
    if s.labels:
        esc = {
            k: v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for k, v in s.labels.items()
        }
        out += "{" + ",".join(f'{k}="{v}"' for k, v in esc.items()) + "}"
    out += " " + _fmt_value(s.value)
    if s.timestamp_ms is not None:
        out += f" {s.timestamp_ms}"
    return out

"""How a log record looks in Elasticsearch: the index template, the document, the index name.

The document keeps the record's fields under their own names (``@timestamp``, ``level``,
``service``, ``message``, ... as Kibana and the seed's ``sort=@timestamp:desc`` expect) and adds
what our query language needs to be answered exactly, on any Elasticsearch:

- ``ts_ns`` (long): the record's nanosecond timestamp. Ranges and sorting use it, so that the order
  and the bounds are those of the SQLite store to the nanosecond (``@timestamp`` is a date_nanos
  for people and dashboards).
- ``message`` and ``stack_trace`` (text) and a ``words`` sub-field of each short field are
  analysed by ``airis_words``: a pattern tokenizer with ``logquery``'s word pattern
  ``\\w+(?:[.-]\\w+)*`` and a lowercase filter, so that the index holds exactly the words that
  ``logquery.tokenize`` makes (``user-api``, ``db.query`` and ``10.0.0.1`` are one word each).
- ``airis`` (flattened): what whole-value comparisons look at, computed here: the short fields
  and label values lower-cased in ASCII only (SQLite's NOCASE), and each attribute as a typed
  token (``s:`` string, ``n:`` number in a canonical spelling, ``b:`` boolean, ``z:null``), so that
  ``status:500`` finds 500 and 500.0 but not the string "500.0", as in the SQLite store.
- ``labels`` is ``flattened`` (any key, no mapping explosion, no conflict between ``a`` and
  ``a.b``); ``attributes`` is an object with ``enabled: false``: kept in ``_source`` and returned,
  never mapped, so an application's odd attribute types can never cause a mapping conflict.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from typing import Any

import orjson

from airisd.logquery import FIELD_RE
from airisd.model import LogRecord

NS_PER_S = 1_000_000_000
SHORT_FIELDS = ("level", "service", "trace_id", "span_id", "user_id", "request_id")
TEXT_FIELDS = ("message", "stack_trace")
WORD_PATTERN = r"\w+(?:[.\-]\w+)*"  # logquery._TOKEN
IGNORE_ABOVE = 8191  # Lucene refuses terms over 32766 bytes: longer values are kept, not indexed
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(s: str) -> str:
    """Lower-case ASCII letters only: what SQLite's NOCASE ignores."""
    return s.lower() if s.isascii() else s.translate(_ASCII_LOWER)


def index_template(prefix: str, *, shards: int, replicas: int) -> dict[str, Any]:
    """The body of ``PUT _index_template/<name>`` for ``<prefix>*``."""
    words = {"type": "text", "analyzer": "airis_words"}
    short = {"type": "keyword", "ignore_above": IGNORE_ABOVE, "fields": {"words": words}}
    return {
        "index_patterns": [prefix + "*"],
        "priority": 200,
        "_meta": {"managed_by": "airisd", "version": 1},
        "template": {
            "settings": {
                "number_of_shards": shards,
                "number_of_replicas": replicas,
                "analysis": {
                    "tokenizer": {"airis_words": {"type": "pattern", "pattern": WORD_PATTERN, "group": 0,
                                                  "flags": "UNICODE_CHARACTER_CLASS"}},
                    "analyzer": {"airis_words": {"type": "custom", "tokenizer": "airis_words",
                                                 "filter": ["lowercase"]}},
                },
            },
            "mappings": {
                "dynamic": False,
                "properties": {
                    "@timestamp": {"type": "date_nanos"},
                    "ts_ns": {"type": "long"},
                    "event_id": {"type": "keyword"},
                    **{f: short for f in SHORT_FIELDS},
                    **{f: words for f in TEXT_FIELDS},
                    "labels": {"type": "flattened", "ignore_above": IGNORE_ABOVE},
                    "attributes": {"type": "object", "enabled": False},
                    "airis": {"type": "flattened", "ignore_above": IGNORE_ABOVE},
                },
            },
        },
    }


def index_name(prefix: str, date_format: str, ts_ns: int) -> str:
    """``logs-2024.01.15``: the record's UTC date (Elasticsearch wants lower case)."""
    return prefix + time.strftime(date_format, time.gmtime(ts_ns // NS_PER_S)).lower()


_DAY_DIRECTIVES = frozenset("YyCGgmdejUWVuw")  # strftime fields that change at most once a UTC day


def name_bucket_ns(date_format: str) -> int:
    """Records in one bucket ``ts // bucket`` share their index name: a UTC day, or a second when the
    format names a finer unit (``%H``: hourly indices), so a cache of names per bucket is exact."""
    if set(re.findall(r"%(.)", date_format)) <= _DAY_DIRECTIVES:
        return 86_400 * NS_PER_S
    return NS_PER_S


def iso_nanos(ts_ns: int) -> str:
    secs, frac = divmod(ts_ns, NS_PER_S)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def canonical_number(v: int | float) -> str:
    """One spelling per numeric value: 500 and 500.0 are both "500" (Python's == decides)."""
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    return str(v)


def attribute_token(v: Any) -> str | None:
    """The typed token a whole-value attribute query compares (None: arrays and objects never match)."""
    if isinstance(v, str):
        return "s:" + ascii_lower(v)
    if isinstance(v, bool):
        return "b:true" if v else "b:false"
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "z:null"
    if isinstance(v, int | float):
        return "n:" + canonical_number(v)
    return None


def _sanitize(v: Any) -> Any:
    """Integers beyond 64 bits as text (orjson cannot write them; the SQLite store does the same)."""
    if isinstance(v, dict):
        return {str(k): _sanitize(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_sanitize(x) for x in v]
    if isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**64:
        return str(v)
    return v


def document(r: LogRecord) -> dict[str, Any]:
    """The record as an Elasticsearch document (without ``event_id``)."""
    airis: dict[str, Any] = {f: ascii_lower(getattr(r, f)) for f in SHORT_FIELDS}
    if r.labels:
        airis["label"] = {k: ascii_lower(v) for k, v in r.labels.items() if isinstance(v, str)}
    if r.attributes:
        attr = {k: t for k, v in r.attributes.items() if FIELD_RE.fullmatch(k) and (t := attribute_token(v))}
        if attr:
            airis["attr"] = attr
    return {
        "@timestamp": iso_nanos(r.ts),
        "ts_ns": r.ts,
        "level": r.level,
        "service": r.service,
        "message": r.message,
        "trace_id": r.trace_id,
        "span_id": r.span_id,
        "user_id": r.user_id,
        "request_id": r.request_id,
        "stack_trace": r.stack_trace,
        "labels": r.labels,
        "attributes": r.attributes,
        "airis": airis,
    }


def encode(doc: dict[str, Any]) -> bytes:
    """The document as JSON; NaN and infinities become null (orjson), huge integers text."""
    try:
        return orjson.dumps(doc, default=str, option=orjson.OPT_NON_STR_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        doc["attributes"] = _sanitize(doc["attributes"])
        doc["labels"] = _sanitize(doc["labels"])
        return orjson.dumps(doc, default=str, option=orjson.OPT_NON_STR_KEYS)


def content_id(body: bytes) -> str:
    """A document id from its content: the same record always gets the same _id."""
    return hashlib.blake2b(body, digest_size=20).hexdigest()


SOURCE_FIELDS = ["ts_ns", "level", "service", "message", "trace_id", "span_id", "user_id", "request_id",
                 "stack_trace", "labels", "attributes"]


def record(src: dict[str, Any]) -> LogRecord:
    """A stored document back as the record it came from."""
    return LogRecord(
        ts=int(src["ts_ns"]),
        level=src.get("level") or "",
        message=src.get("message") or "",
        service=src.get("service") or "",
        trace_id=src.get("trace_id") or "",
        span_id=src.get("span_id") or "",
        labels=src.get("labels") or {},
        stack_trace=src.get("stack_trace") or "",
        user_id=src.get("user_id") or "",
        request_id=src.get("request_id") or "",
        attributes=src.get("attributes") or {},
    )

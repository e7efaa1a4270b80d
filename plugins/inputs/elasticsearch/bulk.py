"""The Elasticsearch ``_bulk`` body (NDJSON action / source pairs) and the mapping of a document
to a log record.

Document mapping, after nested objects are flattened to dotted keys (``{"log": {"level": "x"}}``
and ``{"log.level": "x"}`` are the same), first key found wins:

| record field | document keys |
|---|---|
| timestamp | ``@timestamp``, ``timestamp``, ``time``, ``ts``, ``date`` (RFC 3339 or epoch ms/s) |
| message | ``message``, ``msg``, ``log``, ``event.original`` (absent: empty) |
| level | ``log.level``, ``level``, ``severity``, ``lvl``, ``loglevel`` |
| service | ``service.name``, ``service``, ``app`` |
| trace_id / span_id | ``trace.id``, ``trace_id``, ``traceId`` / ``span.id``, ``span_id``, ``spanId`` |
| stack_trace | ``error.stack_trace``, ``stack_trace`` |
| user_id / request_id | ``user.id``, ``user_id`` / ``http.request.id``, ``request_id`` |
| labels | ``labels.*`` (ECS labels), plus ``index`` = the target index name |

Every other key is kept as an attribute under its dotted name; the ``_id`` given in the action
(if any) is kept as the attribute ``_id``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import orjson

from airisd.errors import ValidationError
from airisd.logparse import record_from_json
from airisd.model import LogRecord

ACTIONS = ("index", "create", "update", "delete")
ALIASES: dict[str, tuple[str, ...]] = {
    "timestamp": ("@timestamp", "timestamp", "time", "ts", "date"),
    "message": ("message", "msg", "log", "event.original"),
    "level": ("log.level", "level", "severity", "lvl", "loglevel"),
    "service": ("service.name", "service", "app"),
    "trace_id": ("trace.id", "trace_id", "traceId"),
    "span_id": ("span.id", "span_id", "spanId"),
    "stack_trace": ("error.stack_trace", "stack_trace"),
    "user_id": ("user.id", "user_id"),
    "request_id": ("http.request.id", "request_id"),
}
_RESERVED = frozenset(("labels", *ALIASES))


class BulkError(ValueError):
    """The whole request is malformed (400 with ES's error shape)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass
class BulkResult:
    records: list[LogRecord] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    errors: bool = False


def new_id() -> str:
    return secrets.token_urlsafe(15)


def _flatten(prefix: str, value: dict[str, Any], out: dict[str, Any]) -> None:
    for k, v in value.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            _flatten(key, v, out)
        else:
            out[key] = v


def doc_to_record(doc: Any, *, index: str, doc_id: str | None, now_ns: int) -> LogRecord:
    """One source document as a record; ValidationError naming the field when it cannot be."""
    if not isinstance(doc, dict):
        raise ValidationError(
            f"the document must be a JSON object, got {type(doc).__name__}", details={"field": "_source"}
        )
    flat: dict[str, Any] = {}
    _flatten("", doc, flat)
    obj: dict[str, Any] = {}
    for target, keys in ALIASES.items():
        for key in keys:
            if key in flat:
                value = flat.pop(key)
                if target not in obj:
                    obj[target] = value
                else:
                    flat["_source." + key] = value  # a second spelling: kept, renamed
    message = obj.get("message")
    if message is None:
        obj["message"] = ""
    elif not isinstance(message, str):
        obj["message"] = orjson.dumps(message).decode()
    labels = {k[len("labels.") :]: v for k, v in flat.items() if k.startswith("labels.")}
    for k in labels:
        del flat["labels." + k]
    labels["index"] = index
    obj["labels"] = labels
    if doc_id is not None:
        flat["_id"] = doc_id
    for k, v in flat.items():
        obj["_source." + k if k in _RESERVED else k] = v
    return record_from_json(obj, received_ns=now_ns)


def _item(
    action: str, index: str, doc_id: str, status: int, error: tuple[str, str] | None = None, seq: int = 0
) -> dict[str, Any]:
    body: dict[str, Any] = {"_index": index, "_id": doc_id, "status": status}
    if error is None:
        body.update(
            {
                "_version": 1,
                "result": "created",
                "_shards": {"total": 1, "successful": 1, "failed": 0},
                "_seq_no": seq,
                "_primary_term": 1,
            }
        )
    else:
        body["error"] = {"type": error[0], "reason": error[1], "index": index}
    return {action: body}


def _json_line(line: bytes, n: int, what: str) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise BulkError("x_content_parse_exception", f"[{n}] malformed {what}: {exc}") from None


def parse_bulk(body: bytes, *, default_index: str | None, now_ns: int, max_actions: int) -> BulkResult:
    """Decode a ``_bulk`` body. Malformed action lines fail the request (BulkError); a bad
    document fails only its item."""
    lines = body.split(b"\n")
    result = BulkResult()
    i = 0
    n = len(lines)
    while i < n:
        line = lines[i].strip()
        i += 1
        if not line:
            continue
        action_obj = _json_line(line, i, "action/metadata line")
        if not isinstance(action_obj, dict) or len(action_obj) != 1:
            raise BulkError(
                "illegal_argument_exception",
                f"Malformed action/metadata line [{i}], expected an object with one action",
            )
        action, meta = next(iter(action_obj.items()))
        if action not in ACTIONS:
            raise BulkError(
                "illegal_argument_exception",
                f"Malformed action/metadata line [{i}], expected one of {', '.join(ACTIONS)} "
                f"but found [{str(action)[:40]}]",
            )
        if not isinstance(meta, dict):
            raise BulkError(
                "illegal_argument_exception", f"Malformed action/metadata line [{i}]: not an object"
            )
        if len(result.items) >= max_actions:
            raise BulkError("illegal_argument_exception", f"more than {max_actions} actions in one request")
        index = meta.get("_index", default_index)
        raw_id = meta.get("_id")
        doc_id = str(raw_id) if raw_id is not None else None
        if action != "delete":
            while i < n and not lines[i].strip():
                i += 1
            if i >= n:
                raise BulkError(
                    "illegal_argument_exception", f"the {action} action on line [{i}] has no source line"
                )
            source_line = lines[i].strip()
            i += 1
        else:
            source_line = b""
        shown_id = doc_id or new_id()
        shown_index = str(index) if index is not None else ""
        if action in ("update", "delete"):
            result.errors = True
            result.items.append(
                _item(
                    action,
                    shown_index,
                    shown_id,
                    400,
                    (
                        "illegal_argument_exception",
                        f"airisd stores logs append-only; {action} is not supported (use index or create)",
                    ),
                )
            )
            continue
        if not isinstance(index, str) or not index:
            result.errors = True
            result.items.append(
                _item(
                    action,
                    shown_index,
                    shown_id,
                    400,
                    ("action_request_validation_exception", "index is missing"),
                )
            )
            continue
        try:
            doc = orjson.loads(source_line)
        except orjson.JSONDecodeError as exc:
            result.errors = True
            result.items.append(
                _item(
                    action,
                    index,
                    shown_id,
                    400,
                    ("document_parsing_exception", f"[{i}] failed to parse: {exc}"),
                )
            )
            continue
        try:
            record = doc_to_record(doc, index=index, doc_id=doc_id, now_ns=now_ns)
        except ValidationError as exc:
            result.errors = True
            result.items.append(
                _item(action, index, shown_id, 400, ("document_parsing_exception", exc.message))
            )
            continue
        result.records.append(record)
        result.items.append(_item(action, index, shown_id, 201, seq=len(result.records) - 1))
    return result

"""Bulk indexing with per-document error classification, and the dead-letter file.

What happens to each document of a bulk response:

    2xx, or 409 on ``create`` with a content id    delivered (409: an earlier attempt indexed it)
    429, 5xx                                       retried: only these documents, by raising
                                                   TransientError; the runner backs off and calls
                                                   write() again with the same batch
    any other status (400 mapping conflict, ...)   dead-lettered: appended to a JSON-lines file
                                                   with the error, counted, never retried

A whole request that fails is transient when the cluster cannot be reached, times out, or answers
429/5xx, and also on 401/403 (a credential an operator can fix: the data waits instead of being
dropped); any other 4xx dead-letters the request's documents.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from airisd_plugins.outputs.elasticsearch.template import content_id, document, encode, index_name, name_bucket_ns

from airisd.errors import TransientError
from airisd.model import LogRecord

if TYPE_CHECKING:  # the client library is imported when used: loading the plugins must not load it
    from elasticsearch import AsyncElasticsearch


@dataclass(slots=True)
class Doc:
    index: str
    id: str
    action: bytes  # the bulk action line
    body: bytes  # the document


@dataclass
class Outcome:
    delivered: int = 0
    retry: list[Doc] = field(default_factory=list)
    dead: list[tuple[Doc, int, Any]] = field(default_factory=list)  # (doc, status, error)
    request_error: str = ""  # a transient whole-request failure, if one stopped the round


def prepare(records: list[LogRecord], *, prefix: str, date_format: str, content_ids: bool) -> list[Doc]:
    """Each record as a bulk ``create`` with its index and id; the id is also stored as
    ``event_id`` (the sort tie-breaker of the store)."""
    names: dict[int, str] = {}
    bucket_ns = name_bucket_ns(date_format)  # a day, unless the indices are hourly or finer
    out: list[Doc] = []
    for r in records:
        bucket = r.ts // bucket_ns
        index = names.get(bucket)
        if index is None:
            index = names[bucket] = index_name(prefix, date_format, r.ts)
        body = encode(document(r))
        doc_id = content_id(body) if content_ids else os.urandom(20).hex()
        body = body[:-1] + b',"event_id":"' + doc_id.encode() + b'"}'
        action = b'{"create":{"_index":"' + index.encode() + b'","_id":"' + doc_id.encode() + b'"}}'
        out.append(Doc(index, doc_id, action, body))
    return out


def chunks(docs: list[Doc], max_bytes: int) -> list[list[Doc]]:
    out: list[list[Doc]] = []
    cur: list[Doc] = []
    size = 0
    for d in docs:
        n = len(d.action) + len(d.body) + 2
        if cur and size + n > max_bytes:
            out.append(cur)
            cur, size = [], 0
        cur.append(d)
        size += n
    if cur:
        out.append(cur)
    return out


def retryable(status: int) -> bool:
    return status == 429 or status >= 500


async def bulk(client: AsyncElasticsearch, docs: list[Doc], *, max_bytes: int, content_ids: bool) -> Outcome:
    """Send docs in requests of at most max_bytes; classify every document."""
    from elasticsearch import ApiError, TransportError

    out = Outcome()
    parts = chunks(docs, max_bytes)
    for i, part in enumerate(parts):
        body = b"\n".join(line for d in part for line in (d.action, d.body)) + b"\n"
        try:
            resp = await client.bulk(operations=body)  # type: ignore[arg-type]  # NDJSON bytes go as they are
        except ApiError as exc:
            status = int(exc.meta.status)
            if retryable(status) or status in (401, 403, 408, 413):
                out.request_error = f"bulk request refused ({status}): {exc.message}"
                out.retry += [d for p in parts[i:] for d in p]
                return out
            out.dead += [(d, status, {"type": "request_rejected", "reason": str(exc)}) for d in part]
            continue
        except TransportError as exc:
            out.request_error = f"elasticsearch unreachable: {type(exc).__name__}: {exc}"
            out.retry += [d for p in parts[i:] for d in p]
            return out
        items = resp.body.get("items") or []
        if len(items) != len(part):  # never seen; do not guess which ones went in
            out.request_error = f"bulk answered {len(items)} items for {len(part)} documents"
            out.retry += [d for p in parts[i:] for d in p]
            return out
        for d, item in zip(part, items, strict=True):
            result = next(iter(item.values()))
            status = int(result.get("status", 500))
            if status < 300 or (status == 409 and content_ids):
                out.delivered += 1
            elif retryable(status):
                out.retry.append(d)
            else:
                out.dead.append((d, status, result.get("error")))
    return out


class DeadLetter:
    """Appends refused documents to ``<dir>/elasticsearch[-alias]-YYYY.MM.DD.jsonl``, one JSON
    object a line: ``{"time", "output", "index", "id", "status", "error", "document"}``, synced to
    disk before write() returns, so what was acknowledged to a client is never lost silently."""

    def __init__(self, directory: Path, output: str) -> None:
        self.directory = directory
        self.output = output
        stem = "elasticsearch" if output == "elasticsearch" else f"elasticsearch-{output}"
        self.stem = stem.replace("/", "_")

    def path(self, now: float | None = None) -> Path:
        day = time.strftime("%Y.%m.%d", time.gmtime(time.time() if now is None else now))
        return self.directory / f"{self.stem}-{day}.jsonl"

    def append(self, entries: list[tuple[Doc, int, Any]]) -> Path:
        """Write entries (blocking: call from a worker thread); return the file."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        lines = []
        for d, status, error in entries:
            head = orjson.dumps({"time": stamp, "output": self.output, "index": d.index, "id": d.id,
                                 "status": status, "error": error}, default=str)
            lines.append(head[:-1] + b',"document":' + d.body + b"}\n")
        with path.open("ab") as f:
            f.write(b"".join(lines))
            f.flush()
            os.fsync(f.fileno())
        return path


def transient(out: Outcome, total: int) -> TransientError:
    reason = out.request_error or "Elasticsearch answered 429/5xx for some documents"
    return TransientError(f"{len(out.retry)} of {total} documents to retry: {reason}",
                          details={"retry": len(out.retry), "delivered": out.delivered, "dead_letter": len(out.dead)})

"""Loki push: POST /loki/api/v1/push, JSON or snappy protobuf, answered 204 as Loki does, so
promtail, Grafana Alloy, Fluent Bit's loki output, Vector's loki sink and the Docker driver can
ship to airisd.

Mapping: stream labels → labels (unchanged); service ← the first of the labels ``service_name``,
``service``, ``app``, ``job``; level ← the label ``level``, ``detected_level``, ``severity`` or
``lvl``, else the level found in the line by the same rules as ``POST /logs/plain``, else
UNKNOWN; the line → message, unchanged; structured metadata → attributes, except ``trace_id`` and
``span_id``, which fill the record's ids.

Errors: a body that does not decode gets 400 with a plain-text reason and nothing is stored;
entries that break a limit (line over 64 KiB, too many labels) are refused alone after the others
are stored, and the answer is 400 naming the first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from airisd_plugins.inputs.loki.push import PushError, Stream, decode_json, decode_protobuf
from airisd_plugins.inputs.prometheus_remote_write.shared import SnappyError, read_raw_body, snappy_block
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from airisd.errors import AirisError, Backpressure, PayloadTooLarge
from airisd.hookspecs import hookimpl
from airisd.http.request import read_body
from airisd.logparse import (
    MAX_FIELD_CHARS,
    MAX_LABEL_KEY_CHARS,
    MAX_LABELS,
    MAX_MESSAGE_BYTES,
    normalize_level,
    parse_line,
    utf8_len,
)
from airisd.model import Batch, LogRecord, Signal
from airisd.plugin import Input, Plugin, PluginConfig, Route

SERVICE_LABELS = ("service_name", "service", "app", "job")
LEVEL_LABELS = ("level", "detected_level", "severity", "lvl")


def _labels_problem(labels: dict[str, str]) -> str | None:
    if len(labels) > MAX_LABELS:
        return f"{len(labels)} labels; at most {MAX_LABELS}"
    for k, v in labels.items():
        if not k or len(k) > MAX_LABEL_KEY_CHARS:
            return f"label name {k[:40]!r} must be 1 to {MAX_LABEL_KEY_CHARS} characters"
        if len(v) > MAX_FIELD_CHARS:
            return f"label {k[:40]!r} is longer than {MAX_FIELD_CHARS} characters"
    return None


def streams_to_records(streams: list[Stream], now_ns: int) -> tuple[list[LogRecord], int, str]:
    """(records, entries refused, first reason)."""
    records: list[LogRecord] = []
    refused = 0
    first = ""
    for si, st in enumerate(streams):
        labels = st.labels
        problem = _labels_problem(labels)
        if problem is not None:
            refused += len(st.entries)
            first = first or f"streams[{si}]: {problem}"
            continue
        service = next((labels[k] for k in SERVICE_LABELS if labels.get(k)), "")
        level_label = next((labels[k] for k in LEVEL_LABELS if labels.get(k)), None)
        for ei, e in enumerate(st.entries):
            line = e.line
            if len(line) > MAX_MESSAGE_BYTES // 4 and utf8_len(line) > MAX_MESSAGE_BYTES:
                refused += 1
                first = first or f"streams[{si}].entries[{ei}]: line is longer than {MAX_MESSAGE_BYTES} bytes"
                continue
            if level_label is not None:
                level = normalize_level(level_label)
            else:
                level = parse_line(line, received_ns=now_ns).level if line else "UNKNOWN"
            attrs: dict[str, Any] = dict(e.metadata)
            trace_id = attrs.pop("trace_id", "")
            span_id = attrs.pop("span_id", "")
            records.append(
                LogRecord(
                    ts=e.ts,
                    level=level,
                    message=line,
                    service=service,
                    trace_id=trace_id,
                    span_id=span_id,
                    labels=labels,
                    attributes=attrs,
                )
            )
    return records, refused, first


class LokiConfig(PluginConfig):
    pass


class LokiInput(Input):
    name: ClassVar[str] = "loki"
    role: ClassVar[str | None] = "log"
    Config: ClassVar[type[LokiConfig]] = LokiConfig
    description: ClassVar[str] = "Loki push: POST /loki/api/v1/push (JSON or snappy protobuf), 204"

    def __init__(self, config: LokiConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        self.m_ingested = ctx.metrics.counter("logs_ingested_total", "Log records accepted", ("input",))
        self.m_rejected = ctx.metrics.counter(
            "logs_rejected_total", "Log requests refused, by reason", ("input", "reason")
        )

    def routes(self) -> Sequence[Route]:
        return (
            Route("POST", "/loki/api/v1/push", self.push, name="loki_push", scope="write"),
            Route("GET", "/ready", self.ready, name="loki_ready", scope="public"),
        )

    async def ready(self, request: Request) -> Response:
        return PlainTextResponse("ready\n")

    def _bad(self, reason: str, message: str, status: int = 400) -> Response:
        self.m_rejected.inc(1, self.name, reason)
        return PlainTextResponse(message + "\n", status_code=status)

    async def push(self, request: Request) -> Response:
        media = request.headers.get("content-type", "application/x-protobuf").split(";")[0].strip().lower()
        try:
            if media in ("application/json", "text/json"):
                streams = decode_json(await read_body(request, self.max_body))
            elif media in ("application/x-protobuf", "application/protobuf", ""):
                raw = await read_raw_body(request, self.max_body)
                streams = decode_protobuf(snappy_block(raw, self.max_body))
            else:
                return self._bad(
                    "unsupported_media_type",
                    f"Content-Type {media[:60]!r}: send application/json or application/x-protobuf (snappy)",
                    415,
                )
        except PayloadTooLarge as exc:
            return self._bad("payload_too_large", exc.message, 413)
        except (PushError, SnappyError) as exc:
            return self._bad("invalid_body", str(exc))
        except AirisError as exc:
            return self._bad("invalid_body", exc.message, exc.status if 400 <= exc.status < 500 else 400)
        records, refused, first = streams_to_records(streams, self.ctx.clock.time_ns())
        if records:
            try:
                await self.ctx.emit(Batch(Signal.LOGS, records))
            except Backpressure as exc:
                return PlainTextResponse(
                    exc.message + "\n",
                    status_code=503,
                    headers={"Retry-After": str(max(1, exc.retry_after_secs))},
                )
            except AirisError as exc:
                return PlainTextResponse(exc.message + "\n", status_code=503 if exc.status >= 500 else 400)
            self.m_ingested.inc(len(records), self.name)
        if refused:
            return self._bad(
                "invalid_entry", f"{refused} entries refused, {len(records)} stored; first: {first}"
            )
        return Response(status_code=204)


@hookimpl
def airisd_plugin_classes() -> list[type[Plugin]]:
    return [LokiInput]


plugin_class = LokiInput

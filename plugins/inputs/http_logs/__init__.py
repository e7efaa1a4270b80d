"""The seed's log ingestion API: POST /logs, POST /logs/plain and POST /logs/batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import Response

from airisd.errors import UnsupportedMediaType, ValidationError
from airisd.hookspecs import hookimpl
from airisd.http.envelope import ok
from airisd.http.request import parse_json, read_body
from airisd.logparse import fast_batch, parse_plain_body, record_from_json
from airisd.model import Batch, LogRecord, Signal
from airisd.plugin import Input, Plugin, PluginConfig, Route


class HttpLogsConfig(PluginConfig):
    ## Most records in one POST /logs/batch or /logs/plain body.
    max_batch_records: int = 50_000
    ## Invalid UTF-8 in a body: "replace" stores it with U+FFFD (the default), "reject" answers 400.
    invalid_utf8: str = "replace"

    def validate(self) -> None:
        if self.max_batch_records < 1:
            raise ValueError(f"max_batch_records must be at least 1, got {self.max_batch_records}")
        if self.invalid_utf8 not in ("replace", "reject"):
            raise ValueError(f"invalid_utf8 must be 'replace' or 'reject', got {self.invalid_utf8!r}")


class HttpLogsInput(Input):
    name: ClassVar[str] = "http_logs"
    role: ClassVar[str | None] = "log"
    Config: ClassVar[type[HttpLogsConfig]] = HttpLogsConfig
    description: ClassVar[str] = "The seed's JSON and plain-text logs API: POST /logs, /logs/plain, /logs/batch"
    config: HttpLogsConfig

    def __init__(self, config: HttpLogsConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        self.m_ingested = ctx.metrics.counter("logs_ingested_total", "Log records accepted", ("input",))
        self.m_rejected = ctx.metrics.counter("logs_rejected_total", "Log requests refused, by reason",
                                              ("input", "reason"))

    def routes(self) -> Sequence[Route]:
        return (
            Route("POST", "/logs", self.post_one, name="logs_post", scope="write"),
            Route("POST", "/logs/plain", self.post_plain, name="logs_plain", scope="write"),
            Route("POST", "/logs/batch", self.post_batch, name="logs_batch", scope="write"),
        )

    async def _store(self, request: Request, records: list[LogRecord], message: str) -> Response:
        await self.ctx.emit(Batch(Signal.LOGS, records))
        self.m_ingested.inc(len(records), self.name)
        return ok(request, {"accepted": len(records)}, message=message, status=201)

    def _rejected(self, exc: Exception) -> None:
        self.m_rejected.inc(1, self.name, getattr(exc, "code", "error").lower())

    async def post_one(self, request: Request) -> Response:
        try:
            obj = parse_json(await read_body(request, self.max_body))
            record = record_from_json(obj, received_ns=self.ctx.clock.time_ns())
        except Exception as exc:
            self._rejected(exc)
            raise
        return await self._store(request, [record], "Log stored")

    async def post_batch(self, request: Request) -> Response:
        try:
            body = await read_body(request, self.max_body, turn=True)
            now = self.ctx.clock.time_ns()
            fast = fast_batch(body, received_ns=now, max_records=self.config.max_batch_records)
            records = self._decode_batch(body, now) if fast is None else fast
        except Exception as exc:
            self._rejected(exc)
            raise
        return await self._store(request, records, f"{len(records)} logs stored")

    def _decode_batch(self, body: bytes, now: int) -> list[LogRecord]:
        """The batch through dicts and record_from_json: any shape, and errors that name the field."""
        obj = parse_json(body)
        if not isinstance(obj, dict) or not isinstance(obj.get("logs"), list):
            raise ValidationError('expected {"logs": [record, ...]}', details={"field": "logs"})
        if set(obj) - {"logs"}:
            extra = sorted(set(obj) - {"logs"})[0]
            raise ValidationError(f"unknown field {extra!r} next to logs", details={"field": extra})
        items = obj["logs"]
        if not items:
            raise ValidationError("logs: the batch is empty", details={"field": "logs"})
        if len(items) > self.config.max_batch_records:
            raise ValidationError(f"logs: {len(items)} records; at most {self.config.max_batch_records}",
                                  details={"field": "logs"})
        records: list[LogRecord] = []
        errors: list[dict[str, Any]] = []
        for i, item in enumerate(items):
            try:
                records.append(record_from_json(item, received_ns=now, index=i))
            except ValidationError as exc:
                errors.append({**exc.details, "message": exc.message})
        if errors:
            first = errors[0]
            raise ValidationError(
                f"{len(errors)} of {len(items)} records are invalid; nothing was stored. First: {first['message']}",
                details={"field": first.get("field"), "index": first.get("index"), "errors": errors[:50]})
        return records

    async def post_plain(self, request: Request) -> Response:
        try:
            ctype = request.headers.get("content-type", "text/plain").split(";")[0].strip().lower()
            if ctype not in ("text/plain", "", "application/octet-stream", "application/x-www-form-urlencoded"):
                # curl -d sends x-www-form-urlencoded unless told otherwise: accept it as text.
                raise UnsupportedMediaType(f"Content-Type {ctype!r}: send text/plain",
                                           details={"field": "Content-Type"})
            body = await read_body(request, self.max_body, turn=True)
            try:
                text = body.decode("utf-8", errors="strict" if self.config.invalid_utf8 == "reject" else "replace")
            except UnicodeDecodeError as exc:
                raise ValidationError(f"body is not valid UTF-8 at byte {exc.start}",
                                      details={"field": "body", "position": exc.start}) from None
            records = parse_plain_body(text, received_ns=self.ctx.clock.time_ns())
            if not records:
                raise ValidationError("body has no log lines", details={"field": "body"})
            if len(records) > self.config.max_batch_records:
                raise ValidationError(f"{len(records)} lines; at most {self.config.max_batch_records} per request",
                                      details={"field": "body"})
        except Exception as exc:
            self._rejected(exc)
            raise
        return await self._store(request, records, f"{len(records)} logs stored")


@hookimpl
def airisd_plugin_classes() -> list[type[Plugin]]:
    return [HttpLogsInput]


plugin_class = HttpLogsInput

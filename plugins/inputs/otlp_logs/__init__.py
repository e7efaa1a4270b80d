"""OTLP/HTTP logs: POST /v1/logs, protobuf or JSON, gzip, with OTLP's own responses.

Mapping to a log record:

- ``severity_number`` → level (1–4 TRACE, 5–8 DEBUG, 9–12 INFO, 13–16 WARN, 17–20 ERROR,
  21–24 FATAL); when it is 0, ``severity_text`` is read as a level name; else UNKNOWN. The
  original ``severity_text`` is kept as the attribute ``otel.severity_text``;
- body → message (a string as is; another value as JSON text);
- ``time_unix_nano`` → time (else ``observed_time_unix_nano``, else the time received);
- ``trace_id`` / ``span_id`` → trace_id / span_id (hex; all-zero ids are no id);
- resource ``service.name`` → service (``unknown_service`` when absent); the other resource
  attributes → attributes ``resource.<key>``; scope name → ``otel.scope.name``;
- log attributes → attributes (arrays and maps as JSON text), except
  ``exception.stacktrace``, which becomes the record's stack_trace.

A record that breaks a limit (message over 64 KiB, more than 256 attributes, an id of the wrong
length) is rejected alone and counted in the response's ``partial_success``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from airisd_plugins.inputs.otlp_metrics.otlp import Decoded, handle, parse_request
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from starlette.requests import Request
from starlette.responses import Response

from airisd.hookspecs import hookimpl
from airisd.logparse import MAX_ATTRIBUTES, MAX_MESSAGE_BYTES, normalize_level, utf8_len
from airisd.model import LogRecord, Signal
from airisd.otlp_traces import UNKNOWN_SERVICE, _json_text, _pb_attrs, _pb_plain
from airisd.plugin import Input, Plugin, PluginConfig, Route

_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")


def level_of(number: int, text: str) -> str:
    if 1 <= number <= 24:
        return _LEVELS[(number - 1) // 4]
    return normalize_level(text) if text else "UNKNOWN"


def _id(raw: bytes, size: int) -> str | None:
    """Hex id; "" for none (empty or all zero); None when the length is wrong."""
    if not raw or not any(raw):
        return "" if len(raw) in (0, size) else None
    return raw.hex() if len(raw) == size else None


def decode_logs(body: bytes, content_type: str, now_ns: int) -> Decoded:
    request = parse_request(body, content_type, ExportLogsServiceRequest())
    out = Decoded()
    for ri, rl in enumerate(request.resource_logs):  # type: ignore[attr-defined]
        res = _pb_attrs(rl.resource.attributes)
        name = res.pop("service.name", None)
        service = name if isinstance(name, str) and name else UNKNOWN_SERVICE
        res_attrs = {f"resource.{k}": v for k, v in res.items()}
        for si, sl in enumerate(rl.scope_logs):
            base = {**res_attrs, "otel.scope.name": sl.scope.name} if sl.scope.name else res_attrs
            for li, lr in enumerate(sl.log_records):
                where = f"resourceLogs[{ri}].scopeLogs[{si}].logRecords[{li}]"
                which = lr.body.WhichOneof("value")
                if which == "string_value":
                    message = lr.body.string_value
                elif which is None:
                    message = ""
                else:
                    plain = _pb_plain(lr.body)
                    message = plain if isinstance(plain, str) else _json_text(plain)
                if len(message) > MAX_MESSAGE_BYTES // 4 and utf8_len(message) > MAX_MESSAGE_BYTES:
                    out.reject(where, f"body is longer than {MAX_MESSAGE_BYTES} bytes")
                    continue
                trace_id, span_id = _id(lr.trace_id, 16), _id(lr.span_id, 8)
                if trace_id is None or span_id is None:
                    out.reject(where, "traceId must be 16 bytes and spanId 8 bytes")
                    continue
                attrs = {**base, **_pb_attrs(lr.attributes)}
                stack = attrs.pop("exception.stacktrace", "")
                if lr.severity_text:
                    attrs["otel.severity_text"] = lr.severity_text
                if len(attrs) > MAX_ATTRIBUTES:
                    out.reject(where, f"more than {MAX_ATTRIBUTES} attributes")
                    continue
                out.items.append(
                    LogRecord(
                        ts=lr.time_unix_nano or lr.observed_time_unix_nano or now_ns,
                        level=level_of(lr.severity_number, lr.severity_text),
                        message=message,
                        service=service,
                        trace_id=trace_id,
                        span_id=span_id,
                        stack_trace=stack if isinstance(stack, str) else _json_text(stack),
                        attributes=attrs,
                    )
                )
    return out


def logs_response(rejected: int, message: str) -> ExportLogsServiceResponse:
    response = ExportLogsServiceResponse()
    if rejected or message:
        response.partial_success.CopyFrom(
            ExportLogsPartialSuccess(rejected_log_records=rejected, error_message=message)
        )
    return response


class OtlpLogsConfig(PluginConfig):
    pass


class OtlpLogsInput(Input):
    name: ClassVar[str] = "otlp_logs"
    role: ClassVar[str | None] = "log"
    Config: ClassVar[type[OtlpLogsConfig]] = OtlpLogsConfig
    description: ClassVar[str] = "OTLP/HTTP logs: POST /v1/logs (protobuf or JSON, gzip)"

    def __init__(self, config: OtlpLogsConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        self.m_ingested = ctx.metrics.counter("logs_ingested_total", "Log records accepted", ("input",))
        self.m_rejected = ctx.metrics.counter(
            "logs_rejected_total", "Log requests refused, by reason", ("input", "reason")
        )

    def routes(self) -> Sequence[Route]:
        return (Route("POST", "/v1/logs", self.export, name="otlp_logs", scope="write"),)

    async def export(self, request: Request) -> Response:
        return await handle(
            request,
            plugin=self,
            signal=Signal.LOGS,
            decode=decode_logs,
            respond=logs_response,
            max_body=self.max_body,
            m_ingested=self.m_ingested,
            m_rejected=self.m_rejected,
        )


@hookimpl
def airisd_plugin_classes() -> list[type[Plugin]]:
    return [OtlpLogsInput]


plugin_class = OtlpLogsInput

"""POST an OTLP/HTTP protobuf body and sort the outcome into the pipeline's two error kinds.

Following the OTLP/HTTP spec: 429, 502, 503 and 504 (and a failed connection or a timeout)
are worth retrying, honouring ``Retry-After``; every other 4xx or 5xx is not, so the batch is
dropped and counted instead of blocking the spans behind it forever. A 2xx whose
``partial_success`` reports rejected spans has delivered the rest: the rejected ones are counted
and logged, not retried (the receiver has said they are invalid).
"""

from __future__ import annotations

import gzip
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import anyio
import httpx
from airisd_plugins.outputs.jaeger.config import redacted
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from airisd.errors import PermanentError, TransientError

RETRYABLE = frozenset({429, 502, 503, 504})
PROTOBUF = "application/x-protobuf"
MAX_RETRY_AFTER_SECS = 60.0  # a server asking for longer is waited on by the runner's backoff instead


class RetryLater(TransientError):
    """A 429/5xx answer: transient, with the server's ``Retry-After`` (seconds; 0 if it gave none),
    which the output runner honours."""


@dataclass
class Outcome:
    """What one accepted export reported back."""

    rejected_spans: int = 0
    message: str = ""


def retry_after_secs(value: str | None, *, now: float | None = None) -> float:
    """``Retry-After`` as seconds: a number of seconds or an HTTP date; 0 when absent or bad."""
    if not value:
        return 0.0
    value = value.strip()
    try:
        return max(0.0, min(float(value), MAX_RETRY_AFTER_SECS))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, min(when - (time.time() if now is None else now), MAX_RETRY_AFTER_SECS))


def _body_excerpt(response: httpx.Response) -> str:
    text = response.content[:200].decode("utf-8", "replace")
    return "".join(ch if ch.isprintable() else " " for ch in text).strip()


def parse_response(content: bytes) -> Outcome:
    """The partial-success part of a 2xx answer (an empty body means full success)."""
    if not content:
        return Outcome()
    message = ExportTraceServiceResponse()
    try:
        message.ParseFromString(content)
    except DecodeError:
        return Outcome()  # a proxy's HTML or JSON: the status code already said success
    ps = message.partial_success
    return Outcome(rejected_spans=ps.rejected_spans, message=ps.error_message)


class OtlpHttpExporter:
    """One connection pool to the receiver; ``export`` raises TransientError or PermanentError."""

    def __init__(self, url: str, *, headers: dict[str, str], timeout_secs: float, gzip_body: bool) -> None:
        self.url = url
        self.shown_url = redacted(url)  # for messages: no user or password
        self.gzip_body = gzip_body
        base = {"Content-Type": PROTOBUF, "Accept": PROTOBUF}
        if gzip_body:
            base["Content-Encoding"] = "gzip"
        self._headers = {**base, **headers}
        self._timeout = httpx.Timeout(timeout_secs)
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, headers=self._headers)

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def export(self, body: bytes) -> Outcome:
        if self._client is None:
            raise TransientError("jaeger exporter is not started")
        if self.gzip_body:
            body = await anyio.to_thread.run_sync(gzip.compress, body, 5)
        try:
            response = await self._client.post(self.url, content=body)
        except httpx.TransportError as exc:  # refused, reset, DNS, timeouts
            raise TransientError(f"POST {self.shown_url}: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if 200 <= status < 300:
            return parse_response(response.content)
        detail = f"POST {self.shown_url}: HTTP {status}: {_body_excerpt(response)}"
        if status in RETRYABLE:
            raise RetryLater(detail, retry_after_secs=retry_after_secs(response.headers.get("retry-after")))
        raise PermanentError(detail)

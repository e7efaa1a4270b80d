"""The ``kafka`` output: every signal to its own Kafka topic (aiokafka), so that ingest and storage
can run on different hosts with the ``kafka`` input on the other side.

A batch becomes a few messages (records grouped by key, see codec.py), all sent at once and awaited
together with ``acks = "all"``: ``write()`` returns only when the broker has every message, so the
runner's retry (TransientError) re-sends a batch that was not fully acknowledged — at-least-once.
The producer connects lazily and in the background: the daemon starts while Kafka is down, and the
data waits in the output's buffer until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import time
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import msgspec
from airisd_plugins.outputs.kafka import codec
from airisd_plugins.outputs.kafka.common import (
    DEFAULT_BROKERS,
    Topics,
    check_format,
    check_positive,
    classify,
    parse_brokers,
    permanent_errors,
    route_client_logs,
    topic_names,
)
from anyio.abc import TaskStatus

from airisd.errors import PermanentError, TransientError
from airisd.hookspecs import hookimpl
from airisd.model import Batch, Signal
from airisd.pipeline import OutputConfig
from airisd.plugin import Output, Plugin

if TYPE_CHECKING:  # aiokafka is imported in start(): loading the plugins must not load the client library
    from aiokafka import AIOKafkaProducer

# compression -> aiokafka.codec's "is its library installed" function
COMPRESSIONS = {"none": "", "gzip": "has_gzip", "snappy": "has_snappy", "lz4": "has_lz4", "zstd": "has_zstd"}
KEY_OVERHEAD_BYTES = 512  # headers and record framing, on top of key and value
RECONNECT_MAX_SECS = 30.0


class Keys(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What each signal's messages are keyed by: one key stays on one partition, in order."""

    metrics: str = "series"  # series | name | none
    logs: str = "service"  # service | trace_id | none
    traces: str = "trace_id"  # trace_id | service | none


class KafkaOutputConfig(OutputConfig):
    ## host:port[,host:port...]; the sample reads the seed's KAFKA_BROKERS.
    brokers: str | list[str] = DEFAULT_BROKERS
    client_id: str = "airisd"
    ## Topic of each signal: topic_prefix + "metrics" | "logs" | "traces", unless named in topics.
    topic_prefix: str = "airisd-"
    topics: Topics = msgspec.field(default_factory=Topics)
    key: Keys = msgspec.field(default_factory=Keys)
    ## Message value encoding: "json" or "msgpack".
    format: str = "json"
    ## none | gzip | snappy | lz4 | zstd (those whose library is installed).
    compression: str = "none"
    ## "all" (every in-sync replica), 1 (the leader) or 0 (no wait: at-most-once).
    acks: str | int = "all"
    ## Idempotent producer (no duplicates from the producer's own retries); needs acks = "all".
    idempotent: bool = False
    max_message_bytes: int = 1_000_000
    max_records_per_message: int = 1000
    linger_ms: int = 5
    request_timeout_secs: float = 30.0

    def validate(self) -> None:
        super().validate()
        parse_brokers(self.brokers)
        topic_names(self.topic_prefix, self.topics)
        check_format(self.format)
        for sig in Signal:
            value = getattr(self.key, sig.value)
            if value not in codec.KEYS[sig]:
                allowed = ", ".join(codec.KEYS[sig])
                raise ValueError(f"key.{sig.value} must be one of {allowed}, got {value!r}")
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)}, got {self.compression!r}")
        if COMPRESSIONS[self.compression] and not getattr(importlib.import_module("aiokafka.codec"),
                                                             COMPRESSIONS[self.compression])():
            raise ValueError(f"compression {self.compression!r}: its library is not installed "
                             f"(pip install aiokafka[{self.compression}])")
        if self.acks not in ("all", 1, 0, -1):
            raise ValueError(f"acks must be \"all\", 1 or 0, got {self.acks!r}")
        if self.idempotent and self.acks not in ("all", -1):
            raise ValueError(f"idempotent = true needs acks = \"all\", got acks = {self.acks!r}")
        if self.max_message_bytes < 1024:
            raise ValueError(f"max_message_bytes must be at least 1024, got {self.max_message_bytes!r}")
        check_positive("max_records_per_message", self.max_records_per_message)
        check_positive("request_timeout_secs", self.request_timeout_secs)
        if self.linger_ms < 0:
            raise ValueError(f"linger_ms must be >= 0, got {self.linger_ms!r}")


class KafkaOutput(Output):
    name: ClassVar[str] = "kafka"
    Config: ClassVar[type[KafkaOutputConfig]] = KafkaOutputConfig
    description: ClassVar[str] = "Forward metrics, logs and traces to Kafka topics (acks=all, keyed, compressed)"
    signals: ClassVar[frozenset[Signal]] = frozenset(Signal)
    config: KafkaOutputConfig

    def __init__(self, config: KafkaOutputConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        self.brokers = parse_brokers(config.brokers)
        route_client_logs()
        self.topics = topic_names(config.topic_prefix, config.topics)
        self.keys = {sig: getattr(config.key, sig.value) for sig in Signal}
        self._producer: AIOKafkaProducer | None = None
        self._lock = anyio.Lock()
        self._closed = False
        self.reachable: bool | None = None  # None: not tried yet
        self.last_error = ""
        self.last_success_ns = 0
        label = config.alias or self.name
        self._label = label
        m = ctx.metrics
        self.m_messages = m.counter("kafka_messages_sent_total", "Kafka messages acknowledged by the broker",
                                    ("output", "topic"))
        self.m_bytes = m.counter("kafka_bytes_sent_total", "Bytes of message values acknowledged by the broker",
                                 ("output", "topic"))
        self.m_too_large = m.counter("kafka_records_too_large_total",
                                     "Records dropped because one alone exceeds max_message_bytes", ("output", "topic"))

    # -- connection ---------------------------------------------------------------------------
    def _new_producer(self) -> AIOKafkaProducer:
        from aiokafka import AIOKafkaProducer

        c = self.config
        return AIOKafkaProducer(
            bootstrap_servers=self.brokers, client_id=c.client_id, acks=c.acks,
            compression_type=None if c.compression == "none" else c.compression,
            enable_idempotence=c.idempotent, linger_ms=c.linger_ms,
            max_batch_size=c.max_message_bytes, max_request_size=c.max_message_bytes + KEY_OVERHEAD_BYTES,
            request_timeout_ms=int(c.request_timeout_secs * 1000),
        )

    async def _ensure_producer(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._closed:
                raise TransientError("kafka output is shut down")
            if self._producer is not None:
                return self._producer
            producer = self._new_producer()
            try:
                await producer.start()
            except BaseException as exc:  # cancelled too: a started-then-abandoned producer leaks
                with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                    await _stop_quietly(producer)
                if not isinstance(exc, Exception):
                    raise
                self._failed(exc)
                raise classify(exc, f"kafka {','.join(self.brokers)}") from exc
            self._producer = producer
            self.reachable = True
            return producer

    def _failed(self, exc: BaseException) -> None:
        self.reachable = False
        self.last_error = f"{type(exc).__name__}: {exc}"

    async def start(self) -> None:
        """Nothing to open yet: the producer connects in run() and on the first write, so the daemon
        starts (and buffers) while Kafka is down."""

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Connect in the background, retrying with backoff, so /health/detailed shows the broker's
        state before the first batch."""
        task_status.started()
        delay = self.config.retry_initial_secs
        while self._producer is None and not self._closed:
            try:
                await self._ensure_producer()
            except (TransientError, PermanentError) as exc:
                self.ctx.log.warning("kafka not reachable; retrying",
                                     extra={"kv": {"output": self._label, "error": str(exc),
                                                   "retry_in_secs": round(delay, 2)}})
                await anyio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_SECS)

    # -- writing ------------------------------------------------------------------------------
    def _messages(self, batch: Batch) -> tuple[list[tuple[bytes | None, bytes, int]], int]:
        """(key, value, records) per message, and how many records were too large to send."""
        fmt = self.config.format
        out: list[tuple[bytes | None, bytes, int]] = []
        too_large = 0
        for key, records in codec.group_by_key(batch.signal, self.keys[batch.signal], batch.items,
                                               self.config.max_records_per_message):
            kb = key.encode() if key else None
            limit = self.config.max_message_bytes - len(kb or b"")
            pending = [records]
            while pending:
                part = pending.pop()
                value = codec.encode(part, fmt)
                if len(value) <= limit:
                    out.append((kb, value, len(part)))
                elif len(part) == 1:
                    too_large += 1
                else:
                    half = len(part) // 2
                    pending += [part[half:], part[:half]]  # popped first half first: order kept
        return out, too_large

    async def write(self, batch: Batch) -> None:
        if not batch.items:
            return
        topic = self.topics[batch.signal]
        messages, too_large = self._messages(batch)
        if too_large:
            self.m_too_large.inc(too_large, self._label, topic)
            self.ctx.log.error("records larger than max_message_bytes dropped",
                               extra={"kv": {"output": self._label, "topic": topic, "records": too_large,
                                             "max_message_bytes": self.config.max_message_bytes}})
            if not messages:
                raise PermanentError(f"kafka {topic}: all {too_large} records exceed max_message_bytes")
        producer = await self._ensure_producer()
        futures: list[asyncio.Future[Any]] = []
        error: BaseException | None = None
        try:
            for key, value, n in messages:
                hdrs = codec.headers(batch.signal, self.config.format, n)
                futures.append(await producer.send(topic, value, key=key, headers=hdrs))
        except Exception as exc:  # a send refused before it was queued (too large, closed, timeout)
            error = exc
        results = await asyncio.gather(*futures, return_exceptions=True)  # every future is awaited
        error = error or next((r for r in results if isinstance(r, BaseException)), None)
        if error is not None:
            self._failed(error)
            if isinstance(error, asyncio.CancelledError):
                raise error
            from aiokafka import errors as kerr

            if not isinstance(error, (kerr.KafkaError, OSError, *permanent_errors())):
                raise error
            raise classify(error, f"kafka {topic}") from error
        self.reachable = True
        self.last_error = ""
        self.last_success_ns = time.time_ns()
        self.m_messages.inc(len(messages), self._label, topic)
        self.m_bytes.inc(sum(len(v) for _, v, _ in messages), self._label, topic)

    async def check(self) -> dict[str, Any]:
        """For /health/detailed: did the last attempt reach the broker?"""
        entry: dict[str, Any] = {"brokers": self.brokers, "topics": {s.value: t for s, t in self.topics.items()},
                                 "connected": self._producer is not None, "last_error": self.last_error}
        if self.reachable is not None:
            entry["reachable"] = self.reachable
        return {"kafka": entry}

    async def shutdown(self) -> None:
        self._closed = True
        producer, self._producer = self._producer, None
        if producer is not None:
            with anyio.move_on_after(self.config.request_timeout_secs, shield=True):
                await producer.stop()


async def _stop_quietly(producer: AIOKafkaProducer) -> None:
    with contextlib.suppress(Exception):  # a producer that never started has nothing to flush
        await producer.stop()


@hookimpl
def airisd_plugin_classes() -> list[type[Plugin]]:
    return [KafkaOutput]


plugin_class = KafkaOutput

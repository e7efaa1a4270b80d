"""The ``kafka`` input: consume what a ``kafka`` output produced (or any producer writing our
format), in a consumer group, into this daemon's pipeline.

Offsets are committed by hand, and only after ``ctx.emit`` returned for every record of the
messages, i.e. once the outputs accepted them (a store: committed to disk). A crash between emit
and commit delivers those messages again: at-least-once, duplicates bounded by one chunk
(``max_batch_records`` records, plus one message). Backpressure pauses the partitions and retries
the same records; nothing is skipped. A message that cannot be decoded is counted
(``airisd_input_rejected_total``), logged at most once per ``log_interval_secs``, and skipped with
its offset committed, so one poison message cannot jam the group. The input starts while Kafka is
down and keeps reconnecting in ``run()``; /health/detailed shows the state.
"""

from __future__ import annotations

import contextlib
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
    parse_brokers,
    route_client_logs,
    topic_names,
)
from anyio.abc import TaskStatus

from airisd.errors import Backpressure, PermanentError
from airisd.hookspecs import hookimpl
from airisd.model import Batch, Signal
from airisd.plugin import Input, Plugin, PluginConfig

if TYPE_CHECKING:  # aiokafka is imported in run(): loading the plugins must not load the client library
    from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

OFFSET_RESETS = ("earliest", "latest")


class KafkaInputConfig(PluginConfig):
    ## host:port[,host:port...]; the sample reads the seed's KAFKA_BROKERS.
    brokers: str | list[str] = DEFAULT_BROKERS
    client_id: str = "airisd"
    ## Consumers with one group_id share the partitions; the sample reads KAFKA_GROUP_ID.
    group_id: str = "airisd"
    ## The topics, named as the kafka output names them.
    topic_prefix: str = "airisd-"
    topics: Topics = msgspec.field(default_factory=Topics)
    ## Signals to consume; empty: every signal this process's roles handle.
    signals: list[str] = msgspec.field(default_factory=list)
    ## Encoding of messages that carry no airisd-encoding header.
    format: str = "json"
    ## Where a new group starts: "earliest" (everything still in the topic) or "latest".
    auto_offset_reset: str = "earliest"
    ## Records are handed to the pipeline, then committed, in chunks of about this many: after a
    ## crash at most one chunk (plus one message) arrives twice.
    max_batch_records: int = 10_000
    ## Most messages fetched per poll.
    max_poll_messages: int = 500
    poll_timeout_secs: float = 0.5
    session_timeout_secs: float = 10.0
    ## How often a new topic is looked for (a topic created after start-up).
    metadata_max_age_secs: float = 10.0
    retry_initial_secs: float = 0.5
    retry_max_secs: float = 30.0
    ## At most one log line per this many seconds for refused messages and connection errors.
    log_interval_secs: float = 10.0

    def validate(self) -> None:
        parse_brokers(self.brokers)
        topic_names(self.topic_prefix, self.topics)
        check_format(self.format)
        if not self.group_id:
            raise ValueError("group_id must not be empty (offsets are committed per group)")
        for s in self.signals:
            if s not in {x.value for x in Signal}:
                raise ValueError(f"signals: {s!r} is not one of metrics, logs, traces")
        if self.auto_offset_reset not in OFFSET_RESETS:
            raise ValueError(f"auto_offset_reset must be 'earliest' or 'latest', got {self.auto_offset_reset!r}")
        for name in ("max_batch_records", "max_poll_messages", "poll_timeout_secs", "session_timeout_secs",
                     "metadata_max_age_secs", "retry_initial_secs", "retry_max_secs", "log_interval_secs"):
            check_positive(name, getattr(self, name))


class RateLimitedLog:
    """One warning per interval per event; the ones in between are counted and reported with the next."""

    def __init__(self, log: Any, interval_secs: float) -> None:
        self.log = log
        self.interval = interval_secs
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, event: str, kv: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - self._last.get(event, -1e18) < self.interval:
            self._suppressed[event] = self._suppressed.get(event, 0) + 1
            return
        self._last[event] = now
        suppressed = self._suppressed.pop(event, 0)
        if suppressed:
            kv = {**kv, "suppressed": suppressed}
        self.log.warning(event, extra={"kv": kv})


class _Stopping(Exception):
    """shutdown() was called while records waited for room: leave them uncommitted."""


class KafkaInput(Input):
    name: ClassVar[str] = "kafka"
    role: ClassVar[str | None] = None  # no HTTP routes; runs in every role that handles its signals
    Config: ClassVar[type[KafkaInputConfig]] = KafkaInputConfig
    description: ClassVar[str] = "Consume metrics, logs and traces from Kafka (consumer group, commit after accept)"
    config: KafkaInputConfig

    def __init__(self, config: KafkaInputConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        self.brokers = parse_brokers(config.brokers)
        route_client_logs()
        handled = set(ctx.settings.get("signals") or [s.value for s in Signal])
        wanted = set(config.signals) or {s.value for s in Signal}
        self.signals = {Signal(s) for s in wanted & handled}
        self.unhandled = sorted(set(config.signals) - handled)
        all_topics = topic_names(config.topic_prefix, config.topics)
        self.topic_signal = {t: s for s, t in all_topics.items() if s in self.signals}
        self._stopping = False
        self._running = False
        self._done = anyio.Event()
        self.connected = False
        self.reachable: bool | None = None
        self.last_error = ""
        self.assigned: list[str] = []
        self._rate_log = RateLimitedLog(ctx.log, config.log_interval_secs)
        m = ctx.metrics
        self.m_rejected = m.counter("input_rejected_total", "Messages an input refused and skipped, by reason",
                                    ("input", "reason"))
        self.m_records = m.counter("kafka_records_consumed_total", "Records consumed from Kafka and accepted",
                                   ("input", "signal"))
        self.m_messages = m.counter("kafka_messages_consumed_total", "Kafka messages consumed", ("input", "topic"))
        self.m_commit_failed = m.counter("kafka_commit_failures_total",
                                         "Offset commits that failed (those messages may arrive again)", ("input",))
        self.m_waits = m.counter("kafka_backpressure_waits_total",
                                 "Times consumed records waited for room in the pipeline", ("input",))
        self.records_consumed = 0

    async def start(self) -> None:
        """Fail fast on a signal this process cannot take; the broker itself is reached in run()."""
        if self.unhandled:
            raise ValueError(f"signals {self.unhandled} are not handled by this process's roles "
                             f"({self.ctx.settings.get('roles')}): nothing could store them")

    # -- the loop ---------------------------------------------------------------------------------
    def _new_consumer(self) -> AIOKafkaConsumer:
        from aiokafka import AIOKafkaConsumer

        c = self.config
        return AIOKafkaConsumer(
            *sorted(self.topic_signal), bootstrap_servers=self.brokers, client_id=c.client_id, group_id=c.group_id,
            enable_auto_commit=False, auto_offset_reset=c.auto_offset_reset,
            session_timeout_ms=int(c.session_timeout_secs * 1000),
            heartbeat_interval_ms=max(100, int(c.session_timeout_secs * 1000 / 3)),
            metadata_max_age_ms=int(c.metadata_max_age_secs * 1000),
        )

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        if not self.topic_signal:
            return
        from aiokafka import errors as kerr

        self._running = True
        delay = self.config.retry_initial_secs
        try:
            while not self._stopping:
                consumer = self._new_consumer()
                try:
                    await consumer.start()
                    self.connected = self.reachable = True
                    delay = self.config.retry_initial_secs
                    await self._consume(consumer)
                except _Stopping:
                    break
                except (kerr.KafkaError, OSError) as exc:
                    self.connected = self.reachable = False
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    self._rate_log.warning("kafka input cannot reach the broker; retrying",
                                           {"brokers": ",".join(self.brokers), "error": self.last_error,
                                            "retry_in_secs": round(delay, 2)})
                finally:
                    self.connected = False
                    self.assigned = []
                    with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                        await _stop_quietly(consumer)
                if not self._stopping:
                    await anyio.sleep(delay)
                    delay = min(delay * 2, self.config.retry_max_secs)
        finally:
            self._running = False
            self._done.set()

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        timeout_ms = int(self.config.poll_timeout_secs * 1000)
        while not self._stopping:
            data = await consumer.getmany(timeout_ms=timeout_ms, max_records=self.config.max_poll_messages)
            self.assigned = sorted(f"{tp.topic}/{tp.partition}" for tp in consumer.assignment())
            if data:
                await self._handle(consumer, data)

    async def _handle(self, consumer: AIOKafkaConsumer, data: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Decode, emit per signal, then commit every partition's next offset; in chunks of about
        ``max_batch_records`` records, which bounds what a crash can deliver twice."""
        by_signal: dict[Signal, list[Any]] = {}
        offsets: dict[TopicPartition, int] = {}
        count = 0
        for tp, messages in data.items():
            self.m_messages.inc(len(messages), self.name, tp.topic)
            for msg in messages:
                offsets[tp] = msg.offset + 1
                try:
                    signal, records = self._decode(tp.topic, msg)
                except codec.BadMessage as exc:
                    self.m_rejected.inc(1, self.name, exc.reason)
                    self._rate_log.warning("kafka input skipped a message it cannot decode",
                                           {"topic": tp.topic, "partition": tp.partition, "offset": msg.offset,
                                            "reason": exc.reason, "error": str(exc)[:300]})
                    continue
                by_signal.setdefault(signal, []).extend(records)
                count += len(records)
                if count >= self.config.max_batch_records:
                    await self._deliver(consumer, by_signal, offsets)
                    by_signal, offsets, count = {}, {}, 0
        if offsets:
            await self._deliver(consumer, by_signal, offsets)

    async def _deliver(self, consumer: AIOKafkaConsumer, by_signal: dict[Signal, list[Any]],
                       offsets: dict[TopicPartition, int]) -> None:
        for sig, items in by_signal.items():
            if items:
                await self._emit(consumer, Batch(sig, items))
        await self._commit(consumer, offsets)

    def _decode(self, topic: str, msg: ConsumerRecord) -> tuple[Signal, list[Any]]:
        signal, fmt = codec.read_headers(msg.headers, default_signal=self.topic_signal.get(topic),
                                         default_format=self.config.format)
        if signal not in self.signals:
            raise codec.BadMessage("unexpected_signal", f"{signal.value} records in topic {topic}, "
                                   f"which this input does not store")
        return signal, codec.decode(signal, fmt, msg.value)

    async def _emit(self, consumer: AIOKafkaConsumer, batch: Batch) -> None:
        """Hand the records to the pipeline; on Backpressure pause the partitions and retry the same
        records until they are accepted (or the input stops, leaving them uncommitted)."""
        delay = self.config.retry_initial_secs
        paused: set[TopicPartition] = set()
        try:
            while True:
                try:
                    await self.ctx.emit(batch)
                    break
                except Backpressure as exc:
                    wait = max(delay, float(exc.retry_after_secs or 0))
                    self.m_waits.inc(1, self.name)
                    self._rate_log.warning("pipeline full; kafka input waits and retries the same records",
                                           {"records": len(batch), "error": str(exc), "retry_in_secs": wait})
                except PermanentError as exc:  # an output refused them for good and counted it
                    self.ctx.log.error("an output refused consumed records permanently",
                                       extra={"kv": {"records": len(batch), "error": str(exc)}})
                    break
                except Exception as exc:  # a processor or output failing in another way: retry, never skip
                    wait = delay
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    self._rate_log.warning("handing consumed records to the pipeline failed; retrying",
                                           {"records": len(batch), "error": self.last_error, "retry_in_secs": wait})
                if self._stopping:
                    raise _Stopping
                if not paused:
                    paused = set(consumer.assignment())
                    consumer.pause(*paused)
                await anyio.sleep(wait)
                delay = min(delay * 2, self.config.retry_max_secs)
        finally:
            if paused:
                consumer.resume(*(paused & set(consumer.assignment())))
        self.records_consumed += len(batch)
        self.m_records.inc(len(batch), self.name, batch.signal.value)

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        from aiokafka import errors as kerr

        try:
            await consumer.commit(offsets)
        except (kerr.CommitFailedError, kerr.IllegalStateError) as exc:  # rebalanced away: the new owner re-reads
            self.m_commit_failed.inc(1, self.name)
            self._rate_log.warning("kafka commit failed after a rebalance; those messages will arrive again",
                                   {"error": f"{type(exc).__name__}: {exc}"})
        except kerr.KafkaError as exc:  # broker unreachable: the next commit covers these offsets
            self.m_commit_failed.inc(1, self.name)
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._rate_log.warning("kafka commit failed; a later commit covers these offsets",
                                   {"error": self.last_error})

    # -- health and stop ---------------------------------------------------------------------------
    async def check(self) -> dict[str, Any]:
        """For /health/detailed: connected, partitions owned, records consumed, last error."""
        entry: dict[str, Any] = {"brokers": self.brokers, "group_id": self.config.group_id,
                                 "topics": sorted(self.topic_signal), "connected": self.connected,
                                 "partitions": self.assigned, "records_consumed": self.records_consumed,
                                 "last_error": self.last_error}
        if self.reachable is not None:
            entry["reachable"] = self.reachable
        return {"kafka": entry}

    async def shutdown(self) -> None:
        """Stop polling; records being handed over finish (and are committed) first."""
        self._stopping = True
        if self._running:
            with anyio.move_on_after(self.config.poll_timeout_secs + self.config.session_timeout_secs):
                await self._done.wait()


async def _stop_quietly(consumer: AIOKafkaConsumer) -> None:
    with contextlib.suppress(Exception):  # a consumer that never started has nothing to leave
        await consumer.stop()


@hookimpl
def airisd_plugin_classes() -> list[type[Plugin]]:
    return [KafkaInput]


plugin_class = KafkaInput

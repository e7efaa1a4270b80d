"""The kafka output and input against tansu, a real Kafka-protocol broker, over a real socket:
every record arrives intact with its key and headers for each compression, the input commits only
after emit returned, waits through backpressure without skipping, skips poison messages with their
offsets committed, and both start while the broker is down."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from airisd_plugins.inputs.kafka import KafkaInput, KafkaInputConfig
from airisd_plugins.outputs.kafka import KafkaOutput, KafkaOutputConfig, codec

from airisd.errors import Backpressure, TransientError
from airisd.model import Batch, LogRecord, Point, Signal, Span
from airisd.selfmetrics import Registry
from tests.conftest import make_ctx
from tests.servers import ServerProcess, running, tansu_broker

pytestmark = [pytest.mark.services, pytest.mark.anyio]
_n = itertools.count()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running(tansu_broker(tmp_path_factory.mktemp("tansu"))) as server:
        yield server


def bootstrap(server: ServerProcess) -> str:
    return f"127.0.0.1:{server.port}"


def prefix() -> str:
    """A fresh topic prefix per test: the broker is shared by the module."""
    return f"t{next(_n)}-{anyio.current_time():.0f}-"


def make_output(tmp_path: Path, server: ServerProcess, **raw: Any) -> KafkaOutput:
    config = msgspec.convert({"brokers": bootstrap(server), "request_timeout_secs": 5, **raw}, KafkaOutputConfig,
                             strict=False)
    config.validate()
    return KafkaOutput(config, make_ctx(tmp_path))


def make_input(tmp_path: Path, server: ServerProcess, emit: Any, metrics: Registry | None = None,
               **raw: Any) -> KafkaInput:
    config = msgspec.convert({"brokers": bootstrap(server), "poll_timeout_secs": 0.2, "retry_initial_secs": 0.1,
                              "retry_max_secs": 0.5, "metadata_max_age_secs": 1, **raw}, KafkaInputConfig,
                             strict=False)
    config.validate()
    return KafkaInput(config, make_ctx(tmp_path, emit=emit, metrics=metrics))


def points(n: int, series: int = 5, base: int = 1_700_000_000_000_000_000) -> list[Point]:
    return [Point(name="cpu", value=float(i), ts=base + i, labels={"host": f"h{i % series}"}) for i in range(n)]


async def read_all(server: ServerProcess, topic: str, count: int, within_secs: float = 20) -> list[Any]:
    """Every message of a topic with a plain aiokafka consumer (no group), until ``count`` records."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap(server), auto_offset_reset="earliest",
                                metadata_max_age_ms=500)
    await consumer.start()
    messages = []
    try:
        with anyio.fail_after(within_secs):
            got = 0
            while got < count:
                for msgs in (await consumer.getmany(timeout_ms=200)).values():
                    messages += msgs
                    got += sum(int(dict(m.headers)[codec.HEADER_RECORDS]) for m in msgs)
    finally:
        await consumer.stop()
    return messages


class Collector:
    """An emit that records every batch, optionally refusing the first calls with Backpressure."""

    def __init__(self, refuse: int = 0) -> None:
        self.batches: list[Batch] = []
        self.refuse = refuse
        self.calls = 0
        self.gate: anyio.Event | None = None
        self.changed = anyio.Event()  # set on every call

    async def __call__(self, batch: Batch) -> None:
        self.calls += 1
        self.changed.set()
        if self.calls <= self.refuse:
            raise Backpressure("full", retry_after_secs=0)
        if self.gate is not None:
            await self.gate.wait()
        self.batches.append(batch)
        self.changed.set()

    def records(self, signal: Signal | None = None) -> list[Any]:
        return [r for b in self.batches if signal in (None, b.signal) for r in b.items]

    async def wait_for(self, n: int, within_secs: float = 20) -> None:
        with anyio.fail_after(within_secs):
            while len(self.records()) < n:
                self.changed = anyio.Event()
                await self.changed.wait()


async def committed(server: ServerProcess, group: str, topic: str) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(server), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()  # the topic may be new to this client
            parts = consumer.partitions_for_topic(topic) or set()
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in sorted(parts)}
    finally:
        await consumer.stop()


# -- output ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("compression", ["none", "gzip", "snappy", "lz4", "zstd"])
async def test_output_delivers_every_record_with_key_and_headers(tmp_path: Path, broker: ServerProcess,
                                                                 compression: str) -> None:
    p = prefix()
    out = make_output(tmp_path, broker, topic_prefix=p, compression=compression, max_records_per_message=40)
    sent = points(300)
    await out.start()
    try:
        await out.write(Batch(Signal.METRICS, sent[:150]))
        await out.write(Batch(Signal.METRICS, sent[150:]))
    finally:
        await out.shutdown()
    messages = await read_all(broker, p + "metrics", len(sent))
    got = []
    for m in messages:
        headers = dict(m.headers)
        assert headers[codec.HEADER_SIGNAL] == b"metrics" and headers[codec.HEADER_ENCODING] == b"json"
        records = codec.decode(Signal.METRICS, "json", m.value)
        assert int(headers[codec.HEADER_RECORDS]) == len(records) <= 40
        assert {codec.KEY_FUNCS[(Signal.METRICS, "series")](r).encode() for r in records} == {m.key}
        got += records
    assert sorted(got, key=lambda r: r.ts) == sent  # every record, intact, once
    by_key: dict[bytes, set[int]] = {}
    for m in messages:
        by_key.setdefault(m.key, set()).add(m.partition)
    assert len(by_key) == 5 and all(len(parts) == 1 for parts in by_key.values())  # a series: one partition
    health = await out.check()
    assert health["kafka"]["reachable"] is True and health["kafka"]["last_error"] == ""


async def test_output_msgpack_logs_and_spans_unkeyed(tmp_path: Path, broker: ServerProcess) -> None:
    p = prefix()
    out = make_output(tmp_path, broker, topic_prefix=p, format="msgpack", key={"logs": "none", "traces": "none"})
    logs = [LogRecord(ts=i, level="INFO", message=f"line {i}", service="api", attributes={"n": i}) for i in range(50)]
    spans = [Span(trace_id="ab" * 16, span_id=f"{i:016x}", operation_name="GET", service_name="api", start_ts=i,
                  end_ts=i + 5, tags={"http.status_code": 200}) for i in range(20)]
    try:
        await out.write(Batch(Signal.LOGS, logs))
        await out.write(Batch(Signal.TRACES, spans))
    finally:
        await out.shutdown()
    for signal, items in ((Signal.LOGS, logs), (Signal.TRACES, spans)):
        messages = await read_all(broker, p + signal.value, len(items))
        assert all(m.key is None and dict(m.headers)[codec.HEADER_ENCODING] == b"msgpack" for m in messages)
        assert [r for m in messages for r in codec.decode(signal, "msgpack", m.value)] == items


async def test_output_while_the_broker_is_down_raises_transient_then_delivers(tmp_path: Path) -> None:
    server = tansu_broker(tmp_path / "down")  # a port, nothing listening yet
    out = make_output(tmp_path, server, topic_prefix=prefix())
    sent = points(10)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(out.run)  # keeps trying in the background; never raises
            with pytest.raises(TransientError):
                await out.write(Batch(Signal.METRICS, sent))
            health = await out.check()
            assert health["kafka"]["reachable"] is False and health["kafka"]["last_error"]
            with running(server):
                await out.write(Batch(Signal.METRICS, sent))  # what the runner's retry does
                messages = await read_all(server, out.topics[Signal.METRICS], len(sent))
            tg.cancel_scope.cancel()
    finally:
        await out.shutdown()
    assert sorted((r for m in messages for r in codec.decode(Signal.METRICS, "json", m.value)),
                  key=lambda r: r.ts) == sent


# -- input ----------------------------------------------------------------------------------------

async def test_input_emits_every_signal_and_commits_after(tmp_path: Path, broker: ServerProcess) -> None:
    p = prefix()
    out = make_output(tmp_path, broker, topic_prefix=p)
    sent: dict[Signal, list[Any]] = {Signal.METRICS: points(500, series=50),
            Signal.LOGS: [LogRecord(ts=i, level="WARN", message="m", service=f"s{i % 3}") for i in range(200)],
            Signal.TRACES: [Span(trace_id=f"{i % 7:032x}", span_id=f"{i:016x}", operation_name="op",
                                 service_name="svc", start_ts=i, end_ts=i + 1) for i in range(100)]}
    try:
        for signal, items in sent.items():
            await out.write(Batch(signal, items))
    finally:
        await out.shutdown()
    sink = Collector()
    sink.gate = anyio.Event()  # the first emit blocks: nothing may be committed meanwhile
    group = f"g-{p}"
    inp = make_input(tmp_path, broker, sink, topic_prefix=p, group_id=group)
    async with anyio.create_task_group() as tg:
        await tg.start(inp.run)
        with anyio.fail_after(20):
            await sink.changed.wait()
        for topic in (p + "metrics", p + "logs", p + "traces"):
            assert set((await committed(broker, group, topic)).values()) == {None}
        sink.gate.set()
        await sink.wait_for(800)
        health = await inp.check()
        await inp.shutdown()
        tg.cancel_scope.cancel()
    for signal, items in sent.items():
        assert sorted(msgspec.json.encode(r) for r in sink.records(signal)) == \
            sorted(msgspec.json.encode(r) for r in items)
    assert health["kafka"]["reachable"] is True and health["kafka"]["records_consumed"] == 800
    for topic, items in ((p + "metrics", sent[Signal.METRICS]), (p + "logs", sent[Signal.LOGS])):
        ends: dict[int, int] = {}  # every message of the topic is committed
        for m in await read_all(broker, topic, len(items)):
            ends[m.partition] = max(ends.get(m.partition, 0), m.offset + 1)
        assert {k: v for k, v in (await committed(broker, group, topic)).items() if v is not None} == ends


async def test_input_waits_through_backpressure_without_skipping_in_chunks(tmp_path: Path,
                                                                           broker: ServerProcess) -> None:
    p = prefix()
    out = make_output(tmp_path, broker, topic_prefix=p, key={"metrics": "none"}, max_records_per_message=10)
    sent = points(100)
    try:
        await out.write(Batch(Signal.METRICS, sent))
    finally:
        await out.shutdown()
    sink = Collector(refuse=4)
    metrics = Registry()
    inp = make_input(tmp_path, broker, sink, metrics, topic_prefix=p, group_id=f"g-{p}", max_batch_records=30)
    async with anyio.create_task_group() as tg:
        await tg.start(inp.run)
        await sink.wait_for(100)
        await anyio.sleep(1)  # nothing more arrives: no duplicate from the refused attempts
        await inp.shutdown()
        tg.cancel_scope.cancel()
    assert sorted(sink.records(), key=lambda r: r.ts) == sent
    assert max(len(b) for b in sink.batches) <= 30 + 10  # chunks: what a crash could deliver twice
    assert metrics.counter("kafka_backpressure_waits_total", "", ("input",)).get("kafka") == 4


async def test_poison_messages_are_counted_skipped_and_committed(tmp_path: Path, broker: ServerProcess) -> None:
    p = prefix()
    topic = p + "logs"
    good = [LogRecord(ts=i, level="INFO", message="fine") for i in range(3)]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(broker))
    await producer.start()
    try:
        for value, headers in [
            (codec.encode(good[:1], "json"), codec.headers(Signal.LOGS, "json", 1)),
            (b"\x00garbage", []),
            (b'[{"ts": 1}]', []),  # a log record without level and message
            (codec.encode(good[1:2], "json"), []),  # no headers: the topic's signal, json
            (codec.encode(good[2:], "msgpack"), codec.headers(Signal.LOGS, "msgpack", 1)),
            (codec.encode(good[:1], "json"), codec.headers(Signal.TRACES, "json", 1)),  # not a span list
        ]:
            await producer.send_and_wait(topic, value, partition=0, headers=headers)
    finally:
        await producer.stop()
    sink = Collector()
    metrics = Registry()
    group = f"g-{p}"
    inp = make_input(tmp_path, broker, sink, metrics, topic_prefix=p, group_id=group, signals=["logs"])
    async with anyio.create_task_group() as tg:
        await tg.start(inp.run)
        await sink.wait_for(3)
        with anyio.fail_after(10):
            while (await committed(broker, group, topic)).get(0) != 6:  # noqa: ASYNC110  broker-side state
                await anyio.sleep(0.2)
        await inp.shutdown()
        tg.cancel_scope.cancel()
    assert sink.records() == good
    rejected = metrics.counter("input_rejected_total", "", ("input", "reason"))
    assert rejected.get("kafka", "undecodable") == 2 and rejected.get("kafka", "unexpected_signal") == 1


async def test_input_starts_while_the_broker_is_down(tmp_path: Path) -> None:
    server = tansu_broker(tmp_path / "late")
    p = prefix()
    sink = Collector()
    inp = make_input(tmp_path, server, sink, topic_prefix=p)
    async with anyio.create_task_group() as tg:
        await tg.start(inp.run)
        await anyio.sleep(1)
        health = await inp.check()
        assert health["kafka"]["reachable"] is False and health["kafka"]["connected"] is False
        with running(server):
            out = make_output(tmp_path, server, topic_prefix=p)
            try:
                await out.write(Batch(Signal.METRICS, points(20)))
            finally:
                await out.shutdown()
            await sink.wait_for(20, within_secs=30)
            assert (await inp.check())["kafka"]["connected"] is True
            await inp.shutdown()
        tg.cancel_scope.cancel()
    assert len(sink.records()) == 20

"""The kafka wire format and config checks, without a broker: records → messages → the same
records (hypothesis), keys, headers, poison messages, and config errors that quote the value."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import pytest
from aiokafka import errors as kerr
from airisd_plugins.inputs.kafka import KafkaInput, KafkaInputConfig, RateLimitedLog
from airisd_plugins.outputs.kafka import KafkaOutput, KafkaOutputConfig, codec
from airisd_plugins.outputs.kafka.common import classify, route_client_logs
from hypothesis import given, settings
from hypothesis import strategies as st

from airisd.errors import PermanentError, TransientError
from airisd.model import Batch, LogRecord, Point, Signal, Span, SpanLog
from tests.conftest import make_ctx

TS = st.integers(min_value=0, max_value=(1 << 63) - 1)
TEXT = st.text(max_size=30)
LABELS = st.dictionaries(TEXT, TEXT, max_size=4)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
INT64 = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
JSONISH = st.recursive(st.none() | st.booleans() | INT64 | FINITE | TEXT,
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                       max_leaves=8)

POINTS = st.builds(Point, name=TEXT, value=FINITE, ts=TS, labels=LABELS)
LOGS = st.builds(LogRecord, ts=TS, level=st.sampled_from(["INFO", "ERROR", "DEBUG"]), message=TEXT, service=TEXT,
                 trace_id=TEXT, span_id=TEXT, labels=LABELS, stack_trace=TEXT, user_id=TEXT, request_id=TEXT,
                 attributes=st.dictionaries(TEXT, JSONISH, max_size=4))
SPANS = st.builds(Span, trace_id=TEXT, span_id=TEXT, parent_span_id=TEXT, operation_name=TEXT, service_name=TEXT,
                  start_ts=TS, end_ts=TS, kind=st.sampled_from(["", "server", "client"]), error=st.booleans(),
                  tags=st.dictionaries(TEXT, TEXT | INT64 | FINITE | st.booleans(), max_size=4),
                  logs=st.lists(st.builds(SpanLog, ts=TS, message=TEXT,
                                          fields=st.dictionaries(TEXT, JSONISH, max_size=3)), max_size=2))
RECORDS = {Signal.METRICS: POINTS, Signal.LOGS: LOGS, Signal.TRACES: SPANS}


def output(tmp_path: Any, **raw: Any) -> KafkaOutput:
    config = msgspec.convert(raw, KafkaOutputConfig, strict=False)
    config.validate()
    return KafkaOutput(config, make_ctx(tmp_path))


def roundtrip(out: KafkaOutput, batch: Batch) -> list[tuple[bytes | None, list[Any]]]:
    """What a consumer decodes from the messages the output would send."""
    messages, too_large = out._messages(batch)
    assert too_large == 0
    decoded = []
    for key, value, n in messages:
        signal, fmt = codec.read_headers(codec.headers(batch.signal, out.config.format, n), default_signal=None,
                                         default_format="json")
        records = codec.decode(signal, fmt, value)
        assert len(records) == n
        decoded.append((key, records))
    return decoded


@pytest.mark.parametrize("fmt", codec.FORMATS)
@pytest.mark.parametrize("signal", list(Signal), ids=lambda s: s.value)
@settings(max_examples=40)
@given(data=st.data())
def test_records_survive_the_round_trip(tmp_path: Any, fmt: str, signal: Signal, data: st.DataObject) -> None:
    items = data.draw(st.lists(RECORDS[signal], max_size=30))
    key = data.draw(st.sampled_from(codec.KEYS[signal]))
    per_message = data.draw(st.integers(min_value=1, max_value=8))
    out = output(tmp_path, format=fmt, key={signal.value: key}, max_records_per_message=per_message)
    decoded = roundtrip(out, Batch(signal, items))
    got = [r for _, records in decoded for r in records]
    assert sorted(map(msgspec.json.encode, got)) == sorted(map(msgspec.json.encode, items))
    func = codec.KEY_FUNCS.get((signal, key))
    for k, records in decoded:
        assert len(records) <= per_message
        if func is not None:  # every record of a message has the message's key ...
            assert {func(r) for r in records} == {(k or b"").decode()}
    if func is not None:  # ... and records of one key keep their order
        for k in {func(r) for r in items}:
            assert [r for _, rs in decoded for r in rs if func(r) == k] == [r for r in items if func(r) == k]


def test_series_key_is_name_and_sorted_labels() -> None:
    p = Point(name="cpu", value=1, ts=1, labels={"host": "a", "core": "0"})
    assert codec.KEY_FUNCS[(Signal.METRICS, "series")](p) == "cpu{core=0,host=a}"


def test_large_groups_are_split_under_max_message_bytes(tmp_path: Any) -> None:
    out = output(tmp_path, max_message_bytes=2000, key={"logs": "none"})
    items = [LogRecord(ts=i, level="INFO", message="x" * 100) for i in range(100)]
    messages, too_large = out._messages(Batch(Signal.LOGS, items))
    assert too_large == 0 and len(messages) > 5
    assert all(len(v) <= 2000 for _, v, _ in messages)
    assert [r.ts for _, v, _ in messages for r in codec.decode(Signal.LOGS, "json", v)] == list(range(100))


def test_a_record_larger_than_a_message_is_counted_not_sent(tmp_path: Any) -> None:
    out = output(tmp_path, max_message_bytes=1024)
    items = [LogRecord(ts=1, level="INFO", message="y" * 5000), LogRecord(ts=2, level="INFO", message="ok")]
    messages, too_large = out._messages(Batch(Signal.LOGS, items))
    assert too_large == 1 and [n for _, _, n in messages] == [1]


@pytest.mark.parametrize(("value", "headers", "reason"), [
    (b"", [], "empty"),
    (b"not json", [], "undecodable"),
    (b'{"name": "x"}', [], "undecodable"),
    (b'[{"name": "x", "value": 1, "ts": -5}]', [], "invalid_record"),
    (b'[{"name": "x", "value": 1, "ts": 99999999999999999999}]', [], "invalid_record"),
    (b"[]", [("airisd-signal", b"nope")], "bad_header"),
    (b"[]", [("airisd-encoding", b"xml")], "bad_header"),
])
def test_poison_messages_are_refused_with_a_reason(value: bytes, headers: list[tuple[str, bytes]],
                                                   reason: str) -> None:
    with pytest.raises(codec.BadMessage) as info:
        signal, fmt = codec.read_headers(headers, default_signal=Signal.METRICS, default_format="json")
        codec.decode(signal, fmt, value)
    assert info.value.reason == reason


def test_a_message_without_headers_takes_its_topic_signal() -> None:
    assert codec.read_headers(None, default_signal=Signal.LOGS, default_format="msgpack") == (Signal.LOGS, "msgpack")
    with pytest.raises(codec.BadMessage):
        codec.read_headers(None, default_signal=None, default_format="json")


@pytest.mark.parametrize(("raw", "quoted"), [
    ({"brokers": ""}, "''"),
    ({"brokers": "kafka"}, "'kafka'"),
    ({"brokers": "kafka:99999"}, "'kafka:99999'"),
    ({"topic_prefix": "bad topic/"}, "'bad topic/metrics'"),
    ({"topics": {"logs": "airisd-metrics"}}, "airisd-metrics"),
    ({"format": "avro"}, "'avro'"),
    ({"compression": "brotli"}, "'brotli'"),
    ({"acks": "some"}, "'some'"),
    ({"acks": 1, "idempotent": True}, "1"),
    ({"key": {"metrics": "trace_id"}}, "'trace_id'"),
    ({"max_message_bytes": 10}, "10"),
    ({"max_records_per_message": 0}, "0"),
])
def test_output_config_errors_name_the_value(raw: dict[str, Any], quoted: str) -> None:
    config = msgspec.convert(raw, KafkaOutputConfig, strict=False)
    with pytest.raises(ValueError) as info:
        config.validate()
    assert quoted in str(info.value)


def test_output_config_accepts_the_seed_brokers_string_and_a_list() -> None:
    for brokers in ("kafka1:9092, kafka2:9092", ["kafka1:9092", "kafka2:9092"]):
        config = msgspec.convert({"brokers": brokers, "compression": "zstd"}, KafkaOutputConfig, strict=False)
        config.validate()


@pytest.mark.parametrize(("raw", "quoted"), [
    ({"group_id": ""}, "group_id"),
    ({"signals": ["events"]}, "'events'"),
    ({"auto_offset_reset": "none"}, "'none'"),
    ({"max_batch_records": 0}, "0"),
    ({"format": "csv"}, "'csv'"),
])
def test_input_config_errors_name_the_value(raw: dict[str, Any], quoted: str) -> None:
    config = msgspec.convert(raw, KafkaInputConfig, strict=False)
    with pytest.raises(ValueError) as info:
        config.validate()
    assert quoted in str(info.value)


@pytest.mark.anyio
async def test_input_refuses_a_signal_its_roles_cannot_store(tmp_path: Any) -> None:
    config = msgspec.convert({"signals": ["traces"]}, KafkaInputConfig, strict=False)
    ctx = make_ctx(tmp_path, settings={"signals": ["metrics"], "roles": ["metrics"]})
    plugin = KafkaInput(config, ctx)
    with pytest.raises(ValueError, match="traces"):
        await plugin.start()
    both = KafkaInput(KafkaInputConfig(), ctx)  # default: only what the roles handle
    assert both.topic_signal == {"airisd-metrics": Signal.METRICS}


def test_rate_limited_log_counts_what_it_holds_back() -> None:
    lines: list[dict[str, Any]] = []

    class Log:
        def warning(self, event: str, extra: dict[str, Any]) -> None:
            lines.append(extra["kv"])

    rl = RateLimitedLog(Log(), 3600)
    for i in range(5):
        rl.warning("bad", {"i": i})
    rl._last["bad"] -= 7200  # the interval has passed
    rl.warning("bad", {"i": 5})
    assert lines == [{"i": 0}, {"i": 5, "suppressed": 4}]


@pytest.mark.parametrize(("exc", "kind"), [
    (kerr.KafkaConnectionError("refused"), TransientError),
    (kerr.KafkaTimeoutError(), TransientError),
    (kerr.NotLeaderForPartitionError(), TransientError),
    (kerr.UnknownError(), TransientError),  # unknown: retried, never dropped
    (kerr.MessageSizeTooLargeError(), PermanentError),
    (kerr.TopicAuthorizationFailedError(), PermanentError),
    (kerr.InvalidTopicError(), PermanentError),
])
def test_kafka_errors_are_split_into_transient_and_permanent(exc: Exception, kind: type) -> None:
    got = classify(exc, "kafka t")
    assert type(got) is kind and type(exc).__name__ in str(got)


def test_client_logs_are_routed_and_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    route_client_logs()
    route_client_logs()  # idempotent: one forwarder
    client = logging.getLogger("aiokafka.conn")
    with caplog.at_level(logging.WARNING, logger="airisd.kafka.client"):
        for _ in range(50):
            client.error("Unable connect to node with id %s: %s", 111, "refused")
    forwarded = [r for r in caplog.records if r.name == "airisd.kafka.client"]
    assert len(forwarded) == 1
    assert forwarded[0].kv["client_message"] == "Unable connect to node with id 111: refused"  # type: ignore[attr-defined]

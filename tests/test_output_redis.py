"""The redis stream output against a real redis-server: records round-trip through XRANGE with
their content intact, trimming, and the error mapping the runner's retries depend on."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis
from airisd_plugins.outputs.redis import RedisOutput, RedisOutputConfig, codec
from hypothesis import given, settings
from hypothesis import strategies as st

from airisd.errors import PermanentError, TransientError
from airisd.model import Batch, LogRecord, Point, Signal, Span, SpanLog
from tests.conftest import make_ctx
from tests.servers import ServerProcess, redis_server

NS = 1_790_000_000_123_456_789


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = redis_server(tmp_path_factory.mktemp("redis-out"))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop(kill=True)


@pytest.fixture
def reader(server: ServerProcess) -> Iterator[redis.Redis]:
    client = redis.Redis(port=server.port)
    client.flushdb()
    yield client
    client.close()


async def make_output(tmp_path: Path, port: int, **options: Any) -> RedisOutput:
    config = msgspec.convert({"port": port, **options}, RedisOutputConfig)
    config.validate()
    out = RedisOutput(config, make_ctx(tmp_path))
    await out.start()
    return out


@pytest.fixture
async def output(tmp_path: Path, server: ServerProcess) -> AsyncIterator[RedisOutput]:
    out = await make_output(tmp_path, server.port)
    yield out
    await out.shutdown()


def records() -> dict[Signal, list[Any]]:
    return {
        Signal.METRICS: [
            Point(name="cpu.usage", value=0.1 + 0.2, ts=NS, labels={"host": "web-1", "région": "eu"}),
            Point(name="up", value=1.0, ts=NS + 1),
            Point(name="temp", value=-1e-300, ts=0, labels={"": "empty key"}),
        ],
        Signal.LOGS: [
            LogRecord(ts=NS, level="ERROR", message="line1\nline2 \x00 ✓", service="api", trace_id="ab" * 16,
                      labels={"env": "prod"}, stack_trace="Traceback...", user_id="u1", request_id="r1",
                      attributes={"n": 1, "nested": {"a": [1, None, "x"]}, "f": 2.5}),
            LogRecord(ts=NS + 5, level="INFO", message=""),
        ],
        Signal.TRACES: [
            Span(trace_id="cd" * 16, span_id="ef" * 8, parent_span_id="01" * 8, operation_name="GET /x",
                 service_name="api", start_ts=NS, end_ts=NS + 1500, kind="server", error=True,
                 tags={"http.status_code": 500, "ok": False, "ratio": 0.25, "path": "/x"},
                 logs=[SpanLog(ts=NS + 10, message="retry", fields={"attempt": 2})]),
        ],
    }


@pytest.mark.services
@pytest.mark.anyio
@pytest.mark.parametrize("method", ["pipeline", "script"])
@pytest.mark.parametrize("fmt", ["fields", "json"])
async def test_records_round_trip_through_xrange(tmp_path: Path, server: ServerProcess, reader: Any,
                                                 fmt: str, method: str) -> None:
    out = await make_output(tmp_path, server.port, format=fmt, stream_prefix="t:", method=method, script_chunk=2)
    try:
        for signal, items in records().items():
            await out.write(Batch(signal, items))
            await out.write(Batch(signal, items[:1]))
    finally:
        await out.shutdown()
    for signal, items in records().items():
        entries = reader.xrange(f"t:{signal.value}")
        assert [codec.decode(signal, fields) for _, fields in entries] == [*items, items[0]]
    [(_, fields)] = reader.xrange("t:metrics", count=1)
    if fmt == "fields":  # readable without our decoder
        assert fields[b"name"] == b"cpu.usage" and fields[b"value"] == b"0.30000000000000004"
        assert fields[b"ts"] == str(NS).encode()
    else:
        assert set(fields) == {b"data"}


@pytest.mark.services
@pytest.mark.anyio
@pytest.mark.parametrize("method", ["pipeline", "script"])
@pytest.mark.parametrize(("approximate", "check"), [(False, lambda n: n == 1000), (True, lambda n: 1000 <= n < 5000)])
async def test_max_len_trims_each_stream(tmp_path: Path, server: ServerProcess, reader: Any,
                                         approximate: bool, check: Any, method: str) -> None:
    out = await make_output(tmp_path, server.port, max_len=1000, approximate_trim=approximate, method=method)
    try:
        for start in range(0, 5000, 500):
            await out.write(Batch(Signal.METRICS, [Point(name="m", value=i, ts=i) for i in range(start, start + 500)]))
    finally:
        await out.shutdown()
    n = reader.xlen("airisd:metrics")
    assert check(n)
    last = codec.decode(Signal.METRICS, reader.xrevrange("airisd:metrics", count=1)[0][1])
    assert isinstance(last, Point) and last.value == 4999  # the newest are kept


@pytest.mark.services
@pytest.mark.anyio
async def test_a_stopped_server_is_transient_and_the_output_reconnects(tmp_path: Path) -> None:
    srv = redis_server(tmp_path / "r")
    srv.start()
    out = await make_output(tmp_path, srv.port, timeout_secs=2)
    try:
        await out.write(Batch(Signal.METRICS, [Point(name="a", value=1, ts=1)]))
        srv.stop(kill=True)
        with pytest.raises(TransientError, match=f"127.0.0.1:{srv.port}"):
            await out.write(Batch(Signal.METRICS, [Point(name="a", value=2, ts=2)]))
        srv.start()
        await out.write(Batch(Signal.METRICS, [Point(name="a", value=3, ts=3)]))
        client: Any = redis.Redis(port=srv.port)
        try:
            assert [codec.decode(Signal.METRICS, f).value for _, f in client.xrange("airisd:metrics")] == [3]
        finally:
            client.close()
    finally:
        await out.shutdown()
        srv.stop(kill=True)


@pytest.mark.services
@pytest.mark.anyio
@pytest.mark.parametrize("method", ["pipeline", "script"])
async def test_a_key_of_another_type_is_permanent(tmp_path: Path, server: ServerProcess, reader: Any,
                                                  method: str) -> None:
    reader.set("airisd:logs", "not a stream")
    out = await make_output(tmp_path, server.port, method=method)
    try:
        with pytest.raises(PermanentError, match="WRONGTYPE"):
            await out.write(Batch(Signal.LOGS, [LogRecord(ts=1, level="INFO", message="x")]))
    finally:
        await out.shutdown()


@pytest.mark.services
@pytest.mark.anyio
async def test_the_script_is_loaded_again_after_a_restart(tmp_path: Path) -> None:
    srv = redis_server(tmp_path / "r")
    srv.start()
    out = await make_output(tmp_path, srv.port, method="script")
    try:
        await out.write(Batch(Signal.METRICS, [Point(name="a", value=1, ts=1)]))
        srv.stop()
        srv.start()  # empty, without the script
        batch = Batch(Signal.METRICS, [Point(name="a", value=2, ts=2)])
        try:
            await out.write(batch)
        except TransientError:  # the pooled connection died with the server: the runner retries
            await out.write(batch)
        client: Any = redis.Redis(port=srv.port)
        try:
            assert [codec.decode(Signal.METRICS, f).value for _, f in client.xrange("airisd:metrics")] == [2]
        finally:
            client.close()
    finally:
        await out.shutdown()
        srv.stop(kill=True)


@pytest.mark.services
@pytest.mark.anyio
async def test_password_from_the_seed_env_names(tmp_path: Path) -> None:
    srv = redis_server(tmp_path / "r")
    srv.argv += ["--requirepass", "s3cret/pw"]
    srv.start()
    try:
        wrong = await make_output(tmp_path, srv.port, password="nope")
        try:
            with pytest.raises((TransientError, PermanentError)) as err:
                await wrong.write(Batch(Signal.METRICS, [Point(name="a", value=1, ts=1)]))
            assert "nope" not in str(err.value)
        finally:
            await wrong.shutdown()
        right = await make_output(tmp_path, srv.port, password="s3cret/pw")
        try:
            await right.write(Batch(Signal.METRICS, [Point(name="a", value=1, ts=1)]))
        finally:
            await right.shutdown()
    finally:
        srv.stop(kill=True)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"format": "xml"}, "format must be one of fields, json, got 'xml'"),
        ({"max_len": -1}, "max_len must be >= 0, got -1"),
        ({"port": 70000}, "port must be a TCP port, got 70000"),
        ({"url": "http://:pw@h:1"}, "url must start with redis://"),
        ({"timeout_secs": 0}, "timeout_secs must be positive, got 0"),
        ({"method": "lua"}, "method must be one of pipeline, script, got 'lua'"),
        ({"script_chunk": 0}, "script_chunk must be between 1 and 100000, got 0"),
    ],
)
def test_bad_config_names_the_option(options: dict[str, Any], message: str) -> None:
    config = msgspec.convert(options, RedisOutputConfig)
    with pytest.raises(ValueError, match=message) as err:
        config.validate()
    assert "pw" not in str(err.value)
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.convert({"stream_prefx": "x"}, RedisOutputConfig)


def test_url_from_host_port_password() -> None:
    c = RedisOutputConfig(host="cache", port=6380, password="p@ss:/", db=3)
    assert c.redis_url == "redis://:p%40ss%3A%2F@cache:6380/3"
    assert RedisOutputConfig(url="rediss://x:1/0").redis_url == "rediss://x:1/0"


# -- the codec, for any record --------------------------------------------------------------------

text = st.text(max_size=20)
labels = st.dictionaries(text, text, max_size=4)
json_value = st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | text
                          | st.floats(allow_nan=False, allow_infinity=False),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
                          max_leaves=8)
points = st.builds(Point, name=text, value=st.floats(), ts=st.integers(0, 2**63 - 1), labels=labels)
logs = st.builds(LogRecord, ts=st.integers(0, 2**63 - 1), level=text, message=text, service=text, labels=labels,
                 attributes=st.dictionaries(text, json_value, max_size=4))
spans = st.builds(Span, trace_id=text, span_id=text, operation_name=text, service_name=text,
                  start_ts=st.integers(0, 2**62), end_ts=st.integers(0, 2**62), error=st.booleans(),
                  tags=st.dictionaries(text, st.booleans() | st.integers(-(2**63), 2**63 - 1) | text
                                       | st.floats(allow_nan=False, allow_infinity=False), max_size=4))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Point) and math.isnan(a.value):
        return isinstance(b, Point) and math.isnan(b.value) and msgspec.structs.replace(a, value=0) == \
            msgspec.structs.replace(b, value=0)
    return bool(a == b)


@settings(max_examples=300, deadline=None)
@given(record=st.one_of(points, logs, spans))
def test_codec_fields_round_trip_any_record(record: Any) -> None:
    signal = codec.SIGNALS[type(record)]
    fields = codec.encode(record, "fields")
    wire = {k.encode(): v.encode() for k, v in fields.items()}  # as redis returns it
    assert _same(codec.decode(signal, wire), record)

"""Elasticsearch bulk and Loki push: decoding, mapping and the answers' shapes, in process."""

from __future__ import annotations

import contextlib
import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest
from airisd_plugins.inputs.elasticsearch import ElasticsearchInput
from airisd_plugins.inputs.elasticsearch.bulk import BulkError, doc_to_record, parse_bulk
from airisd_plugins.inputs.loki import LokiInput, streams_to_records
from airisd_plugins.inputs.loki.push import (
    Entry,
    PushError,
    Stream,
    decode_json,
    decode_protobuf,
    encode_protobuf,
    parse_label_set,
)
from airisd_plugins.inputs.prometheus_remote_write.shared import snappy_compress
from hypothesis import given
from hypothesis import strategies as st

from airisd.model import LogRecord
from tests.conftest import FakeClock
from tests.proto_helpers import plugin_client

NOW = FakeClock().now_ns
T = 1_705_314_600_000_000_000
# hypothesis types categories as literals; these tuples are valid ones.
_NO_SURROGATES: Any = ("Cs",)
_NO_CONTROL: Any = ("Cs", "Cc")


def ndjson(*objs: object) -> bytes:
    return b"".join(orjson.dumps(o) + b"\n" for o in objs)


# -- Elasticsearch -------------------------------------------------------------------------------


def test_ecs_document_maps_to_the_seed_fields() -> None:
    doc = {
        "@timestamp": "2024-01-15T10:30:00Z",
        "message": "payment failed",
        "log": {"level": "error"},
        "service": {"name": "checkout"},
        "trace": {"id": "abc"},
        "span.id": "def",
        "user": {"id": 42},
        "error": {"stack_trace": "at x"},
        "labels": {"env": "prod"},
        "http": {"method": "POST"},
        "level": "info",
        "tags": ["a", "b"],
    }
    r = doc_to_record(doc, index="app-logs", doc_id="id1", now_ns=NOW)
    assert r == LogRecord(
        ts=T,
        level="ERROR",
        message="payment failed",
        service="checkout",
        trace_id="abc",
        span_id="def",
        user_id="42",
        stack_trace="at x",
        labels={"env": "prod", "index": "app-logs"},
        attributes={"http.method": "POST", "_source.level": "info", "tags": ["a", "b"], "_id": "id1"},
    )


def test_fluent_bit_docker_style_and_missing_fields() -> None:
    r = doc_to_record(
        {"log": "plain line\n", "stream": "stdout", "date": 1705314600.0}, index="fb", doc_id=None, now_ns=NOW
    )
    assert (r.message, r.ts, r.level, r.labels, r.attributes) == (
        "plain line\n",
        T,
        "UNKNOWN",
        {"index": "fb"},
        {"stream": "stdout"},
    )
    r = doc_to_record({"count": 1}, index="i", doc_id=None, now_ns=NOW)
    assert (r.message, r.ts) == ("", NOW)
    r = doc_to_record({"message": {"structured": True}}, index="i", doc_id=None, now_ns=NOW)
    assert (r.message, r.attributes) == ("", {"message.structured": True})  # flattened first
    assert doc_to_record({"message": 42}, index="i", doc_id=None, now_ns=NOW).message == "42"


def test_bulk_items_in_order_with_per_item_errors() -> None:
    body = (
        ndjson(
            {"index": {"_index": "a", "_id": "1"}},
            {"message": "one", "level": "warn"},
            {"create": {}},
            {"message": "two"},
            {"delete": {"_index": "a", "_id": "1"}},
            {"update": {"_index": "a", "_id": "1"}},
            {"doc": {"x": 1}},
            {"index": {"_index": "a"}},
            [1, 2],
            {"index": {"_index": "a"}},
            {"message": "bad ts", "@timestamp": "yesterday"},
        )
        + b'{"index": {}}\n{not json}\n'
    )
    res = parse_bulk(body, default_index="dflt", now_ns=NOW, max_actions=100)
    assert [r.message for r in res.records] == ["one", "two"]
    assert res.records[1].labels == {"index": "dflt"}
    assert res.errors is True
    statuses = [(next(iter(i)), next(iter(i.values()))["status"]) for i in res.items]
    assert statuses == [
        ("index", 201),
        ("create", 201),
        ("delete", 400),
        ("update", 400),
        ("index", 400),
        ("index", 400),
        ("index", 400),
    ]
    first = res.items[0]["index"]
    assert first["_id"] == "1" and first["result"] == "created" and first["_index"] == "a"
    assert res.items[2]["delete"]["error"]["type"] == "illegal_argument_exception"
    assert res.items[5]["index"]["error"]["type"] == "document_parsing_exception"
    assert "timestamp" in res.items[5]["index"]["error"]["reason"]


def test_missing_index_is_an_item_error() -> None:
    res = parse_bulk(ndjson({"index": {}}, {"message": "x"}), default_index=None, now_ns=NOW, max_actions=10)
    assert res.items[0]["index"]["status"] == 400 and not res.records


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"{oops\n", "x_content_parse_exception"),
        (ndjson({"index": {}, "create": {}}, {}), "illegal_argument_exception"),
        (ndjson({"upsert": {}}, {}), "illegal_argument_exception"),
        (ndjson({"index": {"_index": "a"}}), "illegal_argument_exception"),
        (ndjson({"index": "a"}, {}), "illegal_argument_exception"),
        (ndjson(*[{"index": {"_index": "a"}}, {"m": 1}] * 3), "illegal_argument_exception"),
    ],
)
def test_malformed_bulk_bodies_fail_the_request(body: bytes, kind: str) -> None:
    with pytest.raises(BulkError) as info:
        parse_bulk(body, default_index=None, now_ns=NOW, max_actions=2)
    assert info.value.kind == kind


@given(st.binary(max_size=300))
def test_bulk_fuzz_raises_only_bulk_errors(data: bytes) -> None:
    try:
        res = parse_bulk(data, default_index="i", now_ns=NOW, max_actions=1000)
    except BulkError:
        return
    assert len(res.records) <= len(res.items)


def test_es_endpoints_answer_like_elasticsearch(tmp_path: Path) -> None:
    with plugin_client(ElasticsearchInput, tmp_path, role="log") as (client, sink, _):
        r = client.get("/")
        assert r.status_code == 200 and r.headers["x-elastic-product"] == "Elasticsearch"
        assert r.json()["version"]["number"] == "8.17.0" and r.json()["tagline"] == "You Know, for Search"
        assert client.get("/_cluster/health").json()["status"] == "green"
        r = client.post(
            "/logs-x/_bulk",
            content=gzip.compress(ndjson({"index": {}}, {"message": "m1"})),
            headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"},
        )
        assert r.status_code == 200 and r.headers["x-elastic-product"] == "Elasticsearch"
        assert r.json()["errors"] is False and r.json()["items"][0]["index"]["status"] == 201
        assert sink.items[0].labels == {"index": "logs-x"}
        r = client.post("/_bulk", content=b"{oops\n")
        assert r.status_code == 400
        err = r.json()
        assert err["status"] == 400 and err["error"]["type"] == "x_content_parse_exception"
        assert err["error"]["root_cause"][0]["type"] == "x_content_parse_exception"
        r = client.post("/idx/_doc", json={"message": "single", "level": "debug"})
        assert r.status_code == 201 and r.json()["result"] == "created"
        assert sink.items[-1].level == "DEBUG"
        r = client.post("/idx/_doc", content=b"[1]")
        assert r.status_code == 400 and r.json()["error"]["type"] == "document_parsing_exception"
        sink.refuse = True
        r = client.put("/_bulk", content=ndjson({"index": {"_index": "a"}}, {"message": "x"}))
        assert r.status_code == 429 and r.json()["error"]["type"] == "es_rejected_execution_exception"
        assert r.headers["retry-after"] == "2"


# -- Loki ---------------------------------------------------------------------------------------------


def test_label_sets() -> None:
    assert parse_label_set('{job="api", level="error"}') == {"job": "api", "level": "error"}
    assert parse_label_set("{}") == {}
    assert parse_label_set('{a="q\\"uote\\\\ \\n \\u00e9 \\x41",b=",}"}') == {
        "a": 'q"uote\\ \n é A',
        "b": ",}",
    }
    for bad in ("job=api", '{job="api"', "{job=api}", '{job="a" x="b"}', '{9x="a"}', '{a="\\q"}'):
        with pytest.raises(PushError):
            parse_label_set(bad)


_labels = st.dictionaries(
    st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True),
    st.text(st.characters(blacklist_categories=_NO_SURROGATES), max_size=12),
    max_size=4,
)
_streams = st.lists(
    st.builds(
        Stream,
        labels=_labels,
        entries=st.lists(
            st.builds(
                Entry,
                ts=st.integers(0, 2**62),
                line=st.text(st.characters(blacklist_categories=_NO_SURROGATES), max_size=30),
                metadata=st.dictionaries(
                    st.text(st.characters(blacklist_categories=_NO_SURROGATES), min_size=1, max_size=5),
                    st.just("v"),
                    max_size=2,
                ),
            ),
            max_size=3,
        ),
    ),
    max_size=3,
)


@given(_streams)
def test_protobuf_push_round_trips(streams: list[Stream]) -> None:
    assert decode_protobuf(encode_protobuf(streams)) == streams


@given(st.binary(max_size=200))
def test_label_set_and_protobuf_fuzz(data: bytes) -> None:
    for fn in (
        lambda: parse_label_set(data.decode("utf-8", "replace")),
        lambda: decode_protobuf(data),
        lambda: decode_json(data),
    ):
        with contextlib.suppress(PushError):
            fn()


def test_json_push_both_shapes() -> None:
    streams = decode_json(
        orjson.dumps(
            {
                "streams": [
                    {
                        "stream": {"job": "api"},
                        "values": [[str(T), "line one"], [str(T + 1), "two", {"trace_id": "t1"}]],
                    },
                    {"labels": '{app="legacy"}', "entries": [{"ts": "2024-01-15T10:30:00Z", "line": "old"}]},
                ]
            }
        )
    )
    assert streams == [
        Stream({"job": "api"}, [Entry(T, "line one"), Entry(T + 1, "two", {"trace_id": "t1"})]),
        Stream({"app": "legacy"}, [Entry(T, "old")]),
    ]
    bad: Any
    for bad in (
        {"streams": {}},
        {"streams": [{"stream": {"a": 1}, "values": []}]},
        {"streams": [{"stream": {}, "values": [["-5", "x"]]}]},
        {"streams": [{"stream": {}, "values": [["1", 2]]}]},
        {"streams": [{"stream": {}}]},
    ):
        with pytest.raises(PushError):
            decode_json(orjson.dumps(bad))


def test_stream_mapping() -> None:
    streams = [
        Stream(
            {"service_name": "api", "job": "j", "level": "warning"},
            [Entry(T, "x", {"trace_id": "t", "k": "v"})],
        ),
        Stream({"job": "batch"}, [Entry(T, "2024-01-15 10:30:00 ERROR [svc] it broke"), Entry(T, "plain")]),
    ]
    records, refused, _ = streams_to_records(streams, NOW)
    assert refused == 0
    assert records[0] == LogRecord(
        ts=T,
        level="WARN",
        message="x",
        service="api",
        trace_id="t",
        labels={"service_name": "api", "job": "j", "level": "warning"},
        attributes={"k": "v"},
    )
    assert (records[1].service, records[1].level, records[1].message) == (
        "batch",
        "ERROR",
        "2024-01-15 10:30:00 ERROR [svc] it broke",
    )
    assert records[2].level == "UNKNOWN"


def test_loki_endpoint(tmp_path: Path) -> None:
    with plugin_client(LokiInput, tmp_path, role="log") as (client, sink, _):
        pb = snappy_compress(encode_protobuf([Stream({"job": "promtail"}, [Entry(T, "from promtail")])]))
        r = client.post("/loki/api/v1/push", content=pb, headers={"Content-Type": "application/x-protobuf"})
        assert r.status_code == 204, r.text
        r = client.post(
            "/loki/api/v1/push", json={"streams": [{"stream": {"job": "j"}, "values": [[str(T), "js"]]}]}
        )
        assert r.status_code == 204
        assert [x.message for x in sink.items] == ["from promtail", "js"]
        r = client.post(
            "/loki/api/v1/push", content=b"not snappy", headers={"Content-Type": "application/x-protobuf"}
        )
        assert (
            r.status_code == 400 and r.headers["content-type"].startswith("text/plain") and "snappy" in r.text
        )
        r = client.post("/loki/api/v1/push", content=b"{", headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "JSON" in r.text
        r = client.post("/loki/api/v1/push", content=b"x", headers={"Content-Type": "text/csv"})
        assert r.status_code == 415
        big = {"streams": [{"stream": {"job": "j"}, "values": [[str(T), "x" * 70_000], [str(T), "fine"]]}]}
        r = client.post("/loki/api/v1/push", json=big)
        assert r.status_code == 400 and "1 entries refused, 1 stored" in r.text
        assert sink.items[-1].message == "fine"
        assert client.get("/ready").status_code == 200
        sink.refuse = True
        r = client.post("/loki/api/v1/push", json={"streams": [{"stream": {}, "values": [[str(T), "y"]]}]})
        assert r.status_code == 503 and r.headers["retry-after"] == "2"

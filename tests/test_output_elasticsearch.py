"""The elasticsearch output against noida-db's Elasticsearch API over a real socket (an emulator of
Elasticsearch 8.15, not Elasticsearch: see the plugin's README): template, daily indices, round
trips, per-document errors and the dead-letter file."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import orjson
import pytest
from airisd_plugins.outputs.elasticsearch import ElasticsearchConfig, ElasticsearchOutput
from airisd_plugins.outputs.elasticsearch.store import EsLogStore, StoreUnavailable
from airisd_plugins.outputs.elasticsearch.template import attribute_token, canonical_number, index_name
from airisd_plugins.outputs.elasticsearch.writer import Doc, bulk, chunks, prepare
from elasticsearch import Elasticsearch

from airisd import logquery
from airisd.errors import TransientError
from airisd.model import Batch, LogRecord, Signal
from airisd.plugin import PluginContext
from airisd.query import LogQuery
from airisd.selfmetrics import Registry
from tests.e2e_helpers import free_port
from tests.servers import ServerProcess, noida_elasticsearch

SEC = 1_000_000_000
T_SEED = 1_705_314_600_000_000_000  # 2024-01-15T10:30:00Z, the seed's example
ALL = (0, 2**63 - 1)


# -- fixtures shared by the elasticsearch test modules ---------------------------------------------
@pytest.fixture(scope="module")
def noida(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = noida_elasticsearch(tmp_path_factory.mktemp("noida"))
    server.start()
    try:
        yield server
    finally:
        server.stop(kill=True)


@pytest.fixture
def es(noida: ServerProcess) -> Iterator[Elasticsearch]:
    client = Elasticsearch(noida.url)
    yield client
    client.close()


_prefixes = iter(range(1_000_000))


def fresh_prefix(name: str) -> str:
    """An index prefix of its own per test, so tests on one server never see each other's logs."""
    return f"{name}{next(_prefixes)}-"


def make_output(url: str, data_dir: Path, **options: Any) -> ElasticsearchOutput:
    cfg = msgspec.convert({"hosts": [url], **options}, ElasticsearchConfig)
    cfg.validate()

    async def emit(batch: Batch) -> None:
        raise AssertionError("an output never emits")

    ctx = PluginContext(data_dir, logging.getLogger("test.elasticsearch"), Registry(), emit)
    return ElasticsearchOutput(cfg, ctx)


def write_all(out: ElasticsearchOutput, *batches: list[LogRecord]) -> None:
    async def go() -> None:
        await out.start()
        try:
            for b in batches:
                await out.write(Batch(Signal.LOGS, b))
        finally:
            await out.shutdown()

    anyio.run(go)


def full_record(ts: int = T_SEED, **kw: Any) -> LogRecord:
    base: dict[str, Any] = dict(
        ts=ts, level="ERROR", message="Database connection failed", service="user-api",
        trace_id="abc123def456", span_id="789ghi012jkl", labels={"component": "database", "operation": "connect"},
        stack_trace="Error: Connection timeout\n  at Database.connect()\n  at UserService.init()",
        user_id="user_12345", request_id="req_67890",
        attributes={"http.status": 500, "ratio": 0.25, "ok": True, "none": None, "list": [1, "a"],
                    "obj": {"k": "v"}, "big": 2**70, "text": "한국어 ü"})  # fmt: skip
    base.update(kw)
    return LogRecord(**base)


# -- unit: config and encoding ---------------------------------------------------------------------
@pytest.mark.parametrize(("options", "message"), [
    ({"hosts": []}, r"hosts must name at least one Elasticsearch URL, got \[\]"),
    ({"hosts": ["localhost:9200"]}, "hosts: 'localhost:9200' is not an http:// or https:// URL"),
    ({"index_prefix": "Logs-"}, "index_prefix 'Logs-' must be lower case"),
    ({"index_date_format": "%Y %m"}, "index_date_format '%Y %m' must be a strftime date format"),
    ({"api_key": "k", "username": "u"}, "api_key and username/password are both set"),
    ({"max_bulk_bytes": 10}, "max_bulk_bytes must be at least 1024, got 10"),
    ({"number_of_shards": 0}, "number_of_shards must be >= 1"),
])  # fmt: skip
def test_config_rejects_bad_values_quoting_them(options: dict[str, Any], message: str) -> None:
    cfg = msgspec.convert(options, ElasticsearchConfig)
    with pytest.raises(ValueError, match=message):
        cfg.validate()


def test_config_rejects_unknown_option() -> None:
    with pytest.raises(msgspec.ValidationError, match="index_prefx"):
        msgspec.convert({"index_prefx": "x-"}, ElasticsearchConfig)


def test_index_names_are_the_records_utc_day() -> None:
    assert index_name("logs-", "%Y.%m.%d", T_SEED) == "logs-2024.01.15"
    assert index_name("logs-", "%Y.%m.%d", T_SEED + 13 * 3600 * SEC + 29 * 60 * SEC) == "logs-2024.01.15"
    assert index_name("logs-", "%Y.%m.%d", T_SEED + 13 * 3600 * SEC + 30 * 60 * SEC) == "logs-2024.01.16"
    assert index_name("logs-", "%Y.%m", T_SEED) == "logs-2024.01"  # the seed's _settings example is monthly


def test_attribute_tokens_compare_like_the_sqlite_store() -> None:
    assert attribute_token(500) == attribute_token(500.0) == "n:500"
    assert attribute_token("500") == "s:500" != attribute_token(500)
    assert attribute_token(True) == "b:true" and attribute_token(1) == "n:1"
    assert attribute_token(float("inf")) == attribute_token(None) == "z:null"
    assert attribute_token([1]) is None and attribute_token({"a": 1}) is None
    assert attribute_token("ÄPI-X") == "s:Äpi-x"  # ASCII letters only, as SQLite's NOCASE
    assert canonical_number(2**60) != canonical_number(float(2**60) + 256)


def test_content_ids_are_stable_and_distinct() -> None:
    a, b = full_record(), full_record(message="other")
    d1, d2, d3 = prepare([a, b, a], prefix="logs-", date_format="%Y.%m.%d", content_ids=True)
    assert d1.id == d3.id != d2.id and d1.index == "logs-2024.01.15"
    assert orjson.loads(d1.body)["event_id"] == d1.id
    r1, r2 = prepare([a, a], prefix="logs-", date_format="%Y.%m.%d", content_ids=False)
    assert r1.id != r2.id


def test_chunks_respect_the_byte_limit() -> None:
    docs = prepare([full_record(ts=T_SEED + i) for i in range(50)], prefix="l-", date_format="%Y", content_ids=True)
    size = len(docs[0].action) + len(docs[0].body) + 2
    parts = chunks(docs, size * 7 + 1)
    assert [len(p) for p in parts] == [7] * 7 + [1]
    assert [d for p in parts for d in p] == docs


class _FakeBulkClient:
    """A stand-in for the per-item classification only (a real server cannot be made to answer
    429 or 503 for chosen documents); the server tests below prove the integration."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.sent: list[bytes] = []

    async def bulk(self, operations: bytes) -> Any:
        self.sent.append(operations)
        items = [{"create": {"status": s, **({"error": {"type": f"e{s}"}} if s >= 300 else {})}}
                 for s in self.statuses]  # fmt: skip

        class Resp:
            body = {"errors": True, "items": items}

        return Resp()


def test_bulk_classifies_each_document() -> None:
    docs = prepare([full_record(ts=T_SEED + i) for i in range(6)], prefix="l-", date_format="%Y", content_ids=True)
    client = _FakeBulkClient([201, 409, 429, 503, 400, 404])
    out = anyio.run(lambda: bulk(client, docs, max_bytes=1 << 20, content_ids=True))  # type: ignore[arg-type]
    assert out.delivered == 2  # 409 on create with a content id: already indexed by an earlier try
    assert out.retry == [docs[2], docs[3]]
    assert [(d, s) for d, s, _ in out.dead] == [(docs[4], 400), (docs[5], 404)]


# -- against the server ----------------------------------------------------------------------------
@pytest.mark.services
def test_template_installed_and_daily_indices(noida: ServerProcess, es: Elasticsearch, tmp_path: Path) -> None:
    prefix = fresh_prefix("tpl")
    out = make_output(noida.url, tmp_path, index_prefix=prefix, template_name=prefix + "tpl")
    day2 = T_SEED + 24 * 3600 * SEC
    write_all(out, [full_record(), full_record(ts=day2, message="next day")])
    tpl = es.indices.get_index_template(name=prefix + "tpl")["index_templates"][0]["index_template"]
    assert tpl["index_patterns"] == [prefix + "*"]
    es.indices.refresh(index=prefix + "*")
    cat = es.cat.indices(index=prefix + "*", format="json").body
    assert isinstance(cat, list)
    assert sorted(i["index"] for i in cat) == [
        prefix + "2024.01.15", prefix + "2024.01.16"]  # fmt: skip
    mapping = es.indices.get_mapping(index=prefix + "2024.01.15")[prefix + "2024.01.15"]["mappings"]["properties"]
    assert mapping["@timestamp"]["type"] == "date_nanos" and mapping["level"]["type"] == "keyword"
    assert mapping["message"]["analyzer"] == "airis_words" and mapping["labels"]["type"] == "flattened"
    hit = es.search(index=prefix + "2024.01.16")["hits"]["hits"][0]["_source"]
    assert hit["@timestamp"] == "2024-01-16T10:30:00.000000000Z" and hit["message"] == "next day"


@pytest.mark.services
def test_round_trip_keeps_every_field(noida: ServerProcess, es: Elasticsearch, tmp_path: Path) -> None:
    prefix = fresh_prefix("rt")
    recs = [full_record(ts=T_SEED + 123_456_789), full_record(ts=T_SEED + 1, level="INFO", message="",
                                                              service="", trace_id="", labels={}, attributes={},
                                                              stack_trace="")]  # fmt: skip
    out = make_output(noida.url, tmp_path, index_prefix=prefix)
    write_all(out, recs)
    es.indices.refresh(index=prefix + "*")
    store = EsLogStore(es, prefix)
    assert isinstance(EsLogStore(es, prefix), LogQuery)  # what the log role and the daemon check
    got = store.search(None, from_ns=ALL[0], to_ns=ALL[1], limit=10)
    expected = msgspec.structs.replace(recs[0], attributes={**recs[0].attributes, "big": str(2**70)})
    assert got == [expected, recs[1]]  # newest first; a >64-bit integer comes back as text, as from SQLite
    assert store.count(logquery.parse('"connection failed" AND labels.component:DATABASE'), *ALL) == 1
    assert store.page(page=2, size=1, sort_desc=False, from_ns=ALL[0], to_ns=ALL[1]) == (2, [expected])
    assert store.page(page=3, size=1, from_ns=ALL[0], to_ns=ALL[1]) == (2, [])
    assert store.count_all() == 2


@pytest.mark.services
def test_retried_write_does_not_duplicate(noida: ServerProcess, es: Elasticsearch, tmp_path: Path) -> None:
    """A batch written twice (a retry after a lost response) is indexed once: content ids + create."""
    prefix = fresh_prefix("dup")
    recs = [full_record(ts=T_SEED + i) for i in range(20)]
    write_all(make_output(noida.url, tmp_path, index_prefix=prefix), recs, recs[5:15])
    es.indices.refresh(index=prefix + "*")
    assert es.count(index=prefix + "*")["count"] == 20


@pytest.mark.services
def test_mapping_conflict_goes_to_the_dead_letter_file(noida: ServerProcess, es: Elasticsearch,
                                                       tmp_path: Path) -> None:  # fmt: skip
    """An index that someone else created with another mapping (``message`` a long) refuses our
    documents: they go to the dead-letter file and are counted; the other day's
    documents are indexed."""
    prefix = fresh_prefix("dl")
    es.indices.create(index=prefix + "2024.01.15", mappings={"properties": {"message": {"type": "long"}}})
    out = make_output(noida.url, tmp_path, index_prefix=prefix, alias="es-main")
    bad = [full_record(ts=T_SEED + i, message=f"conflict {i}", attributes={}) for i in range(3)]
    good = [full_record(ts=T_SEED + 86_400 * SEC + i) for i in range(4)]
    write_all(out, bad + good)
    es.indices.refresh(index=prefix + "*")
    assert es.count(index=prefix + "2024.01.16")["count"] == 4
    assert es.count(index=prefix + "2024.01.15")["count"] == 0
    files = list((tmp_path / "dead-letter").glob("elasticsearch-*.jsonl"))
    assert [f.name for f in files] == [f"elasticsearch-es-main-{time.strftime('%Y.%m.%d', time.gmtime())}.jsonl"]
    lines = [orjson.loads(x) for x in files[0].read_bytes().splitlines()]
    assert [x["document"]["message"] for x in lines] == ["conflict 0", "conflict 1", "conflict 2"]
    assert {x["status"] for x in lines} == {400} and all(x["index"] == prefix + "2024.01.15" for x in lines)
    assert all("message" in str(x["error"]) for x in lines), lines[0]["error"]
    assert lines[0]["document"]["ts_ns"] == T_SEED and lines[0]["document"]["labels"] == bad[0].labels
    text = out.ctx.metrics.render()
    assert 'output_dead_letter_total{output="es-main"} 3' in text


@pytest.mark.services
def test_unreachable_cluster_is_transient_and_the_retry_sends_only_what_is_left(
        noida: ServerProcess, es: Elasticsearch, tmp_path: Path) -> None:  # fmt: skip
    prefix = fresh_prefix("down")
    out = make_output(f"http://127.0.0.1:{free_port()}", tmp_path, index_prefix=prefix, request_timeout_secs=2,
                      install_template=False)
    batch = Batch(Signal.LOGS, [full_record(ts=T_SEED + i, attributes={}) for i in range(3)])  # no template

    async def go() -> None:
        await out.start()
        try:
            with pytest.raises(TransientError, match="3 of 3 documents to retry: elasticsearch unreachable"):
                await out.write(batch)
            out.config.hosts = [noida.url]  # the cluster is back (a new client for the new address)
            client, out._client = out._client, None
            assert client is not None
            await client.close()
            assert out._retry_batch is batch and len(out._retry_docs) == 3
            await out.write(batch)
            assert out._retry_batch is None
        finally:
            await out.shutdown()

    anyio.run(go)
    es.indices.refresh(index=prefix + "*")
    assert es.count(index=prefix + "*")["count"] == 3


@pytest.mark.services
def test_template_waits_for_the_cluster(noida: ServerProcess, es: Elasticsearch, tmp_path: Path) -> None:
    """Down at start: the daemon still starts; the first write installs the template."""
    prefix = fresh_prefix("late")
    out = make_output(f"http://127.0.0.1:{free_port()}", tmp_path, index_prefix=prefix, request_timeout_secs=2,
                      template_name=prefix + "tpl")

    async def go() -> None:
        await out.start()
        try:
            with pytest.raises(TransientError, match=r"elasticsearch unreachable at http://127\.0\.0\.1:"):
                await out.write(Batch(Signal.LOGS, [full_record()]))
            out.config.hosts = [noida.url]
            client, out._client = out._client, None
            assert client is not None
            await client.close()
            await out.write(Batch(Signal.LOGS, [full_record()]))
        finally:
            await out.shutdown()

    anyio.run(go)
    assert es.indices.get_index_template(name=prefix + "tpl")["index_templates"]


@pytest.mark.services
def test_store_answers_503_when_the_cluster_is_down(tmp_path: Path) -> None:
    client = Elasticsearch(f"http://127.0.0.1:{free_port()}", max_retries=0, request_timeout=2)
    try:
        with pytest.raises(StoreUnavailable) as info:
            EsLogStore(client, "logs-").count(None, *ALL)
        assert info.value.status == 503
    finally:
        client.close()


@pytest.mark.services
def test_health_check(noida: ServerProcess, tmp_path: Path) -> None:
    async def go() -> dict[str, Any]:
        out = make_output(noida.url, tmp_path, index_prefix=fresh_prefix("hc"))
        await out.start()
        try:
            return await out.check()
        finally:
            await out.shutdown()

    result = anyio.run(go)
    assert result["logs"]["reachable"] is True and result["logs"]["template_installed"] is True


def test_doc_type_is_what_the_writer_sends() -> None:
    d = prepare([full_record()], prefix="logs-", date_format="%Y.%m.%d", content_ids=True)[0]
    assert isinstance(d, Doc) and orjson.loads(d.action) == {"create": {"_index": "logs-2024.01.15", "_id": d.id}}


def test_client_options_carry_the_credentials() -> None:
    from airisd_plugins.outputs.elasticsearch import client_options

    def opts(**kw: Any) -> dict[str, Any]:
        cfg = msgspec.convert({"hosts": ["https://es:9200"], **kw}, ElasticsearchConfig)
        cfg.validate()
        return client_options(cfg)

    assert opts(username="elastic", password="pw")["basic_auth"] == ("elastic", "pw")
    assert opts(api_key="aWQ6a2V5")["api_key"] == "aWQ6a2V5" and "basic_auth" not in opts(api_key="aWQ6a2V5")
    assert "basic_auth" not in opts() and "api_key" not in opts()
    assert opts(ca_certs="/etc/ca.pem", verify_certs=False)["ca_certs"] == "/etc/ca.pem"
    assert opts()["max_retries"] == 0  # the output runner retries, with backoff, and counts it

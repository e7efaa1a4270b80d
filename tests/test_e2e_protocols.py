"""The standard protocols end to end, with real clients over sockets against `airisd run`:
the OpenTelemetry SDK's OTLP/HTTP exporters, Prometheus 2.42 (scraping airisd and remote-writing
to it), `logger` over UDP and TCP, elasticsearch-py's helpers.bulk, Telegraf-style line protocol,
Loki JSON and snappy protobuf. Each write is read back through the query API, and bad input
gets each protocol's own 4xx, never a 5xx."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from airisd_plugins.inputs.loki.push import Entry, Stream, encode_protobuf
from airisd_plugins.inputs.prometheus_remote_write.proto import WriteRequest
from airisd_plugins.inputs.prometheus_remote_write.shared import snappy_compress

from tests.e2e_helpers import AirisProcess, free_port, require_tool

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def airis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirisProcess]:
    root = tmp_path_factory.mktemp("protocols")
    syslog_port = free_port()
    proc = AirisProcess(
        root / "data", role="metrics,log", env={"AIRISD_SYSLOG_ADDRESS": f"127.0.0.1:{syslog_port}"}
    )
    proc.syslog_port = syslog_port  # type: ignore[attr-defined]
    proc.start()
    yield proc
    proc.stop()


def token(airis: AirisProcess) -> str:
    return airis.auth_headers()["Authorization"].split(" ", 1)[1]


def eventually(fetch: Callable[[], Any], *, timeout: float = 20.0, what: str = "") -> Any:
    """Poll until fetch returns something truthy (for senders that batch on their own clock)."""
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def series(airis: AirisProcess, name: str, labels: str = "", **params: str) -> list[dict[str, Any]]:
    q = {"name": name, **({"labels": labels} if labels else {}), **params}
    r = airis.client("metrics").get("/metrics/query", params=q)
    assert r.status_code == 200, r.text
    return list(r.json()["data"]["series"])


def logs(airis: AirisProcess, q: str, **params: str) -> list[dict[str, Any]]:
    r = airis.client("log").get("/logs/search", params={"q": q, **params})
    assert r.status_code == 200, r.text
    return list(r.json()["data"]["items"])


# -- metrics ----------------------------------------------------------------------------------------


def test_otel_sdk_metrics_exporter(airis: AirisProcess) -> None:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    exporter = OTLPMetricExporter(endpoint=airis.url("metrics") + "/v1/metrics", headers=airis.auth_headers())
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(resource=Resource.create({"service.name": "shop"}), metric_readers=[reader])
    meter = provider.get_meter("e2e")
    meter.create_counter("orders").add(3, {"region": "eu"})
    hist = meter.create_histogram("checkout.seconds")
    for v in (0.2, 3, 40):
        hist.record(v, {"region": "eu"})
    meter.create_gauge("queue.depth").set(17, {"queue": "mail"})
    provider.shutdown()  # exports once, synchronously

    orders = series(airis, "orders", "service.name:shop,region:eu,otel.scope.name:e2e")
    assert [p["value"] for p in orders[0]["points"]] == [3.0]
    assert orders[0]["labels"]["telemetry.sdk.language"] == "python"
    assert series(airis, "checkout.seconds_count", "region:eu")[0]["points"][0]["value"] == 3.0
    assert series(airis, "checkout.seconds_sum", "region:eu")[0]["points"][0]["value"] == pytest.approx(43.2)
    buckets = {s["labels"]["le"]: s["points"][0]["value"] for s in series(airis, "checkout.seconds_bucket")}
    assert buckets["+Inf"] == 3.0 and buckets["5"] == 2.0 and buckets["0"] == 0.0
    assert series(airis, "queue.depth", "queue:mail")[0]["points"][0]["value"] == 17.0


def test_prometheus_scrapes_airisd_and_remote_writes_to_it(airis: AirisProcess, tmp_path: Path) -> None:
    prometheus = require_tool("prometheus")
    port = free_port()
    tok = token(airis)
    metrics_addr = airis.url("metrics").removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: airisd
    metrics_path: /metrics/prometheus
    authorization: {{credentials: "{tok}"}}
    static_configs: [{{targets: ["{metrics_addr}"]}}]
remote_write:
  - url: {airis.url("metrics")}/api/v1/write
    authorization: {{credentials: "{tok}"}}
    queue_config: {{batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s}}
""")
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        up = eventually(
            lambda: series(airis, "up", "job:airisd"), timeout=60, what="up{job=airisd} via remote_write"
        )
        assert up[0]["labels"] == {"job": "airisd", "instance": metrics_addr}
        assert all(p["value"] == 1.0 for p in up[0]["points"])  # the scrape of airisd itself succeeded
        # A series that came from airisd's own /metrics/prometheus, through Prometheus, back into airisd.
        # Its remote_write requests are counted by airisd, scraped by Prometheus and written back.
        own = eventually(
            lambda: series(airis, "airisd_http_requests_total", "job:airisd,route:/api/v1/write"),
            timeout=30,
            what="airisd's own request counter for /api/v1/write",
        )
        assert own[0]["labels"]["status"] == "204"
    finally:
        proc.terminate()  # stop the sender before its target
        proc.wait(timeout=30)
        log.close()
    assert proc.returncode == 0, (tmp_path / "prometheus.log").read_text()[-3000:]


def test_telegraf_style_line_protocol(airis: AirisProcess) -> None:
    now_s = int(time.time())
    client = airis.client("metrics")
    body = (
        f"cpu,cpu=cpu-total,host=web01 usage_idle=91.5,usage_user=4.25 {now_s}\n"
        f"disk,host=web01,path=/ used_percent=42.1,inodes_free=1200i {now_s}\n"
        f'syslog,host=web01 message="strings are skipped",severity_code=6i {now_s}\n'
    )
    r = client.post("/write", params={"db": "telegraf", "precision": "s"}, content=body)
    assert r.status_code == 204, r.text
    # InfluxDB 2.x clients send "Authorization: Token <token>"
    r = httpx.post(
        airis.url("metrics") + "/api/v2/write",
        params={"org": "ops", "bucket": "b2", "precision": "ms"},
        content=f"mem,host=web01 used=1.5 {now_s * 1000}",
        headers={"Authorization": f"Token {token(airis)}"},
    )
    assert r.status_code == 204, r.text
    assert series(airis, "cpu_usage_idle", "host:web01")[0]["labels"] == {
        "cpu": "cpu-total",
        "host": "web01",
        "db": "telegraf",
    }
    assert series(airis, "disk_inodes_free", "path:/")[0]["points"][0]["value"] == 1200.0
    assert series(airis, "syslog_severity_code")[0]["points"][0]["value"] == 6.0
    assert series(airis, "syslog_message") == []
    assert series(airis, "mem_used", "db:b2")[0]["points"][0]["value"] == 1.5
    r = client.post("/write", params={"db": "telegraf"}, content="cpu usage=oops\n")
    assert (
        r.status_code == 400 and r.json()["code"] == "invalid" and "'cpu usage=oops'" in r.json()["message"]
    )


def test_remote_write_from_a_client_and_bad_snappy(airis: AirisProcess) -> None:
    req = WriteRequest()
    ts = req.timeseries.add()
    for k, v in (("__name__", "rw_test_total"), ("job", "client")):
        lb = ts.labels.add()
        lb.name, lb.value = k, v
    s = ts.samples.add()
    s.value, s.timestamp = 5.0, int(time.time() * 1000)
    headers = {
        "Content-Encoding": "snappy",
        "Content-Type": "application/x-protobuf",
        "X-Prometheus-Remote-Write-Version": "0.1.0",
    }
    client = airis.client("metrics")
    r = client.post("/api/v1/write", content=snappy_compress(req.SerializeToString()), headers=headers)
    assert r.status_code == 204, r.text
    assert series(airis, "rw_test_total", "job:client")[0]["points"][0]["value"] == 5.0
    r = client.post("/api/v1/write", content=b"\x00\x01garbage", headers=headers)
    assert r.status_code == 400 and r.headers["content-type"].startswith("text/plain") and "snappy" in r.text


# -- logs -------------------------------------------------------------------------------------------


def test_otel_sdk_logs_exporter(airis: AirisProcess) -> None:
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    provider = LoggerProvider(resource=Resource.create({"service.name": "billing", "host.name": "h9"}))
    provider.add_log_record_processor(
        BatchLogRecordProcessor(
            OTLPLogExporter(endpoint=airis.url("log") + "/v1/logs", headers=airis.auth_headers())
        )
    )
    logger = provider.get_logger("e2e.otel")
    try:
        logger.emit(
            severity_number=SeverityNumber.ERROR,
            severity_text="ERROR",
            body="invoice otelmarker failed",
            attributes={"invoice": "INV-7"},
        )
        logger.emit(severity_number=SeverityNumber.WARN, body="otelmarker retrying")
    finally:
        provider.shutdown()  # flushes the batch
    items = logs(airis, "otelmarker", service="billing")
    by_level = {i["level"]: i for i in items}
    assert set(by_level) == {"ERROR", "WARN"}
    err = by_level["ERROR"]
    assert err["message"] == "invoice otelmarker failed"
    assert err["attributes"]["invoice"] == "INV-7" and err["attributes"]["resource.host.name"] == "h9"
    assert err["attributes"]["otel.scope.name"] == "e2e.otel"


def test_syslog_with_logger_over_udp_and_tcp(airis: AirisProcess) -> None:
    logger = require_tool("logger")
    port = str(airis.syslog_port)  # type: ignore[attr-defined]
    sends = [
        (["--rfc5424", "-d"], "udp5424"),
        (["--rfc3164", "-d"], "udp3164"),
        (["--rfc5424", "-T", "--octet-count"], "tcp5424"),
        (["--rfc3164", "-T"], "tcp3164"),
    ]
    for args, marker in sends:
        subprocess.run(
            [
                logger,
                "-n",
                "127.0.0.1",
                "-P",
                port,
                "-t",
                "e2eapp",
                "-p",
                "local3.err",
                *args,
                f"syslogmarker {marker}",
            ],
            check=True,
            timeout=10,
        )
    items = eventually(
        lambda: (found := logs(airis, "syslogmarker")) and len(found) >= 4 and found,
        what="four syslog messages",
    )
    assert sorted(i["message"] for i in items) == sorted(f"syslogmarker {m}" for _, m in sends)
    for i in items:
        assert (i["level"], i["service"], i["labels"]["facility"]) == ("ERROR", "e2eapp", "local3")
        assert i["labels"]["hostname"] and i["attributes"]["syslog.severity"] == "err"


RSYSLOG_CONF = """\
global(workDirectory="{work}")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{inport}")
# The forwarding lines of docs/protocols.md, one per sending program.
if $programname == "rs5424" then action(type="omfwd" target="127.0.0.1" port="{port}" protocol="tcp"
    template="RSYSLOG_SyslogProtocol23Format" TCP_Framing="octet-counted")
:programname, isequal, "rstcp" @@127.0.0.1:{port}
:programname, isequal, "rsudp" @127.0.0.1:{port}
"""


def test_rsyslog_forwards_with_the_documented_config(airis: AirisProcess, tmp_path: Path) -> None:
    """rsyslog (the Debian default syslog daemon) forwarding to airisd with docs/protocols.md's
    three forms: omfwd over TCP as RFC 5424 with octet-counted framing, @@ (TCP, rsyslog's
    forward format) and @ (UDP). logger feeds rsyslog over UDP."""
    rsyslogd, logger = require_tool("rsyslogd"), require_tool("logger")
    inport = free_port(udp=True)
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(RSYSLOG_CONF.format(work=tmp_path, inport=inport, port=airis.syslog_port))  # type: ignore[attr-defined]
    check = subprocess.run([rsyslogd, "-N1", "-f", str(conf)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr + check.stdout
    with open(tmp_path / "rsyslogd.err", "wb") as err:
        proc = subprocess.Popen(
            [rsyslogd, "-n", "-f", str(conf), "-i", str(tmp_path / "rsyslogd.pid")], stdout=err, stderr=err
        )
    try:
        time.sleep(1.0)  # rsyslogd binds its input
        assert proc.poll() is None, (tmp_path / "rsyslogd.err").read_text()
        for tag in ("rs5424", "rstcp", "rsudp"):
            subprocess.run(
                [logger, "-n", "127.0.0.1", "-P", str(inport), "-d", "--rfc3164", "-t", tag, "-p", "user.warning",
                 f"rsyslogmarker via {tag} user_42 done"],
                check=True,
                timeout=10,
            )  # fmt: skip
        items = eventually(
            lambda: (found := logs(airis, "rsyslogmarker")) and len(found) >= 3 and found,
            what="three messages forwarded by rsyslog",
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    by_service = {i["service"]: i for i in items}
    assert sorted(by_service) == ["rs5424", "rstcp", "rsudp"], items
    for tag, item in by_service.items():
        assert item["message"] == f"rsyslogmarker via {tag} user_42 done"
        assert item["level"] == "WARN" and item["labels"]["facility"] == "user"
        assert item["labels"]["hostname"]
    # The identifier stays one searchable word through rsyslog's templates.
    assert {i["service"] for i in logs(airis, "rsyslogmarker AND user_42")} == set(by_service)


def test_elasticsearch_py_helpers_bulk(airis: AirisProcess) -> None:
    from elasticsearch import Elasticsearch, helpers

    es = Elasticsearch(airis.url("log"), bearer_auth=token(airis), request_timeout=30)
    try:
        assert es.info()["version"]["number"].startswith("8.")
        docs = [
            {
                "_index": "shop-logs",
                "_id": f"d{i}",
                "@timestamp": f"2024-01-15T10:30:0{i}Z",
                "message": f"esmarker order {i}",
                "log": {"level": "warn" if i else "error"},
                "service": {"name": "shop"},
                "labels": {"env": "prod"},
                "order": {"id": i},
            }
            for i in range(3)
        ]
        ok, errors = helpers.bulk(es, docs)
        assert (ok, errors) == (3, [])
        ok, failed = helpers.bulk(
            es, [{"_op_type": "delete", "_index": "shop-logs", "_id": "d1"}], raise_on_error=False
        )
        assert ok == 0 and isinstance(failed, list) and failed[0]["delete"]["status"] == 400
    finally:
        es.close()
    items = logs(airis, "esmarker", service="shop")
    assert len(items) == 3
    first = next(i for i in items if i["message"] == "esmarker order 0")
    assert first["level"] == "ERROR" and first["timestamp"] == "2024-01-15T10:30:00.000Z"
    assert first["labels"] == {"env": "prod", "index": "shop-logs"}
    assert first["attributes"] == {"order.id": 0, "_id": "d0"}
    r = airis.client("log").post(
        "/_bulk", content=b"{broken\n", headers={"Content-Type": "application/x-ndjson"}
    )
    assert r.status_code == 400 and r.json()["error"]["type"] == "x_content_parse_exception"


def test_loki_push_json_and_snappy_protobuf(airis: AirisProcess) -> None:
    now_ns = time.time_ns()
    client = airis.client("log")
    r = client.post(
        "/loki/api/v1/push",
        json={
            "streams": [
                {
                    "stream": {"job": "varlogs", "level": "warn"},
                    "values": [[str(now_ns), "lokimarker json line"]],
                }
            ]
        },
    )
    assert r.status_code == 204, r.text
    pb = snappy_compress(
        encode_protobuf(
            [
                Stream(
                    {"job": "promtail", "app": "cart"},
                    [Entry(now_ns, "ERROR lokimarker from protobuf", {"trace_id": "abc123"})],
                )
            ]
        )
    )
    r = client.post("/loki/api/v1/push", content=pb, headers={"Content-Type": "application/x-protobuf"})
    assert r.status_code == 204, r.text
    items = {i["message"]: i for i in logs(airis, "lokimarker")}
    assert items["lokimarker json line"]["level"] == "WARN"
    assert items["lokimarker json line"]["labels"] == {"job": "varlogs", "level": "warn"}
    pbi = items["ERROR lokimarker from protobuf"]
    assert (pbi["service"], pbi["level"], pbi["trace_id"]) == ("cart", "ERROR", "abc123")
    r = client.post(
        "/loki/api/v1/push", content=b"garbage", headers={"Content-Type": "application/x-protobuf"}
    )
    assert r.status_code == 400 and "snappy" in r.text


# -- bad input: each protocol's 4xx, never a 5xx ----------------------------------------------------

BAD_INPUTS: list[tuple[str, str, dict[str, str], bytes]] = [
    ("metrics", "/v1/metrics", {"Content-Type": "application/x-protobuf"}, b"\xff\xff\xff"),
    ("metrics", "/v1/metrics", {"Content-Type": "application/json"}, b'{"resourceMetrics": 7}'),
    ("metrics", "/v1/metrics", {"Content-Type": "application/json", "Content-Encoding": "gzip"}, b"not gzip"),
    ("metrics", "/api/v1/write", {"Content-Encoding": "snappy"}, b""),
    ("metrics", "/api/v1/write", {"Content-Encoding": "snappy"}, snappy_compress(b"\x0a\x05\x0a\x03")),
    ("metrics", "/write?precision=x", {}, b"m v=1"),
    ("metrics", "/write", {}, b"\xff\xfe\x00 = ,,"),
    ("metrics", "/api/v2/write", {}, b"m v=1"),
    ("log", "/v1/logs", {"Content-Type": "application/json"}, b"[]"),
    ("log", "/v1/logs", {"Content-Type": "text/html"}, b"<html>"),
    ("log", "/_bulk", {"Content-Type": "application/x-ndjson"}, b'{"index": {}}\n'),
    ("log", "/x/_bulk", {"Content-Type": "application/x-ndjson"}, b'"just a string"\n'),
    ("log", "/x/_doc", {"Content-Type": "application/json"}, b"{"),
    (
        "log",
        "/loki/api/v1/push",
        {"Content-Type": "application/json"},
        orjson.dumps({"streams": [{"values": 1}]}),
    ),
    (
        "log",
        "/loki/api/v1/push",
        {"Content-Type": "application/x-protobuf"},
        snappy_compress(b"\x0a\x02\x0a\x01"),
    ),
]


@pytest.mark.parametrize(
    ("role", "path", "headers", "body"), BAD_INPUTS, ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD_INPUTS)]
)
def test_bad_input_gets_the_protocols_4xx(
    airis: AirisProcess, role: str, path: str, headers: dict[str, str], body: bytes
) -> None:
    r = airis.client(role).post(path, content=body, headers=headers)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert "Traceback" not in r.text
    assert "unhandled error" not in airis.log()

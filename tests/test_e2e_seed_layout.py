"""etc/examples/seed-layout.toml, the AIRIS EPM layout, run as the manual runs it: one process per
role, each on its backend (metrics → ClickHouse, logs → Elasticsearch, traces → Jaeger, alerts →
Redis, every signal on Kafka), with hosts from the manual's .env names.

Backends: the ClickHouse engine (chdb) behind our HTTP fixture, noida-db's Elasticsearch API (an
emulator), redis-server, tansu (a Kafka-protocol broker), and, for Jaeger, another airisd's trace
role, which takes OTLP and answers Jaeger's query API: a stand-in, since no Jaeger runs offline.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from airisd.timeparse import format_ts
from tests.e2e_helpers import ROOT, AirisProcess, airisd_bin
from tests.servers import chdb_server, noida_elasticsearch, redis_server, running, tansu_broker
from tests.test_e2e_alerts import Receiver
from tests.test_e2e_logs import envelope_ok

pytestmark = [pytest.mark.e2e, pytest.mark.services]

LAYOUT = ROOT / "etc" / "examples" / "seed-layout.toml"
T = TypeVar("T")


def test_the_layout_passes_config_check() -> None:
    out = subprocess.run([airisd_bin(), "config", "check", "--config", str(LAYOUT)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "roles: metrics, log, trace, alert" in out.stdout and "4 outputs" in out.stdout


def eventually(fetch: Callable[[], T], ok: Callable[[T], bool], *, secs: float = 45.0) -> T:
    """Forwarding outputs acknowledge once data is in their buffer: poll until it has arrived."""
    deadline = time.monotonic() + secs
    while True:
        value = fetch()
        if ok(value):
            return value
        assert time.monotonic() < deadline, f"not there after {secs}s: {value!r}"
        time.sleep(0.3)


@pytest.fixture
def backends(tmp_path: Path) -> Iterator[dict[str, Any]]:
    with ExitStack() as stack:
        ch = stack.enter_context(running(chdb_server(tmp_path / "clickhouse")))
        es = stack.enter_context(running(noida_elasticsearch(tmp_path / "elasticsearch")))
        rd = stack.enter_context(running(redis_server(tmp_path / "redis")))
        kafka = stack.enter_context(running(tansu_broker(tmp_path / "kafka")))
        jaeger = AirisProcess(tmp_path / "jaeger", role="trace", extra_args=["--set", "auth.enabled=false"]).start()
        stack.callback(jaeger.stop)
        yield {"clickhouse": ch, "elasticsearch": es, "redis": rd, "kafka": kafka, "jaeger": jaeger}


def test_each_role_runs_on_its_backend(tmp_path: Path, backends: dict[str, Any]) -> None:
    ch, es, rd, kafka, jaeger = (backends[k] for k in ("clickhouse", "elasticsearch", "redis", "kafka", "jaeger"))
    env = {
        "CLICKHOUSE_HOST": "127.0.0.1", "CLICKHOUSE_PORT": str(ch.port), "CLICKHOUSE_USERNAME": "default",
        "CLICKHOUSE_PASSWORD": "", "CLICKHOUSE_DATABASE": "airis",
        "ELASTICSEARCH_HOST": "127.0.0.1", "ELASTICSEARCH_PORT": str(es.port),
        "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(rd.port), "REDIS_PASSWORD": "",
        "KAFKA_BROKERS": f"127.0.0.1:{kafka.port}", "KAFKA_CLIENT_ID": "airis-epm",
        "JAEGER_ENDPOINT": jaeger.url("trace"), "JAEGER_QUERY_URL": jaeger.url("trace"),
    }  # fmt: skip
    data = tmp_path / "data"  # one data directory (auth, buffers) shared by the four processes
    procs: list[AirisProcess] = []
    receiver = Receiver()
    try:
        metrics = AirisProcess(data, role="metrics", config=LAYOUT, env=env).start(timeout=60)
        procs.append(metrics)
        key = subprocess.run([airisd_bin(), "token", "create", "--role", "reader", "--name", "alert-role",
                              "--config", str(LAYOUT), "--data-dir", str(data)],
                             capture_output=True, text=True, timeout=60, check=True, env={**os.environ, **env})
        api_key = key.stdout.strip().split()[-1]
        log = AirisProcess(data, role="log", config=LAYOUT, env=env).start(timeout=60)
        trace = AirisProcess(data, role="trace", config=LAYOUT, env=env).start(timeout=60)
        procs += [log, trace]
        alert = AirisProcess(data, role="alert", config=LAYOUT, extra_args=[
            "--set", "alerting.evaluation_interval_secs=1"], env={
            **env, "ALERT_METRICS_URL": metrics.url("metrics"), "ALERT_LOGS_URL": log.url("log"),
            "AIRISD_ALERT_API_KEY": api_key}).start(timeout=60)
        procs.append(alert)
        now = time.time_ns()

        # metrics → ClickHouse; the metrics role answers from it
        m = metrics.client("metrics")
        points = [{"name": "cpu.usage", "value": 50.0 + i, "timestamp": format_ts(now - (10 - i) * 10**9),
                   "labels": {"host": "web-1"}} for i in range(10)]
        assert envelope_ok(m.post("/metrics/batch", json={"metrics": points}), 201) == {"accepted": 10}
        window = {"from": format_ts(now - 60 * 10**9), "to": format_ts(now + 10**9)}
        series = eventually(lambda: envelope_ok(m.get("/metrics/query", params={"name": "cpu.usage", **window})),
                            lambda r: bool(r["series"]) and len(r["series"][0]["points"]) == 10)["series"]
        assert [p["value"] for p in series[0]["points"]] == [50.0 + i for i in range(10)]
        rows = httpx.post(ch.url, params={"query": "SELECT count() FROM airis.metrics WHERE name = 'cpu.usage'"})
        assert rows.text.strip() == "10"

        # logs → Elasticsearch, in the manual's daily indices; the log role searches there
        lg = log.client("log")
        assert envelope_ok(lg.post("/logs/batch", json={"logs": [
            {"timestamp": format_ts(now), "level": "ERROR", "service": "payment-api",
             "message": "Database connection failed", "trace_id": "abc123"},
            {"timestamp": format_ts(now), "level": "INFO", "service": "user-api", "message": "login ok"}]}),
            201) == {"accepted": 2}
        found = eventually(lambda: envelope_ok(lg.get("/logs/search", params={"q": "database", **window})),
                           lambda r: len(r["items"]) == 1)
        assert found["items"][0]["service"] == "payment-api"
        day = time.strftime("%Y.%m.%d", time.gmtime(now / 1e9))
        assert httpx.get(f"{es.url}/logs-{day}/_count").json()["count"] == 2

        # traces → Jaeger (the stand-in takes OTLP); the trace role reads Jaeger's query API
        tr = trace.client("trace")
        span = {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7",
                "operation_name": "GET /api/users", "service_name": "user-api", "start_time": format_ts(now),
                "duration_ms": 25, "tags": {"http.status_code": 200}}
        assert envelope_ok(tr.post("/traces", json=span), 201) == {"accepted": 1}
        view = eventually(lambda: tr.get("/traces/4bf92f3577b34da6a3ce929d0e0e4736"), lambda r: r.status_code == 200)
        assert view.json()["data"]["root_operation"] == "GET /api/users"
        jaeger_view = httpx.get(jaeger.url("trace") + "/api/traces/4bf92f3577b34da6a3ce929d0e0e4736").json()
        assert jaeger_view["data"][0]["spans"][0]["operationName"] == "GET /api/users"

        # every signal on the Kafka bus
        assert _kafka_count(kafka.port, "airisd-metrics") == 10
        assert _kafka_count(kafka.port, "airisd-logs") == 2
        assert _kafka_count(kafka.port, "airisd-traces") == 1

        # alerts: rules and channels in Redis; the rule reads the metrics role over HTTP
        al = alert.client("alert")
        assert al.post("/channels", json={"name": "ops", "type": "webhook",
                                          "config": {"url": receiver.url + "/ops"}}).status_code == 201
        assert al.post("/rules", json={"name": "High CPU", "channels": ["ops"], "conditions": {
            "metric": "cpu.usage", "operator": "gt", "threshold": 55, "duration": "0s"}}).status_code == 201
        posts = eventually(lambda: receiver.at("/ops"), lambda p: len(p) >= 1)
        assert "High CPU" in str(posts[0])
        import redis

        with redis.Redis(port=rd.port) as r:
            assert r.keys("airisd:alerts:*"), "the alert store is not in Redis"
    finally:
        for p in reversed(procs):
            p.stop()
        receiver.server.shutdown()
        receiver.server.server_close()


def _kafka_count(port: int, topic: str) -> int:
    """Records on a topic, read by a plain consumer (a message says how many it holds in a header)."""
    from aiokafka import AIOKafkaConsumer

    async def count() -> int:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=f"127.0.0.1:{port}", auto_offset_reset="earliest",
                                    enable_auto_commit=False, group_id=None)
        await consumer.start()
        try:
            total, idle = 0, 0
            while idle < 3:
                batch = await consumer.getmany(timeout_ms=1000)
                idle = 0 if batch else idle + 1
                for msgs in batch.values():
                    for msg in msgs:
                        total += int(dict(msg.headers)["airisd-records"])
            return total
        finally:
            await consumer.stop()

    return asyncio.run(count())

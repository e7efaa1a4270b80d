"""The metrics role's HTTP API in-process: the daemon's own plugins, pipeline and routes, driven
through httpx's ASGI transport (no socket), on a fake clock."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airisd.config import build_config
from airisd.daemon import Daemon
from airisd.http.app import HttpContext, build_app
from airisd.registry import build_registry
from airisd.timeparse import NS_PER_S, format_ts, parse_timestamp
from tests.conftest import FakeClock

pytestmark = pytest.mark.anyio

NOW = parse_timestamp("2024-01-15T10:45:00Z")  # a quarter of an hour after the seed's point
ENVELOPE = {"success", "data", "message", "timestamp", "request_id"}
ERROR_ENVELOPE = {"success", "error", "timestamp", "request_id"}


@dataclass
class Api:
    client: httpx.AsyncClient
    daemon: Daemon
    clock: FakeClock

    async def ok(self, method: str, url: str, status: int = 200, **kw: Any) -> Any:
        resp = await self.client.request(method, url, **kw)
        assert resp.status_code == status, resp.text
        body = resp.json()
        assert set(body) == ENVELOPE
        assert body["success"] is True
        assert body["request_id"] == resp.headers["x-request-id"]
        assert body["timestamp"].endswith("Z")
        return body["data"]

    async def error(self, method: str, url: str, status: int, code: str, **kw: Any) -> dict[str, Any]:
        resp = await self.client.request(method, url, **kw)
        assert resp.status_code == status, resp.text
        body = resp.json()
        assert set(body) == ERROR_ENVELOPE
        assert body["success"] is False
        assert body["error"]["code"] == code
        assert body["error"]["message"]
        details: dict[str, Any] = body["error"]["details"]
        return details

    async def query(self, **params: str) -> Any:
        return await self.ok("GET", "/metrics/query", params=params)


@pytest.fixture
async def api(fast_tmp_path: Path) -> AsyncIterator[Api]:
    """The metrics role as `airisd run --role metrics` builds it, minus the socket: plugins started
    and output runners running in a task group, the listener's routes served over ASGI."""
    clock = FakeClock(NOW)
    config = build_config(
        {
            "agent": {"role": "metrics", "data_dir": str(fast_tmp_path)},
            "http": {"max_body_bytes": 4096},
            "inputs": {"http_metrics": [{}]},
            "outputs": {"sqlite": [{}]},
        },
        source="test",
        environ={},
    )
    daemon = Daemon(config, build_registry(), clock=clock)
    daemon.build()
    (listener,) = daemon.listeners
    app = build_app(listener.routes, HttpContext(role="metrics", metrics=daemon.metrics))
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            await daemon._start_plugins(tg)
            for runner in daemon.runners:
                tg.start_soon(runner.run)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://airisd") as client:
                yield Api(client, daemon, clock)
            with anyio.CancelScope(shield=True):
                await daemon._stop(tg)


def point(name: str, value: float, ts: str | int | None = None, **labels: str) -> dict[str, Any]:
    p: dict[str, Any] = {"name": name, "value": value, "labels": labels}
    if ts is not None:
        p["timestamp"] = ts
    return p


async def post_batch(api: Api, *points: dict[str, Any]) -> None:
    data = await api.ok("POST", "/metrics/batch", 201, json={"metrics": list(points)})
    assert data == {"accepted": len(points)}


# -- the seed's curl commands ------------------------------------------------------------------------


async def test_seed_curls(api: Api) -> None:
    data = await api.ok(
        "POST",
        "/metrics",
        201,
        content=b"""{"name": "cpu.usage", "value": 75.5, "timestamp": "2024-01-15T10:30:00Z",
                     "labels": {"host": "web-server-01", "region": "us-east-1"}}""",
        headers={"Content-Type": "application/json"},
    )
    assert data == {"accepted": 1}
    await post_batch(
        api,
        {"name": "memory.usage", "value": 85.2, "labels": {"host": "web-server-01"}},
        {"name": "disk.usage", "value": 45.8, "labels": {"host": "web-server-01", "mount": "/"}},
    )
    await post_batch(
        api,
        {"name": "cpu.usage", "value": 75.5, "labels": {"host": "server-01"}},
        {"name": "memory.usage", "value": 85.2, "labels": {"host": "server-01"}},
        {"name": "disk.usage", "value": 45.8, "labels": {"host": "server-01"}},
    )

    raw = await api.query(name="cpu.usage", **{"from": "2024-01-15T10:00:00Z", "to": "2024-01-15T11:00:00Z"})
    assert raw["interval"] is None and raw["truncated"] is False
    assert {"from": raw["from"], "to": raw["to"]} == {
        "from": "2024-01-15T10:00:00.000Z",
        "to": "2024-01-15T11:00:00.000Z",
    }
    by_host = {s["labels"]["host"]: s["points"] for s in raw["series"]}
    assert by_host["web-server-01"] == [{"timestamp": "2024-01-15T10:30:00.000Z", "value": 75.5}]
    assert by_host["server-01"] == [
        {"timestamp": format_ts(NOW), "value": 75.5}
    ]  # no timestamp: received now

    agg = await api.query(
        name="cpu.usage",
        labels="host:web-server-01",
        interval="1m",
        **{"from": "2024-01-15T10:00:00Z", "to": "2024-01-15T11:00:00Z"},
    )
    assert agg["interval"] == "1m"
    assert agg["series"] == [
        {
            "labels": {"host": "web-server-01", "region": "us-east-1"},
            "buckets": [
                {
                    "timestamp": "2024-01-15T10:30:00.000Z",
                    "avg": 75.5,
                    "min": 75.5,
                    "max": 75.5,
                    "sum": 75.5,
                    "count": 1,
                }
            ],
        }
    ]

    labelled = await api.query(name="cpu.usage", labels="host:web-server-01")  # no from/to: the last hour
    assert [s["labels"]["host"] for s in labelled["series"]] == ["web-server-01"]

    listing = await api.ok(
        "GET", "/metrics", params={"from": "2024-01-15T00:00:00Z", "to": "2024-01-15T23:59:59Z"}
    )
    assert listing["names"] == ["cpu.usage", "disk.usage", "memory.usage"]
    assert listing["total"] == 6 and listing["page"] == 1
    assert {"name": "disk.usage", "labels": {"host": "web-server-01", "mount": "/"}} in listing["items"]

    health = await api.ok("GET", "/health")
    assert health["status"] == "ok" and health["role"] == "metrics"


# -- query semantics ----------------------------------------------------------------------------------


async def test_missing_from_and_to_mean_the_last_hour(api: Api) -> None:
    mins = 60 * NS_PER_S
    await post_batch(
        api,
        point("m", 1, NOW // 10**6 - 90 * mins // 10**6),  # 90 min ago (epoch ms)
        point("m", 2, format_ts(NOW - 59 * mins)),
        point("m", 3, format_ts(NOW)),
        point("m", 4, format_ts(NOW + 5 * mins)),  # in the future: after `to`
    )
    data = await api.query(name="m")
    assert [p["value"] for p in data["series"][0]["points"]] == [2, 3]
    assert data["to"] == format_ts(NOW)
    assert data["from"] == format_ts(NOW - 60 * mins)
    only_from = await api.query(name="m", **{"from": format_ts(NOW - 100 * mins)})
    assert [p["value"] for p in only_from["series"][0]["points"]] == [1, 2, 3]
    api.clock.advance(3600)
    later = await api.query(name="m")
    assert [p["value"] for p in later["series"][0]["points"]] == [3, 4]


async def test_label_filters_must_all_match(api: Api) -> None:
    ts = format_ts(NOW - NS_PER_S)
    await post_batch(
        api,
        point("req", 1, ts, host="a", region="us"),
        point("req", 2, ts, host="a", region="eu"),
        point("req", 3, ts, host="b", region="us"),
        point("req", 4, ts, host="a"),
    )

    async def values(labels: str) -> list[float]:
        data = await api.query(name="req", labels=labels)
        return sorted(p["value"] for s in data["series"] for p in s["points"])

    assert await values("") == [1, 2, 3, 4]
    assert await values("host:a") == [1, 2, 4]
    assert await values("host:a,region:us") == [1]
    assert await values("host:a, region:eu") == [2]
    assert await values("host:b,region:eu") == []
    assert await values("zone:x") == []


async def test_interval_buckets_are_epoch_aligned_with_every_aggregate(api: Api) -> None:
    base = parse_timestamp("2024-01-15T10:00:00Z")
    await post_batch(
        api,
        *(
            point("lat", v, format_ts(base + s * NS_PER_S))
            for s, v in [(5, 1.0), (59, 3.0), (60, 10.0), (61, 20.0), (600, 7.0)]
        ),
    )
    data = await api.query(
        name="lat", interval="1m", **{"from": "2024-01-15T10:00:30Z", "to": "2024-01-15T10:30:00Z"}
    )
    assert data["series"][0]["buckets"] == [
        {"timestamp": "2024-01-15T10:00:00.000Z", "avg": 3.0, "min": 3.0, "max": 3.0, "sum": 3.0, "count": 1},
        {
            "timestamp": "2024-01-15T10:01:00.000Z",
            "avg": 15.0,
            "min": 10.0,
            "max": 20.0,
            "sum": 30.0,
            "count": 2,
        },
        {"timestamp": "2024-01-15T10:10:00.000Z", "avg": 7.0, "min": 7.0, "max": 7.0, "sum": 7.0, "count": 1},
    ]
    for interval in ("10s", "5m", "1h", "1d", "90s"):
        data = await api.query(
            name="lat", interval=interval, **{"from": "2024-01-15T10:00:00Z", "to": "2024-01-15T11:00:00Z"}
        )
        assert sum(b["count"] for b in data["series"][0]["buckets"]) == 5
        assert data["interval"] == interval if interval != "90s" else data["interval"] == "90s"


async def test_limit_truncates_raw_points(api: Api) -> None:
    await post_batch(api, *(point("many", i, format_ts(NOW - (10 - i) * NS_PER_S)) for i in range(10)))
    data = await api.query(name="many", limit="4")
    assert [p["value"] for p in data["series"][0]["points"]] == [0, 1, 2, 3]
    assert data["truncated"] is True


async def test_series_listing_pages(api: Api) -> None:
    ts = format_ts(NOW - NS_PER_S)
    await post_batch(api, *(point(f"m{i:02d}", i, ts, host="h") for i in range(12)))
    page2 = await api.ok("GET", "/metrics", params={"page": "2", "size": "5"})
    assert page2["total"] == 12 and page2["size"] == 5
    assert page2["names"] == ["m05", "m06", "m07", "m08", "m09"]
    one = await api.ok("GET", "/metrics", params={"name": "m03"})
    assert one["items"] == [{"name": "m03", "labels": {"host": "h"}}]


# -- bad requests --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"name": "x", "bogus": "1"}, "bogus"),
        ({"name": "x", "step": "1m"}, "step"),
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 300}, "name"),
        ({"name": "x", "from": "2024-02-01T00:00:00Z", "to": "2024-01-01T00:00:00Z"}, "from"),
        ({"name": "x", "from": "yesterday"}, "from"),
        ({"name": "x", "to": "-5"}, "to"),
        ({"name": "x", "interval": "fortnight"}, "interval"),
        ({"name": "x", "interval": "500ms"}, "interval"),
        (
            {"name": "x", "interval": "1s", "from": "2024-01-01T00:00:00Z", "to": "2024-01-02T00:00:00Z"},
            "interval",
        ),
        ({"name": "x", "labels": "host"}, "labels"),
        ({"name": "x", "labels": "host:a,host:b"}, "labels"),
        ({"name": "x", "limit": "0"}, "limit"),
        ({"name": "x", "limit": "many"}, "limit"),
        (
            {"name": "x", "from": "1970-01-01T00:00:00Z", "to": "2024-01-01T00:00:00Z"},
            "from",
        ),  # range too long
    ],
)
async def test_bad_queries_are_400_naming_the_field(api: Api, params: dict[str, str], field: str) -> None:
    details = await api.error("GET", "/metrics/query", 400, "VALIDATION_ERROR", params=params)
    assert details["field"] == field


async def test_repeated_parameter_is_refused(api: Api) -> None:
    details = await api.error("GET", "/metrics/query?name=a&name=b", 400, "VALIDATION_ERROR")
    assert details["field"] == "name"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page": "0"}, "page"),
        ({"size": "100000"}, "size"),
        ({"sort": "name"}, "sort"),
        ({"from": "x"}, "from"),
    ],
)
async def test_bad_listing_params(api: Api, params: dict[str, str], field: str) -> None:
    details = await api.error("GET", "/metrics", 400, "VALIDATION_ERROR", params=params)
    assert details["field"] == field


async def test_bad_points_are_refused_and_nothing_accepted_is_harmed(api: Api) -> None:
    await api.ok("POST", "/metrics", 201, json=point("keep.me", 1.0, format_ts(NOW)))
    cases = [
        (b"{not json", "body"),
        (b'{"name": "x", "value": "abc"}', "value"),
        (b'{"name": "x", "value": 1e999}', "value"),
        (b'{"name": "", "value": 1}', "name"),
        (b'{"name": "x", "value": 1, "timestamp": "yesterday"}', "timestamp"),
        (b'{"name": "x", "value": 1, "timestamp": "9999-01-01T00:00:00Z"}', "timestamp"),
        (b'{"name": "x", "value": 1, "labels": {"a": {"b": 1}}}', "labels"),
    ]
    for body, field in cases:
        details = await api.error("POST", "/metrics", 400, "VALIDATION_ERROR", content=body)
        assert details["field"] == field, body
    details = await api.error(
        "POST",
        "/metrics/batch",
        400,
        "VALIDATION_ERROR",
        json={"metrics": [point("x", 1), point("x", "bad"), point("y", 2), point("", 3)]},  # type: ignore[arg-type]
    )
    assert details["index"] == 1 and details["field"] == "value"
    assert [e["index"] for e in details["errors"]] == [1, 3]
    assert (await api.query(name="x"))["series"] == []  # the good half of the bad batch was not stored
    kept = await api.query(name="keep.me")
    assert [p["value"] for p in kept["series"][0]["points"]] == [1.0]
    text = (await api.client.get("/metrics/prometheus")).text
    assert 'airisd_points_rejected_total{input="http_metrics",reason="validation_error"} 8' in text


async def test_body_limits_and_encodings(api: Api) -> None:
    big = orjson.dumps(point("big", 1, labels="x"))[:-2] + b', "pad": "' + b"x" * 5000 + b'"}'
    details = await api.error("POST", "/metrics", 413, "PAYLOAD_TOO_LARGE", content=big)
    assert details["limit_bytes"] == 4096
    bomb = gzip.compress(b'{"name": "x", "value": 1, "labels": {"k": "' + b"v" * 100_000 + b'"}}')
    assert len(bomb) < 4096
    await api.error(
        "POST", "/metrics", 413, "PAYLOAD_TOO_LARGE", content=bomb, headers={"Content-Encoding": "gzip"}
    )
    body = gzip.compress(orjson.dumps(point("zipped", 2.0, format_ts(NOW))))
    await api.ok("POST", "/metrics", 201, content=body, headers={"Content-Encoding": "gzip"})
    await api.error(
        "POST", "/metrics", 400, "VALIDATION_ERROR", content=b"not gzip", headers={"Content-Encoding": "gzip"}
    )
    await api.error(
        "POST", "/metrics", 415, "UNSUPPORTED_MEDIA_TYPE", content=b"{}", headers={"Content-Encoding": "br"}
    )


async def test_shutting_down_answers_503_with_retry_after(api: Api) -> None:
    assert api.daemon.pipeline is not None
    api.daemon.pipeline.accepting = False
    resp = await api.client.post("/metrics", json=point("x", 1))
    assert resp.status_code == 503
    assert resp.headers["retry-after"] == "1"
    assert resp.json()["error"]["code"] == "BACKPRESSURE"
    api.daemon.pipeline.accepting = True


async def test_unknown_routes_and_methods(api: Api) -> None:
    await api.error("GET", "/no/such/route", 404, "NOT_FOUND")
    await api.error("DELETE", "/metrics/query", 405, "METHOD_NOT_ALLOWED")


async def test_request_id_is_echoed_when_sane(api: Api) -> None:
    resp = await api.client.get("/health", headers={"X-Request-ID": "abc-123_x"})
    assert resp.json()["request_id"] == "abc-123_x" == resp.headers["x-request-id"]
    resp = await api.client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert resp.json()["request_id"].startswith("req_")


async def test_health_detailed_and_self_metrics(api: Api) -> None:
    await api.ok("POST", "/metrics", 201, json=point("x", 1))
    detailed = await api.ok("GET", "/health/detailed")
    assert detailed["status"] == "ok"
    assert {(p["kind"], p["name"], p["state"]) for p in detailed["plugins"]} == {
        ("input", "http_metrics", "running"),
        ("output", "sqlite", "running"),
    }
    assert detailed["queues"]["sqlite/metrics"]["queued_items"] == 0
    assert detailed["stores"]["sqlite"]["metrics"]["reachable"] is True
    text = (await api.client.get("/metrics/prometheus")).text
    assert 'airisd_points_ingested_total{input="http_metrics"} 1' in text
    assert 'airisd_http_requests_total{role="metrics",method="POST",route="/metrics",status="201"} 1' in text
    assert "airisd_output_write_seconds_bucket" in text


# -- hostile input never gives a 5xx ------------------------------------------------------------------

hostile = st.text(max_size=40) | st.sampled_from(
    [
        "",
        " ",
        "%",
        "%00",
        "\x00",
        "1e999",
        "NaN",
        "-1",
        "9" * 40,
        "2024-01-15T10:30:00Z",
        "1m",
        "host:a,\\",
        "\\,",
        ",,,",
        "::::",
        "1h" * 20,
        "0s",
        "a:" * 70,
        "'; DROP TABLE points; --",
        "${HOME}",
        "../../etc/passwd",
    ]
)


async def assert_4xx_or_ok(resp: httpx.Response) -> None:
    assert resp.status_code < 500, resp.text
    body = resp.json()
    assert body["success"] is (resp.status_code < 400)
    if not body["success"]:
        assert body["error"]["code"] and isinstance(body["error"]["details"], dict)


@settings(max_examples=120)
@given(
    name=hostile,
    labels=st.none() | hostile,
    interval=st.none() | hostile,
    from_=st.none() | hostile,
    to=st.none() | hostile,
    extra=st.none() | st.text(min_size=1, max_size=10),
)
async def test_hostile_query_strings_never_give_5xx(
    api: Api,
    name: str,
    labels: str | None,
    interval: str | None,
    from_: str | None,
    to: str | None,
    extra: str | None,
) -> None:
    params = {"name": name, "labels": labels, "interval": interval, "from": from_, "to": to}
    query = {k: v for k, v in params.items() if v is not None}
    if extra is not None:
        query[extra] = "1"
    await assert_4xx_or_ok(await api.client.get("/metrics/query", params=query))
    await assert_4xx_or_ok(
        await api.client.get("/metrics", params={k: v for k, v in query.items() if k != "labels"})
    )


@settings(max_examples=60)
@given(st.text(max_size=60))
async def test_raw_query_strings_never_give_5xx(api: Api, raw: str) -> None:
    url = "/metrics/query?" + quote(raw, safe="=&%,:+")
    await assert_4xx_or_ok(await api.client.get(url))


@settings(max_examples=60)
@given(
    st.binary(max_size=300)
    | st.builds(
        orjson.dumps,
        st.dictionaries(
            st.sampled_from(["name", "value", "timestamp", "labels", "metrics"]),
            st.none()
            | st.integers(-(2**63), 2**63 - 1)
            | st.text(max_size=20)
            | st.lists(st.integers(0, 3), max_size=3),
        ),
    )
)
async def test_hostile_bodies_never_give_5xx(api: Api, body: bytes) -> None:
    await assert_4xx_or_ok(await api.client.post("/metrics", content=body))
    await assert_4xx_or_ok(await api.client.post("/metrics/batch", content=body))

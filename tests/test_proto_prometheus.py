"""Prometheus: the text exposition parser (cases, round trip, fuzz), remote_write decoding and
answers (v1, v2, bad snappy), and the scraper on a fake clock with a mock transport."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from airisd_plugins.inputs.prometheus import PrometheusInput, samples_to_points
from airisd_plugins.inputs.prometheus.textformat import Sample, TextError, format_sample, parse
from airisd_plugins.inputs.prometheus_remote_write import RemoteWriteInput, proto_version
from airisd_plugins.inputs.prometheus_remote_write.proto import WriteRequest, WriteRequestV2
from airisd_plugins.inputs.prometheus_remote_write.shared import snappy_compress
from hypothesis import given
from hypothesis import strategies as st

from airisd.model import Point
from tests.conftest import FakeClock, make_ctx
from tests.proto_helpers import Sink, plugin_client

NOW = FakeClock().now_ns

EXPOSITION = """\
# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

# Escaping in label values:
msdos_file_access_time_seconds{path="C:\\\\DIR\\\\FILE.TXT",\
error="Cannot find file:\\n\\"FILE.TXT\\""} 1.458255915e9

metric_without_timestamp_and_labels 12.47
something_weird{problem="division by zero"} +Inf -3982045
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.05"} 24054
http_request_duration_seconds_bucket{le="+Inf"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.99"} 76656
rpc_duration_seconds_sum 1.7560473e+07
nan_metric NaN
trailing_comma{a="1",} 1
"""
# hypothesis types categories as literals; these tuples are valid ones.
_NO_SURROGATES: Any = ("Cs",)
_NO_CONTROL: Any = ("Cs", "Cc")


def test_parses_the_reference_exposition() -> None:
    items = list(parse(EXPOSITION))
    assert not [i for i in items if isinstance(i, TextError)]
    samples = [i for i in items if isinstance(i, Sample)]
    assert samples[0] == Sample(
        "http_requests_total", {"method": "post", "code": "200"}, 1027.0, 1395066363000
    )
    assert samples[1].value == 3.0
    assert samples[2].labels == {"path": "C:\\DIR\\FILE.TXT", "error": 'Cannot find file:\n"FILE.TXT"'}
    assert samples[3] == Sample("metric_without_timestamp_and_labels", {}, 12.47, None)
    assert samples[4].value == math.inf and samples[4].timestamp_ms == -3982045
    assert samples[5] == Sample("http_request_duration_seconds_bucket", {"le": "0.05"}, 24054.0, None)
    assert samples[9].labels == {"quantile": "0.99"}
    assert math.isnan(samples[11].value)
    assert samples[12].labels == {"a": "1"}
    assert len(samples) == 13


@pytest.mark.parametrize(
    "line",
    [
        "9bad 1",
        "m{a=1} 1",
        'm{a="1"',
        'm{a="1" b="2"} 1',
        "m",
        "m one",
        "m 1 2 3",
        "m 1 1.5",
        'm{a="x",a="y"} 1',
        "m-x 1",
        'm{="v"} 1',
    ],
)
def test_bad_lines_are_errors_not_exceptions(line: str) -> None:
    items = list(parse(line + "\nok 1"))
    assert isinstance(items[0], TextError), items
    assert items[1] == Sample("ok", {}, 1.0, None)


def test_eof_and_exemplars() -> None:
    items = list(parse('a_total 1 # {trace_id="abc"} 1.0\n# EOF\nb 2'))
    assert items == [Sample("a_total", {}, 1.0, None)]


_name = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,20}", fullmatch=True)
_label = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,10}", fullmatch=True)
_samples = st.builds(
    Sample,
    name=_name,
    labels=st.dictionaries(
        _label, st.text(st.characters(blacklist_categories=_NO_SURROGATES), max_size=15), max_size=4
    ),
    value=st.floats(allow_nan=False),
    timestamp_ms=st.one_of(st.none(), st.integers(min_value=-(2**62), max_value=2**62)),
)


@given(st.lists(_samples, max_size=6))
def test_format_then_parse_round_trips(samples: list[Sample]) -> None:
    text = "\n".join(format_sample(s) for s in samples)
    assert list(parse(text)) == samples


@given(st.text(max_size=300))
def test_arbitrary_text_never_raises(text: str) -> None:
    for item in parse(text):
        assert isinstance(item, Sample | TextError)


def test_samples_to_points_adds_target_labels_and_renames_clashes() -> None:
    points, bad, first = samples_to_points(
        'up{instance="inner",x="1"} 1 1700000000000\nnan_metric NaN\nbroken{\ng 2\n',
        now_ns=NOW,
        target={"instance": "h:9100", "job": "node"},
    )
    assert points == [
        Point(
            name="up",
            value=1.0,
            ts=1_700_000_000_000 * 10**6,
            labels={"exported_instance": "inner", "x": "1", "instance": "h:9100", "job": "node"},
        ),
        Point(name="g", value=2.0, ts=NOW, labels={"instance": "h:9100", "job": "node"}),
    ]
    assert bad == 2 and "line 3" in first


# -- remote_write ---------------------------------------------------------------------------------


def write_request(series: list[tuple[dict[str, str], list[tuple[float, int]]]]) -> bytes:
    req = WriteRequest()
    for labels, samples in series:
        ts = req.timeseries.add()
        for k, v in sorted(labels.items()):
            lb = ts.labels.add()
            lb.name, lb.value = k, v
        for value, ms in samples:
            s = ts.samples.add()
            s.value, s.timestamp = value, ms
    return snappy_compress(req.SerializeToString())


HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


def test_remote_write_v1_stores_samples(tmp_path: Path) -> None:
    body = write_request(
        [
            (
                {"__name__": "http_requests_total", "job": "api", "instance": "h:1"},
                [(5.0, 1_700_000_000_000), (6.0, 1_700_000_015_000)],
            ),
            ({"__name__": "up", "job": "api"}, [(math.nan, 1_700_000_000_000), (1.0, 1_700_000_000_000)]),
        ]
    )
    with plugin_client(RemoteWriteInput, tmp_path, role="metrics") as (client, sink, _):
        r = client.post("/api/v1/write", content=body, headers=HEADERS)
        assert r.status_code == 204, r.text
        assert sink.items == [
            Point(
                name="http_requests_total",
                value=5.0,
                ts=1_700_000_000_000 * 10**6,
                labels={"instance": "h:1", "job": "api"},
            ),
            Point(
                name="http_requests_total",
                value=6.0,
                ts=1_700_000_015_000 * 10**6,
                labels={"instance": "h:1", "job": "api"},
            ),
            Point(
                name="up", value=1.0, ts=1_700_000_000_000 * 10**6, labels={"job": "api"}
            ),  # stale NaN skipped
        ]


def test_remote_write_v2_resolves_symbols(tmp_path: Path) -> None:
    req = WriteRequestV2()
    req.symbols.extend(["", "__name__", "cpu_seconds", "mode", "idle"])
    ts = req.timeseries.add()
    ts.labels_refs.extend([1, 2, 3, 4])
    s = ts.samples.add()
    s.value, s.timestamp = 42.0, 1_700_000_000_000
    headers = {**HEADERS, "Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request"}
    with plugin_client(RemoteWriteInput, tmp_path, role="metrics") as (client, sink, _):
        r = client.post("/api/v1/write", content=snappy_compress(req.SerializeToString()), headers=headers)
        assert r.status_code == 204, r.text
        assert r.headers["x-prometheus-remote-write-samples-written"] == "1"
        assert sink.items == [
            Point(name="cpu_seconds", value=42.0, ts=1_700_000_000_000 * 10**6, labels={"mode": "idle"})
        ]
        ts.labels_refs.append(99)
        r = client.post("/api/v1/write", content=snappy_compress(req.SerializeToString()), headers=headers)
        assert r.status_code == 400 and "labels_refs" in r.text


@pytest.mark.parametrize(
    ("body", "headers", "status", "fragment"),
    [
        (b"definitely not snappy", HEADERS, 400, "snappy"),
        (b"", HEADERS, 400, "snappy"),
        (snappy_compress(b"\xff\xff\xff garbage protobuf"), HEADERS, 400, "protobuf"),
        (
            write_request([({"__name__": "x"}, [(1.0, 1)])]),
            {**HEADERS, "Content-Type": "application/json"},
            415,
            "x-protobuf",
        ),
        (
            write_request([({"__name__": "x"}, [(1.0, 1)])]),
            {**HEADERS, "Content-Type": "application/x-protobuf;proto=foo.Bar"},
            415,
            "foo.Bar",
        ),
        (
            write_request([({"__name__": "x"}, [(1.0, 1)])]),
            {**HEADERS, "Content-Encoding": "gzip"},
            415,
            "snappy",
        ),
        (b"\xff\xff\xff\xff\x0f" + b"x" * 10, HEADERS, 413, "limit"),
    ],
)
def test_remote_write_bad_bodies_get_plain_text_4xx(
    tmp_path: Path, body: bytes, headers: dict[str, str], status: int, fragment: str
) -> None:
    with plugin_client(RemoteWriteInput, tmp_path, role="metrics") as (client, sink, _):
        r = client.post("/api/v1/write", content=body, headers=headers)
        assert r.status_code == status, r.text
        assert r.headers["content-type"].startswith("text/plain") and fragment in r.text
        assert sink.items == []


def test_remote_write_invalid_series_stores_the_rest_then_400(tmp_path: Path) -> None:
    body = write_request([({"job": "no-name"}, [(1.0, 1)]), ({"__name__": "ok"}, [(2.0, 1)])])
    with plugin_client(RemoteWriteInput, tmp_path, role="metrics") as (client, sink, _):
        r = client.post("/api/v1/write", content=body, headers=HEADERS)
        assert r.status_code == 400 and "__name__" in r.text
        assert [p.name for p in sink.items] == ["ok"]
        sink.refuse = True
        r = client.post(
            "/api/v1/write", content=write_request([({"__name__": "y"}, [(1.0, 1)])]), headers=HEADERS
        )
        assert r.status_code == 503 and r.headers["retry-after"] == "2"


@given(st.binary(max_size=200))
def test_remote_write_decoding_never_raises_unexpectedly(data: bytes) -> None:
    from airisd_plugins.inputs.prometheus_remote_write import RemoteWriteError, decode_v1, decode_v2
    from airisd_plugins.inputs.prometheus_remote_write.shared import MetricLimits

    for decode in (decode_v1, decode_v2):
        with contextlib.suppress(RemoteWriteError):
            decode(data, MetricLimits())


def test_proto_version() -> None:
    assert proto_version("") == 1
    assert proto_version("application/x-protobuf") == 1
    assert proto_version("application/x-protobuf; proto=prometheus.WriteRequest") == 1
    assert proto_version('application/x-protobuf;proto="io.prometheus.write.v2.Request"') == 2


# -- the scraper ------------------------------------------------------------------------------------


def scraper(tmp_path: Path, sink: Sink, handler: Any, **config: Any) -> PrometheusInput:
    import msgspec

    cfg = msgspec.convert({"interval_secs": 10.0, "timeout_secs": 5.0, **config}, PrometheusInput.Config)
    cfg.validate()
    plugin = PrometheusInput(cfg, make_ctx(tmp_path, clock=FakeClock(), emit=sink))
    plugin.transport = httpx.MockTransport(handler)
    return plugin


@pytest.mark.anyio
async def test_scrapes_on_the_interval_and_a_failing_target_does_not_stop_the_others(tmp_path: Path) -> None:
    seen: list[str] = []

    three_rounds = anyio.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if len(seen) >= 9:
            three_rounds.set()
        assert request.headers["authorization"] == "Bearer s3cret"
        assert "text/plain" in request.headers["accept"]
        if request.url.host == "down":
            raise httpx.ConnectError("connection refused")
        if request.url.host == "broken":
            return httpx.Response(500, text="oops")
        return httpx.Response(200, text='requests_total{code="200"} 7\n')

    sink = Sink()
    plugin = scraper(
        tmp_path,
        sink,
        handler,
        urls=["http://good:9100/metrics", "http://down:9100/metrics", "http://broken/metrics"],
        job="node",
        bearer_token="s3cret",
    )
    await plugin.start()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(plugin.run)
            await three_rounds.wait()  # the fake clock makes the interval instant
            tg.cancel_scope.cancel()
    await plugin.shutdown()
    ups = {(p.labels["instance"], p.value) for p in sink.items if p.name == "up"}
    assert ups == {("good:9100", 1.0), ("down:9100", 0.0), ("broken:80", 0.0)}
    good = [p for p in sink.items if p.name == "requests_total"]
    assert good and good[0].labels == {"code": "200", "instance": "good:9100", "job": "node"}
    rounds = sorted({p.ts for p in good})
    assert len(rounds) >= 2 and rounds[1] - rounds[0] == 10 * 10**9  # one interval apart on the fake clock
    health = await plugin.check()
    assert health["http://down:9100/metrics"]["up"] is False
    assert "refused" in health["http://down:9100/metrics"]["last_error"]
    assert health["http://broken/metrics"]["last_error"] == "HTTP 500"
    assert health["http://good:9100/metrics"] == {"up": True, "last_error": "", "samples": 1}


@pytest.mark.anyio
async def test_big_scrapes_go_in_batches_and_backpressure_is_survived(tmp_path: Path) -> None:
    body = "".join(f'm{{i="{i}"}} {i}\n' for i in range(25))
    sink = Sink()
    plugin = scraper(
        tmp_path,
        sink,
        lambda r: httpx.Response(200, text=body),
        urls=["http://t:1/metrics"],
        max_batch_points=10,
    )
    await plugin.start()
    await plugin.scrape(plugin.targets[0])
    assert [len(b) for b in sink.batches] == [10, 10, 8]  # 25 samples + up, duration, samples_scraped
    sink.refuse = True
    await plugin.scrape(plugin.targets[0])  # refused: reported, not raised
    await plugin.shutdown()
    await plugin.shutdown()


def test_config_validation_quotes_the_bad_value() -> None:
    import msgspec

    for raw, fragment in (
        ({"urls": ["ftp://x"]}, "ftp://x"),
        ({"interval_secs": 0}, "interval_secs"),
        ({"interval_secs": 5, "timeout_secs": 10}, "timeout_secs"),
    ):
        cfg = msgspec.convert(raw, PrometheusInput.Config)
        with pytest.raises(ValueError, match=fragment):
            cfg.validate()

"""Influx line protocol: the parser (cases, escaping round trip, fuzz) and the /write endpoints'
answers, in process."""

from __future__ import annotations

import gzip
import math
from pathlib import Path
from typing import Any

import pytest
from airisd_plugins.inputs.influx import InfluxInput, lines_to_points
from airisd_plugins.inputs.influx.lineproto import Line, LineError, UInt, format_line, parse
from hypothesis import given
from hypothesis import strategies as st

from airisd.model import Point
from tests.conftest import FakeClock
from tests.proto_helpers import plugin_client

NOW = FakeClock().now_ns
# hypothesis types categories as literals; these tuples are valid ones.
_NO_SURROGATES: Any = ("Cs",)
_NO_CONTROL: Any = ("Cs", "Cc")


def one(text: str) -> Line:
    items = list(parse(text))
    assert len(items) == 1
    assert isinstance(items[0], Line), items[0]
    return items[0]


def bad(text: str) -> LineError:
    items = list(parse(text))
    assert len(items) == 1 and isinstance(items[0], LineError), items
    return items[0]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("cpu value=1", Line("cpu", {}, {"value": 1.0}, None)),
        (
            "cpu,host=a,region=eu usage=0.5,n=3i,u=7u,ok=t,no=FALSE 1700000000",
            Line(
                "cpu",
                {"host": "a", "region": "eu"},
                {"usage": 0.5, "n": 3, "u": 7, "ok": True, "no": False},
                1700000000,
            ),
        ),
        (
            'log msg="hello, world = ok",level="a \\"quoted\\" \\\\ b"',
            Line("log", {}, {"msg": "hello, world = ok", "level": 'a "quoted" \\ b'}, None),
        ),
        (
            "my\\ meas,tag\\ key=tag\\,value f\\=k=1e3 -5",
            Line("my meas", {"tag key": "tag,value"}, {"f=k": 1000.0}, -5),
        ),
        ("m=x f=1", Line("m=x", {}, {"f": 1.0}, None)),  # '=' in a measurement is literal
        ("path\\x f=1", Line("path\\x", {}, {"f": 1.0}, None)),  # backslash before a non-special char
        ('m s="line one\nline two" 12', Line("m", {}, {"s": "line one\nline two"}, 12)),
        ("m f=-.5,g=+1.", Line("m", {}, {"f": -0.5, "g": 1.0}, None)),
        ("  m f=1   \r", Line("m", {}, {"f": 1.0}, None)),
    ],
)
def test_parses(text: str, line: Line) -> None:
    assert one(text) == line


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("cpu", "missing fields"),
        ("cpu ", "missing fields"),
        ("cpu,host value=1", "invalid tag"),
        ("cpu,host= value=1", "invalid tag"),
        ("cpu value=", "invalid field"),
        ("cpu value", "invalid field"),
        ("cpu value=abc", "invalid field value"),
        ("cpu value=NaN", "invalid field value"),
        ("cpu value=1 ts", "bad timestamp"),
        ("cpu value=1 1 2", "too many spaces"),
        ("cpu value=99999999999999999999i", "int64"),
        ("cpu value=-1u", "invalid field value"),
        ('cpu s="open', "unterminated"),
        ('cpu s="x"y', "unexpected character"),
        (",t=1 f=1", "missing measurement"),
        ("cpu v=1 99999999999999999999", "int64"),
    ],
)
def test_bad_lines_name_the_reason(text: str, reason: str) -> None:
    err = bad(text)
    assert reason in err.reason
    assert err.lineno == 1 and str(err).startswith("unable to parse '")


def test_comments_blank_lines_and_line_numbers() -> None:
    items = list(parse("# comment\n\ncpu v=1\nbad\n  \nmem v=2i 5\n"))
    assert [type(i).__name__ for i in items] == ["Line", "LineError", "Line"]
    assert isinstance(items[1], LineError) and items[1].lineno == 4
    assert "line 4" in str(items[1])


def test_fields_become_points_named_measurement_field() -> None:
    lines = [one('cpu,host=a usage_idle=90.5,usage_user=3i,up=true,u=2u,desc="x" 1700000000')]
    points, strings = lines_to_points(
        lines, mult=1_000_000_000, now_ns=NOW, separator="_", extra={"db": "tg"}
    )
    assert strings == 1
    assert points == [
        Point(
            name="cpu_usage_idle", value=90.5, ts=1_700_000_000_000_000_000, labels={"db": "tg", "host": "a"}
        ),
        Point(
            name="cpu_usage_user", value=3.0, ts=1_700_000_000_000_000_000, labels={"db": "tg", "host": "a"}
        ),
        Point(name="cpu_up", value=1.0, ts=1_700_000_000_000_000_000, labels={"db": "tg", "host": "a"}),
        Point(name="cpu_u", value=2.0, ts=1_700_000_000_000_000_000, labels={"db": "tg", "host": "a"}),
    ]
    # no timestamp: the time received; a line's own db tag wins over ?db=
    points, _ = lines_to_points([one("m,db=own v=1")], mult=1, now_ns=NOW, separator=".", extra={"db": "q"})
    assert points == [Point(name="m.v", value=1.0, ts=NOW, labels={"db": "own"})]
    with pytest.raises(ValueError, match="out of range"):
        lines_to_points(
            [one("m v=1 9999999999999")], mult=3_600_000_000_000, now_ns=NOW, separator="_", extra={}
        )
    with pytest.raises(ValueError, match="out of range"):
        lines_to_points([one("m v=1 -1")], mult=1, now_ns=NOW, separator="_", extra={})


# -- properties ---------------------------------------------------------------------------------

_text = st.text(st.characters(blacklist_categories=_NO_CONTROL), min_size=1, max_size=12)
# A trailing backslash would escape the separator after it (InfluxDB has the same hole).
_name = _text.filter(lambda s: not s.endswith("\\") and s.strip() == s and not s.startswith("#"))
_value = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=0, max_value=2**64 - 1).map(UInt),
    st.booleans(),
    st.text(st.characters(blacklist_categories=_NO_SURROGATES), max_size=20),
)
_lines = st.builds(
    Line,
    measurement=_name,
    tags=st.dictionaries(_name, _name, max_size=4),
    fields=st.dictionaries(_name, _value, min_size=1, max_size=4),
    timestamp=st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1)),
)


def _same(a: Line, b: Line) -> bool:
    if (a.measurement, a.tags, a.timestamp) != (
        b.measurement,
        b.tags,
        b.timestamp,
    ) or a.fields.keys() != b.fields.keys():
        return False
    for k, v in a.fields.items():
        w = b.fields[k]
        if type(v) is not type(w) or (
            isinstance(v, float) and not math.isclose(v, w, rel_tol=0, abs_tol=0) and v != w
        ):
            return False
    return True


@given(st.lists(_lines, min_size=1, max_size=5))
def test_format_then_parse_round_trips(lines: list[Line]) -> None:
    text = "\n".join(format_line(line) for line in lines)
    parsed = list(parse(text))
    assert len(parsed) == len(lines), (text, parsed)
    for got, want in zip(parsed, lines, strict=True):
        assert isinstance(got, Line), (text, got)
        assert _same(got, want), (text, got, want)


@given(st.text(max_size=300))
def test_arbitrary_text_never_raises(text: str) -> None:
    for item in parse(text):
        assert isinstance(item, Line | LineError)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    for item in parse(data.decode("utf-8", "replace")):
        assert isinstance(item, Line | LineError)


# -- the endpoints --------------------------------------------------------------------------------


def test_write_v1_stores_and_answers_204(tmp_path: Path) -> None:
    with plugin_client(InfluxInput, tmp_path, role="metrics") as (client, sink, _):
        r = client.post(
            "/write",
            params={"db": "telegraf", "precision": "s"},
            content=b"cpu,host=a usage=1.5 1700000000\nmem used=2i\n",
        )
        assert r.status_code == 204, r.text
        assert r.headers["x-influxdb-version"]
        assert sink.items == [
            Point(
                name="cpu_usage", value=1.5, ts=1_700_000_000 * 10**9, labels={"db": "telegraf", "host": "a"}
            ),
            Point(name="mem_used", value=2.0, ts=NOW, labels={"db": "telegraf"}),
        ]


def test_write_v2_gzip_and_precisions(tmp_path: Path) -> None:
    with plugin_client(InfluxInput, tmp_path, role="metrics") as (client, sink, _):
        body = gzip.compress(b"m v=1 1700000000000")
        r = client.post(
            "/api/v2/write",
            params={"org": "o", "bucket": "b", "precision": "ms"},
            content=body,
            headers={"Content-Encoding": "gzip"},
        )
        assert r.status_code == 204, r.text
        assert sink.items[0].ts == 1_700_000_000_000 * 10**6 and sink.items[0].labels == {"db": "b"}
        for precision, mult in (("n", 1), ("u", 1000), ("m", 60 * 10**9), ("h", 3600 * 10**9)):
            r = client.post("/write", params={"precision": precision}, content=b"p v=1 1")
            assert r.status_code == 204
            assert sink.items[-1].ts == mult and sink.items[-1].labels == {}


def test_bad_lines_partial_write_in_influx_error_shape(tmp_path: Path) -> None:
    with plugin_client(InfluxInput, tmp_path, role="metrics") as (client, sink, _):
        r = client.post(
            "/api/v2/write", params={"bucket": "b"}, content=b"ok v=1\nbroken line\nalso bad\nok2 v=2"
        )
        assert r.status_code == 400
        body = r.json()
        assert body["code"] == "invalid"
        assert "partial write" in body["message"] and "'broken line'" in body["message"]
        assert "line 2" in body["message"] and "1 more" in body["message"]
        assert "error" not in body  # only 1.x answers carry "error"
        assert [p.name for p in sink.items] == ["ok_v", "ok2_v"]
        r = client.post("/write", content=b"only bad")
        assert r.status_code == 400
        assert r.json()["error"] == r.json()["message"] and "partial" not in r.json()["message"]


@pytest.mark.parametrize(
    ("path", "params", "fragment"),
    [
        ("/write", {"precision": "fortnight"}, "invalid precision"),
        ("/api/v2/write", {"bucket": "b", "precision": "h"}, "invalid precision"),
        ("/api/v2/write", {"org": "o"}, "bucket is required"),
    ],
)
def test_bad_parameters(tmp_path: Path, path: str, params: dict[str, str], fragment: str) -> None:
    with plugin_client(InfluxInput, tmp_path, role="metrics") as (client, sink, _):
        r = client.post(path, params=params, content=b"m v=1")
        assert r.status_code == 400 and r.json()["code"] == "invalid" and fragment in r.json()["message"]
        assert sink.items == []


def test_limits_oversize_gzip_and_backpressure(tmp_path: Path) -> None:
    with plugin_client(InfluxInput, tmp_path, role="metrics", config={"max_labels": 1}, max_body=1000) as (
        client,
        sink,
        _,
    ):
        r = client.post("/write", content=b"m,a=1,b=2 v=1")
        assert r.status_code == 400 and "labels" in r.json()["message"]
        r = client.post("/write", content=b"m v=1\n" * 500)
        assert r.status_code == 413 and r.json()["code"] == "request too large"
        r = client.post("/write", content=b"not gzip", headers={"Content-Encoding": "gzip"})
        assert r.status_code == 400 and r.json()["code"] == "invalid"
        sink.refuse = True
        r = client.post("/write", content=b"m v=1")
        assert r.status_code == 503 and r.json()["code"] == "unavailable" and r.headers["retry-after"] == "2"


def test_ping_and_create_database(tmp_path: Path) -> None:
    with plugin_client(InfluxInput, tmp_path, role="metrics") as (client, _, _):
        assert client.get("/ping").status_code == 204
        assert client.head("/ping").status_code == 204
        r = client.post(
            "/query",
            content=b"q=CREATE+DATABASE+%22telegraf%22",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 200 and r.json() == {"results": [{"statement_id": 0}]}
        r = client.post("/query", params={"q": "SELECT * FROM cpu"})
        assert r.status_code == 400 and r.json()["code"] == "invalid"

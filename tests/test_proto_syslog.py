"""Syslog: RFC 5424 / 3164 parsing (cases and fuzz: never raises, never loses the line), TCP
framing under any split of the stream, and the listener over real loopback sockets."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from airisd_plugins.inputs.syslog import SyslogInput
from airisd_plugins.inputs.syslog.parse import TcpFramer, parse_message
from hypothesis import given
from hypothesis import strategies as st

from airisd.errors import Backpressure
from airisd.model import Batch, LogRecord
from tests.conftest import FakeClock, make_ctx

NOW = FakeClock().now_ns  # 2024-01-15T10:30:00Z


def test_rfc5424_with_structured_data() -> None:
    r = parse_message(
        b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 1234 ID47 "
        b'[exampleSDID@32473 iut="3" eventSource="App\\"lic\\]ation"][origin ip="10.0.0.1"] '
        b"\xef\xbb\xbfAn application event",
        received_ns=NOW,
        peer="10.1.1.1",
    )
    assert r == LogRecord(
        ts=1065910455003000000,
        level="INFO",
        message="An application event",
        service="evntslog",
        labels={"facility": "local4", "hostname": "mymachine.example.com"},
        attributes={
            "syslog.peer": "10.1.1.1",
            "syslog.severity": "notice",
            "syslog.procid": "1234",
            "syslog.msgid": "ID47",
            "exampleSDID@32473.iut": "3",
            "exampleSDID@32473.eventSource": 'App"lic]ation',
            "origin.ip": "10.0.0.1",
        },
    )


def test_rfc5424_nil_values_and_no_message() -> None:
    r = parse_message("<34>1 - - - - - -", received_ns=NOW)
    assert (r.ts, r.level, r.message, r.service, r.labels) == (NOW, "FATAL", "", "", {"facility": "auth"})


def test_rfc5424_message_from_an_rsyslog_relay_loses_its_leading_space() -> None:
    # rsyslog's RSYSLOG_SyslogProtocol23Format, relaying "<12>... app: text", sends MSG " text".
    r = parse_message("<12>1 2024-01-15T10:29:00.5+00:00 web01 app - - -  relayed  text ", received_ns=NOW)
    assert (r.message, r.service, r.level) == ("relayed  text ", "app", "WARN")
    bom = parse_message("<12>1 - h app - - - \ufeff  after bom", received_ns=NOW)
    assert bom.message == "after bom"


@pytest.mark.parametrize(
    ("line", "service", "host", "message", "level"),
    [
        ("<13>Jan 15 10:29:00 web01 nginx[811]: GET / 200", "nginx", "web01", "GET / 200", "INFO"),
        ("<11>Jan  5 10:29:00 web01 cron: job done", "cron", "web01", "job done", "ERROR"),
        ("<15>Jan 15 10:29:00 sshd: no hostname", "sshd", None, "no hostname", "DEBUG"),
        (
            "<12>2024-01-15T10:29:00.5+00:00 web01 app: rsyslog forward",
            "app",
            "web01",
            "rsyslog forward",
            "WARN",
        ),
        ("<14>just a message", "", None, "just a message", "INFO"),
        ("<14>Jan 15 10:29:00 web01 no tag here", "", "web01", "no tag here", "INFO"),
    ],
)
def test_rfc3164_forms(line: str, service: str, host: str | None, message: str, level: str) -> None:
    r = parse_message(line, received_ns=NOW)
    assert (r.service, r.labels.get("hostname"), r.message, r.level) == (service, host, message, level)


def test_rfc3164_year_is_inferred_and_never_far_in_the_future() -> None:
    r = parse_message("<13>Jan 15 10:29:00 h app: x", received_ns=NOW)
    assert abs(r.ts - NOW) < 86400 * 10**9  # same day (local time zone)
    r = parse_message("<13>Dec 31 23:00:00 h app: x", received_ns=NOW)
    assert r.ts < NOW and NOW - r.ts < 20 * 86400 * 10**9  # last December, not next


@pytest.mark.parametrize("line", ["", "hello world", "<999>1 bad", "<>x", "<13", "13> x"])
def test_lines_without_a_priority_are_kept_raw(line: str) -> None:
    r = parse_message(line, received_ns=NOW)
    assert (r.level, r.ts, r.message, r.labels) == ("UNKNOWN", NOW, line, {})


def test_a_broken_5424_header_is_kept_as_the_message() -> None:
    r = parse_message("<13>1 2003-10-11T22:14:15Z h a p m [unclosed", received_ns=NOW)
    assert (r.level, r.ts, r.message) == ("INFO", NOW, "1 2003-10-11T22:14:15Z h a p m [unclosed")


def test_truncation_is_flagged() -> None:
    r = parse_message("<13>" + "é" * 50, received_ns=NOW, max_bytes=21)
    assert r.attributes["syslog.truncated"] is True and len(r.message.encode()) <= 21


@given(st.binary(max_size=300))
def test_bytes_never_raise_and_keep_the_line(data: bytes) -> None:
    r = parse_message(data, received_ns=NOW)
    text = data.decode("utf-8", "replace").rstrip("\r\n\x00")
    assert isinstance(r, LogRecord)
    assert text.endswith(r.message)
    if r.level == "UNKNOWN":
        assert r.message == text


@given(st.text(max_size=200))
def test_text_never_raises(text: str) -> None:
    prefixed = [text, "<13>" + text, "<13>1 " + text, "<13>Jan 15 10:29:00 " + text]
    for line in prefixed:
        r = parse_message(line, received_ns=NOW)
        assert r.level in ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "UNKNOWN")
        assert line.rstrip("\r\n\x00").endswith(r.message)


# -- TCP framing ------------------------------------------------------------------------------------

_msgs = st.lists(
    st.binary(min_size=1, max_size=40).filter(
        lambda b: b"\n" not in b and b.strip(b"\r") == b and not (b[:1].isdigit())
    ),
    min_size=1,
    max_size=8,
)


@given(_msgs, st.lists(st.booleans(), min_size=8, max_size=8), st.lists(st.integers(1, 30), max_size=20))
def test_framing_survives_any_split(msgs: list[bytes], octet: list[bool], cuts: list[int]) -> None:
    stream = b"".join(b"%d %s" % (len(m), m) if o else m + b"\n" for m, o in zip(msgs, octet, strict=False))
    framer = TcpFramer(1000)
    frames: list[bytes] = []
    pos = 0
    for cut in cuts:
        frames += [f for f, _ in framer.feed(stream[pos : pos + cut])]
        pos += cut
    frames += [f for f, _ in framer.feed(stream[pos:])]
    frames += [f for f, _ in framer.close()]
    assert frames == msgs


def test_framing_cuts_over_long_frames_and_carries_on() -> None:
    framer = TcpFramer(5)
    out = framer.feed(b"12 abcdefghijkl" + b"xyzxyzxyz\n" + b"ok\n")
    assert out == [(b"abcde", True), (b"xyzxy", True), (b"ok", False)]
    assert framer.feed(b"tail without newline") == [(b"tail ", True)]
    assert framer.feed(b"still\nlast") == []
    assert framer.close() == [(b"last", False)]


# -- the listener over loopback ----------------------------------------------------------------------


class Collect:
    def __init__(self, refuse: int = 0) -> None:
        self.records: list[LogRecord] = []
        self.batches = 0
        self.refuse = refuse
        self.want = 0
        self.enough = anyio.Event()

    async def __call__(self, batch: Batch) -> None:
        if self.refuse:
            self.refuse -= 1
            raise Backpressure("full (test)")
        self.batches += 1
        self.records += batch.items
        if len(self.records) >= self.want:
            self.enough.set()


async def _run_listener(tmp_path: Path, sink: Collect, body: Any, **config: Any) -> None:
    cfg = msgspec.convert({"address": "127.0.0.1:0", **config}, SyslogInput.Config)
    cfg.validate()
    plugin = SyslogInput(cfg, make_ctx(tmp_path, clock=FakeClock(), emit=sink))
    await plugin.start()
    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                await tg.start(plugin.run)
                await body(plugin)
                tg.cancel_scope.cancel()
    finally:
        await plugin.shutdown()
        await plugin.shutdown()


async def _wait_for(sink: Collect, n: int) -> None:
    sink.want = n
    sink.enough = anyio.Event()
    if len(sink.records) < n:
        await sink.enough.wait()


@pytest.mark.anyio
async def test_udp_and_tcp_both_framings(tmp_path: Path) -> None:
    sink = Collect(refuse=1)  # the first batch is refused once and retried, not lost

    async def body(plugin: SyslogInput) -> None:
        async with await anyio.create_connected_udp_socket("127.0.0.1", plugin.udp_port) as udp:
            await udp.send(b"<11>1 2024-01-15T10:30:00Z h1 udpapp - - - over udp\n")
            await udp.send(b"not syslog at all")
        async with await anyio.connect_tcp("127.0.0.1", plugin.tcp_port) as tcp:
            msg = b"<13>1 2024-01-15T10:30:01Z h2 tcpapp - - - octet\ncounted"
            await tcp.send(b"%d %s" % (len(msg), msg))
            await tcp.send(b"<13>Jan 15 10:30:02 h3 nl: newline one\n<13>Jan 15 10:30:02 h3 nl: newline ")
            await tcp.send(b"two\nlast without newline")
        await _wait_for(sink, 6)

    await _run_listener(tmp_path, sink, body)
    by_msg = {r.message: r for r in sink.records}
    assert set(by_msg) == {
        "over udp",
        "not syslog at all",
        "octet\ncounted",
        "newline one",
        "newline two",
        "last without newline",
    }
    assert by_msg["over udp"].service == "udpapp" and by_msg["over udp"].level == "ERROR"
    assert by_msg["over udp"].attributes["syslog.peer"] == "127.0.0.1"
    assert by_msg["not syslog at all"].level == "UNKNOWN"
    assert by_msg["octet\ncounted"].labels == {"facility": "user", "hostname": "h2"}
    assert by_msg["newline two"].service == "nl"


@pytest.mark.anyio
async def test_batches_flush_by_size_and_by_time(tmp_path: Path) -> None:
    sink = Collect()

    async def body(plugin: SyslogInput) -> None:
        async with await anyio.connect_tcp("127.0.0.1", plugin.tcp_port) as tcp:
            await tcp.send(b"".join(b"<14>line %d\n" % i for i in range(25)))
            await _wait_for(sink, 20)
            assert sink.batches == 2  # two full batches of 10 without waiting for the interval
            started = time.monotonic()
            await _wait_for(sink, 25)  # the last 5 within the flush interval
            assert time.monotonic() - started < 2

    await _run_listener(
        tmp_path,
        sink,
        body,
        batch_size=10,
        max_buffered_records=100,
        flush_interval_secs=0.05,
        transports=["tcp"],
    )
    assert [r.message for r in sink.records] == [f"line {i}" for i in range(25)]


@pytest.mark.anyio
async def test_busy_port_fails_start_with_the_address(tmp_path: Path) -> None:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0) as busy:
        port = busy.extra(anyio.abc.SocketAttribute.local_port)
        cfg = msgspec.convert({"address": f"127.0.0.1:{port}", "transports": ["tcp"]}, SyslogInput.Config)
        plugin = SyslogInput(cfg, make_ctx(tmp_path, clock=FakeClock()))
        with pytest.raises(Exception, match=f"127.0.0.1:{port}"):
            await plugin.start()
        await plugin.shutdown()


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"address": "nope"}, "address"),
        ({"transports": ["sctp"]}, "transports"),
        ({"transports": []}, "transports"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_message_bytes": 10**9}, "max_message_bytes"),
        ({"flush_interval_secs": 0}, "flush_interval_secs"),
    ],
)
def test_config_errors_name_the_option(raw: dict[str, Any], fragment: str) -> None:
    cfg = msgspec.convert(raw, SyslogInput.Config)
    with pytest.raises(ValueError, match=fragment):
        cfg.validate()

"""Syslog messages (RFC 5424 and RFC 3164) to log records, and TCP framing (RFC 6587).

``parse_message`` never raises and never loses a message: what it cannot read as syslog is kept
whole as the message, level UNKNOWN, time received.

RFC 5424 ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]``;
RFC 3164 ``<PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG`` (also with an RFC 3339 timestamp, as
rsyslog forwards, and without a hostname). A 3164 timestamp has no year and no zone: it is read
in the daemon's local time zone, in the current year (the previous one if that would put it more
than a day in the future).

Mapping: severity → level (emerg/alert/crit FATAL, err ERROR, warning WARN, notice/info INFO,
debug DEBUG); APP-NAME or TAG → service; HOSTNAME → label ``hostname``; facility → label
``facility`` (``user``, ``local3``, ...); PROCID, MSGID and the severity name → attributes
``syslog.procid``, ``syslog.msgid``, ``syslog.severity``; each structured-data parameter →
attribute ``<SD-ID>.<name>`` (``timeQuality.tzKnown``); a message cut at the size limit has
``syslog.truncated`` = true. Leading spaces of an RFC 5424 MSG are dropped (rsyslog's
``RSYSLOG_SyslogProtocol23Format`` keeps the space that followed the tag of a 3164 message).
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

from airisd.logparse import MAX_MESSAGE_BYTES
from airisd.model import LogRecord
from airisd.timeparse import parse_timestamp

FACILITIES = (
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
)
SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
LEVELS = ("FATAL", "FATAL", "FATAL", "ERROR", "WARN", "INFO", "INFO", "DEBUG")

_PRI = re.compile(r"<(\d{1,3})>")
_5424_HEAD = re.compile(r"(\d{1,2}) (\S+) (\S+) (\S+) (\S+) (\S+) ")
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
_3164_TS = re.compile(r"([A-Z][a-z]{2}) ([ \d]\d) (\d{2}):(\d{2}):(\d{2})(?:\.\d+)? ")
_3339_TS = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})) ")
_TAG = re.compile(r"([^\s:\[\]]{1,64})(?:\[([^\]\s]{1,32})\])?: ?")
_SD_NAME = re.compile(r"[^\s=\]\"]{1,64}")


def _clip(text: str, limit: int) -> tuple[str, bool]:
    if len(text) <= limit // 4:
        return text, False
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text, False
    return data[:limit].decode("utf-8", "ignore"), True


def _raw(text: str, received_ns: int, attrs: dict[str, Any]) -> LogRecord:
    return LogRecord(ts=received_ns, level="UNKNOWN", message=text, attributes=attrs)


def _nil(v: str) -> str:
    return "" if v == "-" else v


def _structured_data(s: str, i: int, attrs: dict[str, Any]) -> int | None:
    """Parse SD-ELEMENTs from s[i]; the index after them, or None if malformed."""
    n = len(s)
    if s.startswith("-", i):
        return i + 1
    if i >= n or s[i] != "[":
        return None
    while i < n and s[i] == "[":
        m = _SD_NAME.match(s, i + 1)
        if m is None:
            return None
        sd_id = m.group()
        i = m.end()
        while i < n and s[i] == " ":
            m = _SD_NAME.match(s, i + 1)
            if m is None or not s.startswith('="', m.end()):
                return None
            name = m.group()
            i = m.end() + 2
            out: list[str] = []
            while True:
                if i >= n:
                    return None
                c = s[i]
                if c == "\\" and i + 1 < n and s[i + 1] in '"\\]':
                    out.append(s[i + 1])
                    i += 2
                    continue
                if c == '"':
                    i += 1
                    break
                out.append(c)
                i += 1
            attrs[f"{sd_id}.{name}"] = "".join(out)
        if i >= n or s[i] != "]":
            return None
        i += 1
    return i


def _3164_time(m: re.Match[str], now_s: float) -> int | None:
    month = _MONTHS.get(m.group(1))
    if month is None:
        return None
    day, hh, mm, ss = int(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5))
    year = time.localtime(now_s).tm_year
    try:
        ts = datetime(year, month, day, hh, mm, ss).timestamp()
        if ts > now_s + 86400:
            ts = datetime(year - 1, month, day, hh, mm, ss).timestamp()
    except (ValueError, OverflowError):
        return None
    return int(ts) * 1_000_000_000


def parse_message(
    data: bytes | str,
    *,
    received_ns: int,
    peer: str = "",
    truncated: bool = False,
    max_bytes: int = MAX_MESSAGE_BYTES,
) -> LogRecord:
    """One syslog message as a record; never raises."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.rstrip("\r\n\x00")
    text, clipped = _clip(text, max_bytes)
    attrs: dict[str, Any] = {}
    if peer:
        attrs["syslog.peer"] = peer
    if truncated or clipped:
        attrs["syslog.truncated"] = True
    m = _PRI.match(text)
    if m is None or int(m.group(1)) > 191:
        return _raw(text, received_ns, attrs)
    pri = int(m.group(1))
    facility, severity = divmod(pri, 8)
    attrs["syslog.severity"] = SEVERITIES[severity]
    labels = {"facility": FACILITIES[facility]}
    rest = text[m.end() :]
    record = _parse_5424(rest, received_ns, attrs, labels) or _parse_3164(rest, received_ns, attrs, labels)
    record.level = LEVELS[severity]
    return record


def _parse_5424(s: str, received_ns: int, attrs: dict[str, Any], labels: dict[str, str]) -> LogRecord | None:
    m = _5424_HEAD.match(s)
    if m is None or m.group(1) != "1":
        return None
    ts_text, host, app, procid, msgid = (m.group(i) for i in range(2, 7))
    sd_attrs: dict[str, Any] = {}
    end = _structured_data(s, m.end(), sd_attrs)
    if end is None:
        return None
    if end < len(s) and s[end] != " ":
        return None
    msg = s[end + 1 :]
    ts = received_ns
    if ts_text != "-":
        try:
            ts = parse_timestamp(ts_text)
        except ValueError:
            attrs["syslog.timestamp"] = ts_text
    if _nil(host):
        labels["hostname"] = host
    if _nil(procid):
        attrs["syslog.procid"] = procid
    if _nil(msgid):
        attrs["syslog.msgid"] = msgid
    attrs.update(sd_attrs)
    return LogRecord(
        ts=ts,
        level="UNKNOWN",
        # Spaces before MSG carry nothing, and rsyslog relaying a 3164 message as 5424 keeps the
        # one after the tag's colon (" text").
        message=msg.removeprefix("\ufeff").lstrip(" "),
        service=_nil(app),
        labels=labels,
        attributes=attrs,
    )


def _parse_3164(s: str, received_ns: int, attrs: dict[str, Any], labels: dict[str, str]) -> LogRecord:
    ts = received_ns
    i = 0
    m = _3164_TS.match(s)
    if m is not None:
        parsed = _3164_time(m, received_ns / 1e9)
        if parsed is not None:
            ts = parsed
            i = m.end()
    else:
        m = _3339_TS.match(s)
        if m is not None:
            try:
                ts = parse_timestamp(m.group(1))
                i = m.end()
            except ValueError:
                pass
    service = ""
    if i:  # a header: [HOSTNAME] TAG[PID]: MSG
        tag = _TAG.match(s, i)
        if tag is None:
            host_end = s.find(" ", i)
            if host_end > i:
                labels["hostname"] = s[i:host_end]
                i = host_end + 1
                tag = _TAG.match(s, i)
        if tag is not None:
            service = tag.group(1)
            if tag.group(2):
                attrs["syslog.procid"] = tag.group(2)
            i = tag.end()
    return LogRecord(ts=ts, level="UNKNOWN", message=s[i:], service=service, labels=labels, attributes=attrs)


class TcpFramer:
    """RFC 6587 framing of a TCP stream: octet counting (``LEN SP MSG``) when a frame starts with
    a digit and a length, else newline-delimited. ``feed`` returns the complete frames, each with
    a flag saying it was cut at ``max_bytes`` (the rest of an over-long frame is skipped)."""

    def __init__(self, max_bytes: int) -> None:
        self.max = max_bytes
        self.buf = bytearray()
        self.skip_bytes = 0  # left of an over-long octet-counted frame
        self.skip_line = False  # in an over-long newline frame

    def feed(self, data: bytes) -> list[tuple[bytes, bool]]:
        self.buf += data
        out: list[tuple[bytes, bool]] = []
        buf = self.buf
        while buf:
            if self.skip_bytes:
                k = min(self.skip_bytes, len(buf))
                del buf[:k]
                self.skip_bytes -= k
                continue
            if self.skip_line:
                idx = buf.find(b"\n")
                if idx < 0:
                    buf.clear()
                    break
                del buf[: idx + 1]
                self.skip_line = False
                continue
            if 0x31 <= buf[0] <= 0x39:  # 1-9: maybe octet counting
                sp = buf.find(b" ", 0, 11)
                if sp < 0 and len(buf) < 11 and buf.isdigit():
                    break  # the length is still arriving
                if sp > 0 and buf[:sp].isdigit():
                    size = int(buf[:sp])
                    start = sp + 1
                    if size > self.max:
                        if len(buf) < start + self.max:
                            break
                        out.append((bytes(buf[start : start + self.max]), True))
                        del buf[: start + self.max]
                        self.skip_bytes = size - self.max
                        continue
                    if len(buf) < start + size:
                        break
                    out.append((bytes(buf[start : start + size]), False))
                    del buf[: start + size]
                    continue
            idx = buf.find(b"\n")
            if idx < 0:
                if len(buf) > self.max:
                    out.append((bytes(buf[: self.max]), True))
                    buf.clear()
                    self.skip_line = True
                break
            frame = bytes(buf[:idx]).rstrip(b"\r")
            del buf[: idx + 1]
            if len(frame) > self.max:
                out.append((frame[: self.max], True))
            elif frame:
                out.append((frame, False))
        return out

    def close(self) -> list[tuple[bytes, bool]]:
        """What is left when the peer closes: a last frame without its newline."""
        rest = bytes(self.buf).rstrip(b"\r\n")
        self.buf.clear()
        return [(rest, False)] if rest and not self.skip_bytes and not self.skip_line else []

"""Options and checks the ``kafka`` output and input share: brokers, topic names, the value
encoding, and which Kafka errors are worth retrying."""

from __future__ import annotations

import functools
import logging
import re
import time

import msgspec
from airisd_plugins.outputs.kafka.codec import FORMATS

from airisd.errors import PermanentError, TransientError
from airisd.model import Signal

DEFAULT_BROKERS = "127.0.0.1:9092"
TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


class Topics(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Explicit topic names per signal; an empty one is ``topic_prefix`` + the signal's name."""

    metrics: str = ""
    logs: str = ""
    traces: str = ""


def parse_brokers(value: str | list[str], *, option: str = "brokers") -> list[str]:
    """``"h1:9092,h2:9092"`` (as in the seed's KAFKA_BROKERS) or a list; each must be host:port."""
    items = value.split(",") if isinstance(value, str) else list(value)
    brokers = [b.strip() for b in items if b.strip()]
    if not brokers:
        raise ValueError(f"{option} must name at least one host:port, got {value!r}")
    for b in brokers:
        host, sep, port = b.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{option}: {b!r} is not host:port (in {value!r})")
    return brokers


def topic_names(prefix: str, topics: Topics) -> dict[Signal, str]:
    """The topic of each signal; ValueError naming the option for an illegal Kafka topic name."""
    out: dict[Signal, str] = {}
    for sig in Signal:
        explicit = getattr(topics, sig.value)
        name = explicit or prefix + sig.value
        if not TOPIC_RE.match(name):
            option = f"topics.{sig.value}" if explicit else "topic_prefix"
            raise ValueError(f"{option}: topic {name!r} is not a legal Kafka topic name "
                             "(1 to 249 of A-Z a-z 0-9 . _ -)")
        out[sig] = name
    if len(set(out.values())) != len(out):
        raise ValueError(f"topics: two signals share a topic ({ {s.value: t for s, t in out.items()} })")
    return out


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"format must be 'json' or 'msgpack', got {fmt!r}")


def check_positive(name: str, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")


@functools.cache
def permanent_errors() -> tuple[type[BaseException], ...]:
    """Errors no retry can fix: the message, the topic or the credentials are wrong. (aiokafka is
    imported when first needed: loading the plugins must not load the client library.)"""
    from aiokafka import errors as kerr

    return (
        kerr.MessageSizeTooLargeError, kerr.RecordListTooLargeError, kerr.InvalidTopicError,
        kerr.TopicAuthorizationFailedError, kerr.ClusterAuthorizationFailedError, kerr.UnsupportedCodecError,
        kerr.InvalidRequiredAcksError, kerr.CorruptRecordException,
    )


def classify(exc: BaseException, what: str) -> TransientError | PermanentError:
    """A Kafka client error as the pipeline's TransientError (retried) or PermanentError (dropped).
    Unknown errors are transient: retrying a bad record forever is visible, losing a good one is not."""
    detail = f"{what}: {type(exc).__name__}: {exc}"
    if isinstance(exc, permanent_errors()):
        return PermanentError(detail)
    return TransientError(detail)


class _ClientLogForwarder(logging.Handler):
    """aiokafka's own log records, into the daemon's log ("airisd.kafka.client"), at most one per
    message template per interval: a broker outage makes aiokafka log every reconnect attempt (some
    30 lines a second), which would otherwise go raw to stderr through Python's last-resort handler."""

    def __init__(self, interval_secs: float) -> None:
        super().__init__(logging.WARNING)
        self.interval = interval_secs
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}
        self.target = logging.getLogger("airisd.kafka.client")

    def emit(self, record: logging.LogRecord) -> None:
        key = (record.name, str(record.msg))
        now = time.monotonic()
        if now - self._last.get(key, -1e18) < self.interval:
            self._held[key] = self._held.get(key, 0) + 1
            return
        self._last[key] = now
        kv = {"client_logger": record.name, "client_message": record.getMessage()[:300]}
        held = self._held.pop(key, 0)
        if held:
            kv["suppressed"] = str(held)
        self.target.log(record.levelno, "kafka client", extra={"kv": kv})


def route_client_logs(interval_secs: float = 30.0) -> None:
    """Send aiokafka's warnings through the daemon's log, rate-limited; idempotent."""
    client = logging.getLogger("aiokafka")
    if any(isinstance(h, _ClientLogForwarder) for h in client.handlers):
        return
    client.addHandler(_ClientLogForwarder(interval_secs))
    client.propagate = False

"""Channel plugins against real peers on 127.0.0.1: an aiosmtpd SMTP server (plain, STARTTLS with
login, implicit TLS) and an HTTP receiver in a thread (Slack, webhook, SMS gateway)."""

from __future__ import annotations

import datetime as dt
import gc
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from airisd_plugins.alerting.email import EmailChannel
from airisd_plugins.alerting.slack import SlackChannel
from airisd_plugins.alerting.sms import SmsChannel
from airisd_plugins.alerting.webhook import WebhookChannel

from airisd.alerting.notification import AlertInfo, Notification, RuleInfo, Status, fingerprint
from airisd.alerting.rules import channel_config, channel_from_json
from airisd.errors import PermanentError, TransientError
from airisd.plugin import AlertChannel, PluginContext
from tests.conftest import make_ctx
from tests.test_alert_engine import FakeMetrics, make_rig

REGISTRY: dict[str, type[AlertChannel]] = {
    "email": EmailChannel,
    "slack": SlackChannel,
    "webhook": WebhookChannel,
    "sms": SmsChannel,
}
T0 = 1_705_314_600_000_000_000  # 2024-01-15T10:30:00Z
pytestmark = pytest.mark.anyio


def notification(
    status: Status = "firing", *, description: str = "Alert when CPU usage exceeds 80%"
) -> Notification:
    labels = {"alertname": "High CPU Usage", "severity": "warning", "team": "infrastructure"}
    return Notification(
        group_key="rule:rule_test",
        status=status,
        receiver="test",
        rule=RuleInfo(
            id="rule_test",
            name="High CPU Usage",
            description=description,
            severity="warning",
            metric="cpu.usage",
            operator="gt",
            threshold=80,
            duration="5m",
        ),
        alerts=[
            AlertInfo(
                fingerprint=fingerprint(labels),
                status=status,
                labels=labels,
                starts_ns=T0,
                ends_ns=T0 + 600 * 10**9 if status == "resolved" else 0,
                value=95.0,
            )
        ],
        external_url="http://alerts.example:8004",
        ts_ns=T0,
    )


def build(kind: str, config: dict[str, Any], ctx: PluginContext) -> Any:
    channel = channel_from_json({"name": "test", "type": kind, "config": config}, REGISTRY)
    return REGISTRY[kind](channel_config(channel, REGISTRY), ctx)


@pytest.fixture
def ctx(tmp_path: Path) -> PluginContext:
    return make_ctx(tmp_path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- SMTP ---------------------------------------------------------------------------------------


class Sink:
    """An aiosmtpd handler that keeps what it receives; some addresses are refused."""

    def __init__(self) -> None:
        self.messages: list[tuple[Any, Message]] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.startswith("busy@"):
            return "451 4.3.0 try again later"
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope, message_from_bytes(envelope.content)))
        return "250 Message accepted"


def payload_text(msg: Message) -> str:
    payload = msg.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"alerts",
        b"s3cret",
    )
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, as a private SMTP server would have."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "airisd test smtp")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


def server_context(tls_files: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls_files)
    return context


@dataclass
class Smtp:
    sink: Sink
    port: int


def run_smtp(**kwargs: Any) -> Iterator[Smtp]:
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield Smtp(sink, port)
    finally:
        controller.stop()


@pytest.fixture
def plain_smtp() -> Iterator[Smtp]:
    yield from run_smtp()


@pytest.fixture
def starttls_smtp(tls_files: tuple[Path, Path]) -> Iterator[Smtp]:
    yield from run_smtp(
        tls_context=server_context(tls_files),
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    )


SEED_EMAIL = {
    "recipients": ["admin@company.com", "ops@company.com"],
    "subject_template": "[ALERT] {{.RuleName}} - {{.Severity}}",
    "body_template": "Alert: {{.Description}}\nTime: {{.Timestamp}}\nValue: {{.Value}}",
}


async def test_email_plain_delivers_the_rendered_seed_templates(plain_smtp: Smtp, ctx: PluginContext) -> None:
    channel = build(
        "email",
        {
            **SEED_EMAIL,
            "host": "127.0.0.1",
            "port": plain_smtp.port,
            "security": "none",
            "from_address": "airisd@company.com",
        },
        ctx,
    )
    await channel.send(notification())
    [(envelope, msg)] = plain_smtp.sink.messages
    assert envelope.mail_from == "airisd@company.com"
    assert envelope.rcpt_tos == ["admin@company.com", "ops@company.com"]
    assert msg["Subject"] == "[ALERT] High CPU Usage - warning"
    assert msg["To"] == "admin@company.com, ops@company.com"
    body = payload_text(msg).replace("\r\n", "\n")
    assert body == "Alert: Alert when CPU usage exceeds 80%\nTime: 2024-01-15T10:30:00.000Z\nValue: 95\n"


async def test_email_resolved_says_resolved_and_auto_works_without_starttls(
    plain_smtp: Smtp, ctx: PluginContext
) -> None:
    channel = build("email", {**SEED_EMAIL, "host": "127.0.0.1", "port": plain_smtp.port}, ctx)  # auto
    await channel.send(notification("resolved"))
    [(envelope, msg)] = plain_smtp.sink.messages
    assert msg["Subject"] == "[RESOLVED] [ALERT] High CPU Usage - warning"
    assert envelope.mail_from == "airisd@localhost"
    assert "Time: 2024-01-15T10:40:00.000Z" in payload_text(msg)


async def test_email_header_injection_through_labels_is_harmless(
    plain_smtp: Smtp, ctx: PluginContext
) -> None:
    channel = build(
        "email",
        {
            "recipients": ["a@company.com"],
            "host": "127.0.0.1",
            "port": plain_smtp.port,
            "security": "none",
            "subject_template": "{{.Description}}",
        },
        ctx,
    )
    await channel.send(notification(description="x\r\nBcc: victim@evil.example"))
    [(envelope, msg)] = plain_smtp.sink.messages
    assert envelope.rcpt_tos == ["a@company.com"] and msg["Bcc"] is None
    assert msg["Subject"] == "x Bcc: victim@evil.example"


@pytest.mark.parametrize("security", ["starttls", "auto"])
async def test_email_starttls_with_login(
    starttls_smtp: Smtp, tls_files: tuple[Path, Path], ctx: PluginContext, security: str
) -> None:
    config = {
        **SEED_EMAIL,
        "host": "127.0.0.1",
        "port": starttls_smtp.port,
        "security": security,
        "ca_file": str(tls_files[0]),
        "username": "alerts",
        "password": "s3cret",
    }
    await build("email", config, ctx).send(notification())
    [(_envelope, msg)] = starttls_smtp.sink.messages
    assert msg["Subject"] == "[ALERT] High CPU Usage - warning"


async def test_email_wrong_password_is_permanent(
    starttls_smtp: Smtp, tls_files: tuple[Path, Path], ctx: PluginContext
) -> None:
    config = {
        **SEED_EMAIL,
        "host": "127.0.0.1",
        "port": starttls_smtp.port,
        "security": "starttls",
        "ca_file": str(tls_files[0]),
        "username": "alerts",
        "password": "wrong",
    }
    with pytest.raises(PermanentError, match="login failed"):
        await build("email", config, ctx).send(notification())
    assert not starttls_smtp.sink.messages


# asyncio leaves the plain socket of a failed STARTTLS upgrade to the garbage collector (the channel
# closes its client; the transport under the TLS attempt is not reachable from it). Collect it here,
# where the warning is expected, instead of letting it surface in whichever test runs next.
@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
async def test_email_untrusted_certificate_is_permanent(starttls_smtp: Smtp, ctx: PluginContext) -> None:
    config = {
        **SEED_EMAIL,
        "host": "127.0.0.1",
        "port": starttls_smtp.port,
        "security": "starttls",
        "username": "alerts",
        "password": "s3cret",
    }
    with pytest.raises(PermanentError, match=r"TLS|certificate"):
        await build("email", config, ctx).send(notification())
    await anyio.sleep(0.05)  # let the loop drop the failed transport
    gc.collect()


async def test_email_starttls_required_but_not_offered_is_permanent(
    plain_smtp: Smtp, ctx: PluginContext
) -> None:
    config = {**SEED_EMAIL, "host": "127.0.0.1", "port": plain_smtp.port, "security": "starttls"}
    with pytest.raises(PermanentError, match="STARTTLS"):
        await build("email", config, ctx).send(notification())


async def test_email_implicit_tls(tls_files: tuple[Path, Path], ctx: PluginContext) -> None:
    for smtp in run_smtp(ssl_context=server_context(tls_files)):
        config = {
            **SEED_EMAIL,
            "host": "127.0.0.1",
            "port": smtp.port,
            "security": "tls",
            "ca_file": str(tls_files[0]),
        }
        await build("email", config, ctx).send(notification())
        assert len(smtp.sink.messages) == 1


async def test_email_refusals_and_unreachable_server(plain_smtp: Smtp, ctx: PluginContext) -> None:
    base = {"host": "127.0.0.1", "port": plain_smtp.port, "security": "none"}
    with pytest.raises(TransientError, match="451"):
        await build("email", {**base, "recipients": ["busy@company.com"]}, ctx).send(notification())
    with pytest.raises(PermanentError, match="550"):
        await build("email", {**base, "recipients": ["nobody@company.com"]}, ctx).send(notification())
    with pytest.raises(PermanentError, match="some recipients refused"):
        await build("email", {**base, "recipients": ["a@company.com", "nobody@company.com"]}, ctx).send(
            notification()
        )
    closed = {**base, "port": free_port(), "recipients": ["a@company.com"], "timeout_secs": 2}
    with pytest.raises(TransientError):
        await build("email", closed, ctx).send(notification())


# -- HTTP receiver --------------------------------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # next responses; 200 when empty
    delay_secs: float = 0.0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            state.requests.append(Received(self.command, self.path, dict(self.headers.items()), body))
            if state.delay_secs:
                time.sleep(state.delay_secs)
            status = state.statuses.pop(0) if state.statuses else 200
            payload = b"ok" if status < 300 else b"no_service"
            try:
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # the client timed out first
                pass

        do_GET = do_POST = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


async def test_slack_payload(receiver: Receiver, ctx: PluginContext) -> None:
    slack = build(
        "slack",
        {
            "webhook_url": receiver.url + "/services/T/B/X",
            "channel": "#alerts",
            "username": "AIRIS-EPM",
            "icon_emoji": ":warning:",
        },
        ctx,
    )
    await slack.send(notification())
    await slack.send(notification("resolved"))
    await slack.shutdown()
    first, second = receiver.requests
    assert first.path == "/services/T/B/X" and first.headers["Content-Type"] == "application/json"
    body = first.json()
    assert {k: body[k] for k in ("channel", "username", "icon_emoji", "text")} == {
        "channel": "#alerts",
        "username": "AIRIS-EPM",
        "icon_emoji": ":warning:",
        "text": "[FIRING] High CPU Usage - warning",
    }
    [attachment] = body["attachments"]
    assert attachment["color"] == "#f2a100" and "Value: 95" in attachment["text"]
    assert attachment["ts"] == T0 // 10**9
    resolved = second.json()
    assert resolved["text"] == "[RESOLVED] High CPU Usage - warning"
    assert resolved["attachments"][0]["color"] == "#2eb67d"


async def test_webhook_sends_alertmanager_payload(receiver: Receiver, ctx: PluginContext) -> None:
    hook = build("webhook", {"url": receiver.url + "/hook", "headers": {"Authorization": "Bearer t0k"}}, ctx)
    await hook.send(notification())
    await hook.send(notification("resolved"))
    await hook.shutdown()
    firing, resolved = (r.json() for r in receiver.requests)
    assert receiver.requests[0].headers["Authorization"] == "Bearer t0k"
    assert set(firing) == {
        "version",
        "groupKey",
        "truncatedAlerts",
        "status",
        "receiver",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "alerts",
    }
    assert (firing["version"], firing["status"], firing["groupKey"], firing["receiver"]) == (
        "4",
        "firing",
        "rule:rule_test",
        "test",
    )
    assert firing["externalURL"] == "http://alerts.example:8004"
    assert firing["commonLabels"] == {
        "alertname": "High CPU Usage",
        "severity": "warning",
        "team": "infrastructure",
    }
    [alert] = firing["alerts"]
    assert set(alert) == {
        "status",
        "labels",
        "annotations",
        "startsAt",
        "endsAt",
        "generatorURL",
        "fingerprint",
    }
    assert (alert["startsAt"], alert["endsAt"]) == ("2024-01-15T10:30:00.000Z", "0001-01-01T00:00:00Z")
    assert resolved["status"] == "resolved" and resolved["alerts"][0]["endsAt"] == "2024-01-15T10:40:00.000Z"


async def test_sms_post_per_recipient_with_escaped_json(receiver: Receiver, ctx: PluginContext) -> None:
    sms = build(
        "sms",
        {
            "url": receiver.url + "/send",
            "recipients": ["+821012345678", "+821087654321"],
            "headers": {"X-Api-Key": "k"},
        },
        ctx,
    )
    await sms.send(notification(description='disk "data" at 95%\nnow'))
    await sms.shutdown()
    bodies = [r.json() for r in receiver.requests]
    assert [b["to"] for b in bodies] == ["+821012345678", "+821087654321"]
    assert bodies[0]["message"] == '[FIRING] High CPU Usage (warning): disk "data" at 95% now'
    assert receiver.requests[0].headers["X-Api-Key"] == "k"
    assert receiver.requests[0].headers["Content-Type"] == "application/json"


async def test_sms_get_gateway_with_url_template(receiver: Receiver, ctx: PluginContext) -> None:
    url = receiver.url + "/sms?to={{.To | urlquery}}&text={{.Message | urlquery}}&key=abc"
    sms = build(
        "sms",
        {
            "url": url,
            "method": "GET",
            "recipients": ["+82 10-1234-5678"],
            "message_template": "{{.RuleName}} & {{.Severity}}",
            "max_message_chars": 12,
        },
        ctx,
    )
    await sms.send(notification())
    [req] = receiver.requests
    query = parse_qs(urlsplit(req.path).query)
    assert req.method == "GET" and req.body == b""
    assert query == {"to": ["+82 10-1234-5678"], "text": ["High CPU ..."], "key": ["abc"]}


async def test_sms_retry_skips_recipients_already_texted(receiver: Receiver, ctx: PluginContext) -> None:
    sms = build("sms", {"url": receiver.url + "/send", "recipients": ["+8210111", "+8210222"]}, ctx)
    receiver.statuses = [200, 503]
    n = notification()
    with pytest.raises(TransientError, match="503"):
        await sms.send(n)
    await sms.send(n)
    assert [r.json()["to"] for r in receiver.requests] == ["+8210111", "+8210222", "+8210222"]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, TransientError),
        (503, TransientError),
        (429, TransientError),
        (400, PermanentError),
        (404, PermanentError),
        (410, PermanentError),
        (301, PermanentError),
    ],
)
async def test_http_status_classification(
    receiver: Receiver, ctx: PluginContext, status: int, error: type[Exception]
) -> None:
    receiver.statuses = [status]
    hook = build("webhook", {"url": receiver.url + "/hook"}, ctx)
    with pytest.raises(error, match=str(status)):
        await hook.send(notification())
    await hook.shutdown()


async def test_http_unreachable_and_timeout_are_transient(receiver: Receiver, ctx: PluginContext) -> None:
    closed = build("slack", {"webhook_url": f"http://127.0.0.1:{free_port()}/x"}, ctx)
    with pytest.raises(TransientError):
        await closed.send(notification())
    receiver.delay_secs = 0.5
    slow = build("webhook", {"url": receiver.url + "/slow", "timeout_secs": 0.1}, ctx)
    with pytest.raises(TransientError, match="timed out"):
        await slow.send(notification())


async def test_error_messages_do_not_leak_the_webhook_path(receiver: Receiver, ctx: PluginContext) -> None:
    receiver.statuses = [404]
    slack = build("slack", {"webhook_url": receiver.url + "/services/T000/B000/SECRETTOKEN"}, ctx)
    with pytest.raises(PermanentError) as info:
        await slack.send(notification())
    assert "SECRETTOKEN" not in str(info.value)


# -- through the engine ---------------------------------------------------------------------------


async def test_engine_to_webhook_fire_and_resolve(
    receiver: Receiver, tmp_path: Path, fake_clock: Any
) -> None:
    metrics = FakeMetrics()
    rig = make_rig(tmp_path, fake_clock, metrics=metrics)
    rig.engine.channel_types = {**REGISTRY, **rig.engine.channel_types}
    await rig.service.create_channel(
        {"name": "hook", "type": "webhook", "config": {"url": receiver.url + "/am"}}
    )
    await rig.service.create_rule(
        {
            "name": "High CPU Usage",
            "channels": ["hook"],
            "conditions": {"metric": "cpu.usage", "operator": "gt", "threshold": 80, "duration": "2s"},
        }
    )
    metrics.values["cpu.usage"] = 95
    await rig.round()
    await rig.round(2)
    metrics.values["cpu.usage"] = 10
    await rig.round(2)
    assert [r.json()["status"] for r in receiver.requests] == ["firing", "resolved"]
    test = await rig.service.test_channel((await rig.service.list_channels())[0]["id"])
    assert test == {"channel": "hook", "ok": True, "error": None}
    assert receiver.requests[-1].json()["alerts"][0]["labels"]["alertname"] == "airisd test notification"
    receiver.statuses = [500]
    failed = await rig.service.test_channel((await rig.service.list_channels())[0]["id"])
    assert failed["ok"] is False and "500" in failed["error"]
    await rig.engine.shutdown()

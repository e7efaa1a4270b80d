"""E-mail notifications over SMTP (aiosmtplib).

The SMTP server settings normally come from the daemon's ``[alerting.channel_defaults.email]``
(filled from SMTP_HOST/SMTP_PORT/SMTP_USER/SMTP_PASS); a channel posts its recipients and
templates and may override any server setting.
"""

from __future__ import annotations

import contextlib
import re
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import ClassVar, Literal

import aiosmtplib

from airisd.alerting.notification import Notification
from airisd.alerting.render import render_body, render_title
from airisd.alerting.rules import invalid_option
from airisd.alerting.templates import compile_template
from airisd.errors import PermanentError, TransientError
from airisd.hookspecs import hookimpl
from airisd.plugin import AlertChannel, Plugin, PluginConfig, PluginContext

DEFAULT_SUBJECT = "[{{.Status | upper}}] {{.RuleName}} - {{.Severity}}"
DEFAULT_BODY = (
    "Alert: {{.RuleName}} ({{.Status}})\n"
    "Severity: {{.Severity}}\n"
    "Description: {{.Description}}\n"
    "Value: {{.Value}}\n"
    "Time: {{.Timestamp}}\n"
    "Labels: {{.Labels}}"
)
_UNREACHABLE = (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPServerDisconnected)
_ADDRESS = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+")


class Config(PluginConfig):
    # SMTP server (usually from [alerting.channel_defaults.email])
    host: str = "localhost"
    port: int = 587
    username: str = ""  # login only when set
    password: str = ""
    from_address: str = ""  # empty: the username if it is an address, else airisd@localhost
    security: Literal["auto", "starttls", "tls", "none"] = "auto"
    tls_verify: bool = True
    ca_file: str = ""  # extra CA bundle for a private SMTP server's certificate
    timeout_secs: float = 10.0
    # per channel
    recipients: list[str] = []
    subject_template: str = DEFAULT_SUBJECT
    body_template: str = DEFAULT_BODY
    send_resolved: bool = True

    def validate(self) -> None:
        if not self.host.strip():
            raise invalid_option("host", "must not be empty")
        if not 0 < self.port < 65536:
            raise invalid_option("port", f"{self.port} is not a TCP port")
        if self.timeout_secs <= 0:
            raise invalid_option("timeout_secs", "must be positive")
        if not self.recipients:
            raise invalid_option("recipients", "at least one e-mail address is required")
        for i, addr in enumerate(self.recipients):
            if not _ADDRESS.fullmatch(addr):
                raise invalid_option(f"recipients[{i}]", f"{addr[:80]!r} is not an e-mail address")
        if self.from_address and not _ADDRESS.fullmatch(self.from_address):
            raise invalid_option("from_address", f"{self.from_address[:80]!r} is not an e-mail address")
        compile_template(self.subject_template, field="config.subject_template")
        compile_template(self.body_template, field="config.body_template")

    def sender(self) -> str:
        if self.from_address:
            return self.from_address
        return self.username if _ADDRESS.fullmatch(self.username) else "airisd@localhost"


class EmailChannel(AlertChannel):
    name: ClassVar[str] = "email"
    Config: ClassVar[type[PluginConfig]] = Config
    description: ClassVar[str] = "Send alert notifications by e-mail over SMTP"

    def __init__(self, config: PluginConfig, ctx: PluginContext) -> None:
        super().__init__(config, ctx)
        assert isinstance(config, Config)
        self.cfg = config
        self.subject = compile_template(config.subject_template, field="config.subject_template")
        self.body = compile_template(config.body_template, field="config.body_template")

    def build_message(self, n: Notification) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.cfg.sender()
        msg["To"] = ", ".join(self.cfg.recipients)
        msg["Subject"] = render_title(self.subject, n)[:900]
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(domain=self.cfg.sender().rpartition("@")[2] or None)
        msg["X-Airisd-Status"] = n.status
        msg.set_content(render_body(self.body, n))
        return msg

    async def send(self, notification: Notification) -> None:
        cfg = self.cfg
        context: ssl.SSLContext | None = None
        if cfg.security != "none":
            context = ssl.create_default_context(cafile=cfg.ca_file or None)
            if not cfg.tls_verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        # An explicit client, closed in every case: aiosmtplib.send() leaves its transport open
        # when the TLS handshake fails (an untrusted certificate), which leaks a socket per attempt.
        client = aiosmtplib.SMTP(
            hostname=cfg.host,
            port=cfg.port,
            use_tls=cfg.security == "tls",
            start_tls={"auto": None, "starttls": True, "tls": False, "none": False}[cfg.security],
            tls_context=context,
            timeout=cfg.timeout_secs,
        )
        try:
            try:
                await client.connect()
                if cfg.username:
                    await client.login(cfg.username, cfg.password)
                errors, _ = await client.send_message(self.build_message(notification))
                with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                    await client.quit()
            finally:
                client.close()
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            text = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            kind = TransientError if codes and all(400 <= c < 500 for c in codes) else PermanentError
            raise kind(f"smtp {cfg.host}: recipients refused: {text}") from None
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise PermanentError(f"smtp {cfg.host}: login failed: {exc.code} {exc.message}") from None
        except aiosmtplib.SMTPResponseException as exc:
            kind = TransientError if 400 <= exc.code < 500 else PermanentError
            raise kind(f"smtp {cfg.host}: {exc.code} {exc.message}") from None
        except _UNREACHABLE as exc:
            raise TransientError(f"smtp {cfg.host}:{cfg.port}: {exc}") from None
        except ssl.SSLError as exc:
            raise PermanentError(f"smtp {cfg.host}: TLS failed: {exc}") from None
        except aiosmtplib.SMTPException as exc:  # e.g. STARTTLS required but not offered
            raise PermanentError(f"smtp {cfg.host}: {exc}") from None
        except (OSError, TimeoutError) as exc:
            raise TransientError(f"smtp {cfg.host}:{cfg.port}: {exc}") from None
        if errors:
            text = "; ".join(f"{rcpt}: {r.code} {r.message}" for rcpt, r in errors.items())
            raise PermanentError(f"smtp {cfg.host}: some recipients refused: {text}")


@hookimpl
def airisd_plugin_classes() -> list[type[Plugin]]:
    return [EmailChannel]


plugin_class = EmailChannel

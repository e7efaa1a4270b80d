"""The alert role end to end: `airisd run --role all` as a subprocess evaluating every second, a
real SMTP server (aiosmtpd) receiving the rendered e-mail and a local HTTP receiver standing in
for Slack, webhook and SMS gateways. The tests run in file order: the last one restarts the
daemon over the same data directory."""

from __future__ import annotations

import email
import email.policy
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from tests.e2e_helpers import ROOT, AirisProcess, airisd_bin, free_port

pytestmark = pytest.mark.e2e


class Mailbox:
    """aiosmtpd handler keeping every message it is sent."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.lock = threading.Lock()
        self.port = free_port()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        with self.lock:
            self.messages.append(msg)
        return "250 OK"

    def subjects(self) -> list[str]:
        with self.lock:
            return [str(m["Subject"]) for m in self.messages]


class Receiver:
    """A local HTTP server recording each POST's path and JSON body."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, Any]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with outer.lock:
                    outer.posts.append((self.path, json.loads(body or b"null")))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def at(self, path: str) -> list[Any]:
        with self.lock:
            return [body for p, body in self.posts if p == path]


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll until check() is truthy: the daemon evaluates on its own (real) clock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    yield box
    controller.stop()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.server.shutdown()
    rec.server.server_close()


@pytest.fixture(scope="module")
def airis(tmp_path_factory: pytest.TempPathFactory, mailbox: Mailbox) -> Iterator[AirisProcess]:
    proc = AirisProcess(
        tmp_path_factory.mktemp("alerts") / "data",
        extra_args=[
            "--set",
            "alerting.evaluation_interval_secs=1",
            "--set",
            'alerting.default_channels=["am-hook"]',
        ],
        env={"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(mailbox.port)},
    ).start()
    yield proc
    proc.stop()


def created(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["success"] is True
    return dict(body["data"])


def refused(resp: httpx.Response, field: str) -> None:
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert field in err["message"] or err["details"].get("field", "").startswith(field), err


SEED_EMAIL: dict[str, Any] = {
    "name": "email",
    "type": "email",
    "config": {
        "recipients": ["admin@company.com", "ops@company.com"],
        "subject_template": "[ALERT] {{.RuleName}} - {{.Severity}}",
        "body_template": "Alert: {{.Description}}\nTime: {{.Timestamp}}\nValue: {{.Value}}",
    },
    "enabled": True,
}


def seed_slack(url: str) -> dict[str, Any]:
    return {
        "name": "slack",
        "type": "slack",
        "config": {
            "webhook_url": url,
            "channel": "#alerts",
            "username": "AIRIS-EPM",
            "icon_emoji": ":warning:",
        },
        "enabled": True,
    }


@pytest.fixture(scope="module")
def channels(airis: AirisProcess, receiver: Receiver) -> list[str]:
    """The seed's e-mail and Slack channels, a webhook and an SMS gateway, created once for the
    module, so that each test that sends through them also runs alone (-k)."""
    c = airis.client("alert")
    wanted = [
        SEED_EMAIL,
        seed_slack(receiver.url + "/slack"),
        {"name": "hook", "type": "webhook", "config": {"url": receiver.url + "/hook"}},
        {
            "name": "sms",
            "type": "sms",
            "config": {"url": receiver.url + "/sms", "recipients": ["+821012345678"]},
        },
    ]
    for ch in wanted:
        created(c.post("/channels", json=ch))
    return [ch["name"] for ch in wanted]


def test_channels_from_the_seed_and_bad_input(airis: AirisProcess, channels: list[str]) -> None:
    c = airis.client("alert")
    names = {ch["name"] for ch in c.get("/channels").json()["data"]}
    assert names >= {"email", "slack", "hook", "sms"}
    # bad channels: missing recipients / url, a template syntax error
    refused(c.post("/channels", json={"name": "e2", "type": "email", "config": {}}), "config.recipients")
    refused(c.post("/channels", json={"name": "w2", "type": "webhook", "config": {}}), "config.url")
    bad_tpl = {
        **SEED_EMAIL,
        "name": "e3",
        "config": {**SEED_EMAIL["config"], "subject_template": "{{.RuleName"},
    }
    refused(c.post("/channels", json=bad_tpl), "config.subject_template")
    # bad rules: a missing channel, operator, duration, log query
    rule: dict[str, Any] = {
        "name": "x",
        "conditions": {"metric": "cpu.usage", "operator": "gt", "threshold": 80, "duration": "5m"},
        "channels": ["email"],
    }
    refused(c.post("/rules", json={**rule, "channels": ["pager"]}), "channels")
    refused(
        c.post("/rules", json={**rule, "conditions": {**rule["conditions"], "operator": "bigger"}}),
        "conditions.operator",
    )
    refused(
        c.post("/rules", json={**rule, "conditions": {**rule["conditions"], "duration": "5 parsecs"}}),
        "conditions.duration",
    )
    log_rule = {
        **rule,
        "conditions": {"log_query": "level:ERROR AND (message:x", "count": 3, "duration": "1m"},
    }
    refused(c.post("/rules", json=log_rule), "conditions.log_query")
    # the API wants a token: reads with any, changes with admin
    assert httpx.get(airis.url("alert") + "/rules", timeout=10).status_code == 401


def test_metric_rule_fires_then_resolves(
    airis: AirisProcess, mailbox: Mailbox, receiver: Receiver, channels: list[str]
) -> None:
    c = airis.client("alert")
    rule = created(
        c.post(
            "/rules",
            json={
                "name": "High CPU Usage",
                "description": "Alert when CPU usage exceeds 80%",
                "conditions": {
                    "metric": "cpu.usage",
                    "operator": "gt",
                    "threshold": 80,
                    "duration": "2s",
                    "labels": {"host": "e2e-cpu"},
                },
                "severity": "warning",
                "channels": ["email", "slack", "hook"],
                "enabled": True,
                "labels": {"team": "infrastructure", "environment": "production"},
            },
        )
    )
    metrics = airis.client("metrics")
    resp = metrics.post("/metrics", json={"name": "cpu.usage", "value": 95, "labels": {"host": "e2e-cpu"}})
    assert resp.status_code == 201, resp.text
    subject = wait_for("the firing e-mail", lambda: [s for s in mailbox.subjects() if "High CPU Usage" in s])
    assert subject[0] == "[ALERT] High CPU Usage - warning"
    with mailbox.lock:
        body = mailbox.messages[0].get_content()
    assert "Alert when CPU usage exceeds 80%" in body and "Value: 95" in body
    fired = wait_for(
        "the firing webhook", lambda: [b for b in receiver.at("/hook") if b["status"] == "firing"]
    )
    assert fired[0]["commonLabels"]["alertname"] == "High CPU Usage"
    assert wait_for("the slack message", lambda: receiver.at("/slack"))
    active = c.get("/alerts").json()["data"]
    assert [a["state"] for a in active if a["rule_id"] == rule["id"]] == ["firing"]
    # the average over the window drops to 52.5: resolved
    resp = metrics.post("/metrics", json={"name": "cpu.usage", "value": 10, "labels": {"host": "e2e-cpu"}})
    assert resp.status_code == 201, resp.text
    resolved = wait_for("the resolved e-mail", lambda: [s for s in mailbox.subjects() if "RESOLVED" in s])
    assert resolved[0] == "[RESOLVED] [ALERT] High CPU Usage - warning"
    assert wait_for(
        "the resolved webhook", lambda: [b for b in receiver.at("/hook") if b["status"] == "resolved"]
    )
    history = c.get("/alerts/history", params={"rule_id": rule["id"]}).json()["data"]["items"]
    kinds = {h["kind"] for h in history}
    assert {"firing", "resolved", "notification"} <= kinds


def test_log_rule_counts_matching_errors(airis: AirisProcess, receiver: Receiver, channels: list[str]) -> None:
    c = airis.client("alert")
    created(
        c.post(
            "/channels", json={"name": "db-hook", "type": "webhook", "config": {"url": receiver.url + "/db"}}
        )
    )
    created(
        c.post(
            "/rules",
            json={
                "name": "Database Errors",
                "description": "Alert on database connection errors",
                "conditions": {"log_query": "level:ERROR AND message:database", "count": 3, "duration": "1m"},
                "severity": "critical",
                "channels": ["db-hook", "sms"],
                "enabled": True,
            },
        )
    )
    logs = airis.client("log")
    for i in range(4):
        resp = logs.post(
            "/logs", json={"level": "ERROR", "message": f"database connection refused #{i}", "service": "api"}
        )
        assert resp.status_code == 201, resp.text
    posts = wait_for("the log rule's webhook", lambda: receiver.at("/db"))
    assert posts[0]["status"] == "firing" and posts[0]["commonLabels"]["alertname"] == "Database Errors"
    sms = wait_for("the sms gateway call", lambda: receiver.at("/sms"))
    assert sms[0]["to"] == "+821012345678" and "Database Errors" in sms[0]["message"]


def test_silences_and_alertmanager_push(airis: AirisProcess, receiver: Receiver) -> None:
    c = airis.client("alert")
    silence = created(
        c.post(
            "/silences",
            json={
                "matchers": {"alertname": "Quiet"},
                "ends_at": "2099-01-01T00:00:00Z",
                "comment": "maintenance",
            },
        )
    )
    assert c.get(f"/silences/{silence['id']}").json()["data"]["active"] is True
    created(
        c.post(
            "/channels", json={"name": "am-hook", "type": "webhook", "config": {"url": receiver.url + "/am"}}
        )
    )
    pushed = [
        {
            "labels": {"alertname": "DiskFull", "severity": "critical", "instance": "db-1"},
            "annotations": {"summary": "disk 95% full"},
        }
    ]
    resp = c.post("/api/v2/alerts", json=pushed)
    assert resp.status_code == 200 and resp.json()["data"]["accepted"] == 1, resp.text
    posts = wait_for("the pushed alert's webhook", lambda: receiver.at("/am"))
    assert posts[0]["commonLabels"]["alertname"] == "DiskFull"
    assert c.delete(f"/silences/{silence['id']}").status_code == 200
    assert c.get(f"/silences/{silence['id']}").status_code == 404


def test_restart_keeps_everything_and_resends_nothing(
    airis: AirisProcess, mailbox: Mailbox, receiver: Receiver, channels: list[str]
) -> None:
    c = airis.client("alert")
    rules = {r["name"] for r in c.get("/rules").json()["data"]}
    channel_names = {ch["name"] for ch in c.get("/channels").json()["data"]}
    assert set(channels) <= channel_names
    history = c.get("/alerts/history", params={"limit": 1000}).json()["data"]["items"]
    time.sleep(2)  # let the last round's sends settle before counting
    sent_mail, sent_posts = len(mailbox.subjects()), len(receiver.posts)
    airis.stop()
    airis.start()
    c = airis.client("alert")
    assert {r["name"] for r in c.get("/rules").json()["data"]} == rules
    assert {ch["name"] for ch in c.get("/channels").json()["data"]} == channel_names
    after = c.get("/alerts/history", params={"limit": 1000}).json()["data"]["items"]
    assert {h["id"] for h in history} <= {h["id"] for h in after}
    time.sleep(3)  # three evaluation rounds after the restart
    assert len(mailbox.subjects()) == sent_mail
    assert len(receiver.posts) == sent_posts


def test_alert_role_apart_reads_the_roles_over_http(
    tmp_path_factory: pytest.TempPathFactory, receiver: Receiver
) -> None:
    """`--role alert` in its own process: rules query the metrics and log roles' HTTP APIs with a
    reader API key ([alerting] metrics_url / logs_url / api_key)."""
    base = tmp_path_factory.mktemp("apart")
    data = AirisProcess(base / "data", role="metrics,log").start()
    alert = None
    try:
        created_key = (
            subprocess.run(
                [
                    airisd_bin(),
                    "token",
                    "create",
                    "--role",
                    "reader",
                    "--name",
                    "alert-role",
                    "--config",
                    str(ROOT / "etc" / "airisd.toml"),
                    "--data-dir",
                    str(data.data_dir),
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            .stdout.strip()
            .split()[-1]
        )
        alert = AirisProcess(
            base / "alert",
            role="alert",
            extra_args=["--set", "alerting.evaluation_interval_secs=1"],
            env={
                "ALERT_METRICS_URL": data.url("metrics"),
                "ALERT_LOGS_URL": data.url("log"),
                "AIRISD_ALERT_API_KEY": created_key,
            },
        ).start()
        c = alert.client("alert")
        created(
            c.post(
                "/channels",
                json={"name": "apart", "type": "webhook", "config": {"url": receiver.url + "/apart"}},
            )
        )
        created(
            c.post(
                "/rules",
                json={
                    "name": "Remote CPU",
                    "channels": ["apart"],
                    "conditions": {
                        "metric": "mem.usage",
                        "operator": "gte",
                        "threshold": 90,
                        "duration": "0s",
                        "labels": {"host": "remote-1"},
                    },
                },
            )
        )
        created(
            c.post(
                "/rules",
                json={
                    "name": "Remote Errors",
                    "channels": ["apart"],
                    "conditions": {
                        "log_query": "level:ERROR AND message:payment",
                        "count": 2,
                        "duration": "1m",
                    },
                },
            )
        )
        m = data.client("metrics")
        assert (
            m.post(
                "/metrics", json={"name": "mem.usage", "value": 97, "labels": {"host": "remote-1"}}
            ).status_code
            == 201
        )
        logs = data.client("log")
        for _ in range(2):
            assert logs.post("/logs", json={"level": "ERROR", "message": "payment failed"}).status_code == 201
        names = wait_for(
            "both remote rules' notifications",
            lambda: (
                {b["commonLabels"]["alertname"] for b in receiver.at("/apart")}
                >= {"Remote CPU", "Remote Errors"}
            ),
        )
        assert names
        health = {r["name"]: r["last_evaluation"] for r in c.get("/rules").json()["data"]}
        assert all(h["error"] is None for h in health.values()), health
    finally:
        if alert is not None:
            alert.stop()
        data.stop()

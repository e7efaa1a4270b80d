"""Auth end to end: `airisd run` as a subprocess, real HTTP over loopback, `airisd token|user` as the
operator runs them, and the daemon's own log output scanned for secrets."""

from __future__ import annotations

import base64
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.e2e_helpers import ADMIN_PASSWORD, ROOT, AirisProcess, airisd_bin

pytestmark = pytest.mark.e2e

POINT = {"name": "cpu.usage", "value": 75.5, "labels": {"host": "web-server-01"}}


def cli(airis: AirisProcess, *args: str, stdin: str = "", env: dict[str, str] | None = None) -> str:
    """`airisd ARGS --data-dir DIR`, as an operator runs it next to the daemon; its stdout."""
    proc = subprocess.run([airisd_bin(), *args, "--config", str(ROOT / "etc" / "airisd.toml"),
                           "--data-dir", str(airis.data_dir)], input=stdin, capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def refused(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["success"] is False and body["error"]["code"] == code
    assert set(body) == {"success", "error", "timestamp", "request_id"}
    return dict(body["error"])


@pytest.fixture(scope="module")
def airis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirisProcess]:
    proc = AirisProcess(tmp_path_factory.mktemp("auth") / "data").start()
    yield proc
    proc.stop()


def bare(airis: AirisProcess, role: str = "metrics") -> httpx.Client:
    """A client with no credentials."""
    client = httpx.Client(base_url=airis.url(role), timeout=30)
    airis.clients.append(client)
    return client


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": "airisd", "sub": "admin", "iat": now, "nbf": now, "exp": now + 600,
            "jti": secrets.token_hex(8), "role": "admin", **over}


def test_health_is_public_and_every_api_route_wants_a_token(airis: AirisProcess) -> None:
    for role, method, path in (("metrics", "GET", "/metrics/query?name=x"), ("metrics", "POST", "/metrics"),
                               ("log", "GET", "/logs/search?q=x"), ("trace", "GET", "/traces/search"),
                               ("alert", "GET", "/metrics/prometheus"), ("alert", "GET", "/health/detailed"),
                               ("trace", "POST", "/debug/profile/start")):
        client = bare(airis, role)
        assert client.get("/health").status_code == 200
        resp = client.request(method, path)
        err = refused(resp, 401, "UNAUTHORIZED")
        assert "Bearer" in err["message"] and resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_login_on_every_role_then_use_the_token(airis: AirisProcess) -> None:
    for role in ("metrics", "log", "trace", "alert"):
        resp = bare(airis, role).post("/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert resp.status_code == 200, resp.text
        data = resp.json()["data"]
        assert data["expires_in"] == 3600 and data["token"].count(".") == 2
    client = airis.client("metrics")
    resp = client.post("/metrics", json=POINT)
    assert resp.status_code == 201, resp.text
    assert int(resp.headers["X-RateLimit-Limit"]) > 0 and "X-RateLimit-Remaining" in resp.headers


def test_forged_tampered_expired_and_unsigned_tokens_are_refused(airis: AirisProcess) -> None:
    secret = (airis.data_dir / "jwt.secret").read_bytes().strip()
    good = airis.auth_headers()["Authorization"].split()[1]
    head, body, sig = good.split(".")
    flipped = sig[:-2] + ("AA" if sig[-2:] != "AA" else "BB")
    payload = base64.urlsafe_b64encode(b'{"sub":"admin","role":"admin"}').rstrip(b"=").decode()
    forged = {
        "tampered signature": f"{head}.{body}.{flipped}",
        "tampered payload": f"{head}.{payload}.{sig}",
        "alg none": jwt.encode(claims(), "", algorithm="none"),
        "alg none with a signature": jwt.encode(claims(), "", algorithm="none") + "c2lnbmF0dXJl",
        "another key": jwt.encode(claims(), secrets.token_bytes(48), algorithm="HS256"),
        "expired": jwt.encode(claims(iat=int(time.time()) - 7200, nbf=int(time.time()) - 7200,
                                     exp=int(time.time()) - 3600), secret, algorithm="HS256"),
        "not yet valid": jwt.encode(claims(nbf=int(time.time()) + 3600), secret, algorithm="HS256"),
        "missing jti": jwt.encode({k: v for k, v in claims().items() if k != "jti"}, secret,
                                  algorithm="HS256"),
        "unknown user": jwt.encode(claims(sub="mallory"), secret, algorithm="HS256"),
        "other issuer": jwt.encode(claims(iss="someone-else"), secret, algorithm="HS256"),
    }
    client = bare(airis)
    for what, token in forged.items():
        resp = client.get("/metrics/query", params={"name": "cpu.usage"},
                          headers={"Authorization": f"Bearer {token}"})
        refused(resp, 401, "UNAUTHORIZED")
        assert token not in resp.text, what
    # the signing secret is good: a well-formed token made with it passes
    ok = client.get("/metrics/query", params={"name": "cpu.usage"},
                    headers={"Authorization": f"Bearer {jwt.encode(claims(), secret, algorithm='HS256')}"})
    assert ok.status_code == 200, ok.text


def test_reader_may_query_but_not_post(airis: AirisProcess) -> None:
    cli(airis, "user", "add", "rita", "--role", "reader", stdin="reader-pass-1\n")
    client = bare(airis)
    headers = {"Authorization": f"Bearer {airis.login('rita', 'reader-pass-1')}"}
    err = refused(client.post("/metrics", json=POINT, headers=headers), 403, "FORBIDDEN")
    assert err["details"] == {"role": "reader", "scope": "write"}
    assert client.get("/metrics/query", params={"name": "cpu.usage"}, headers=headers).status_code == 200
    refused(client.post("/debug/profile/start", headers=headers), 403, "FORBIDDEN")
    # a reader's token re-signed with the admin role (as if the secret leaked) is still refused
    secret = (airis.data_dir / "jwt.secret").read_bytes().strip()
    raised = jwt.encode(claims(sub="rita", role="admin"), secret, algorithm="HS256")
    resp = client.post("/metrics", json=POINT, headers={"Authorization": f"Bearer {raised}"})
    assert refused(resp, 401, "UNAUTHORIZED")["details"]["reason"] == "revoked"


def test_api_key_from_the_cli_writes_but_does_not_read(airis: AirisProcess) -> None:
    key = cli(airis, "token", "create", "--role", "writer", "--name", "host-01").strip()
    assert key.startswith("airisd_")
    client = bare(airis)
    headers = {"Authorization": f"Bearer {key}"}
    resp = client.post("/metrics", json={**POINT, "labels": {"host": "host-01"}}, headers=headers)
    assert resp.status_code == 201, resp.text
    refused(client.get("/metrics/query", params={"name": "cpu.usage"}, headers=headers), 403, "FORBIDDEN")
    logs = bare(airis, "log")
    basic = base64.b64encode(f"host-01:{key}".encode()).decode()
    resp = logs.post("/logs", json={"level": "info", "message": "from an agent", "service": "agent"},
                     headers={"Authorization": f"Basic {basic}"})
    assert resp.status_code == 201, resp.text
    listed = cli(airis, "token", "list")
    assert "host-01" in listed and key not in listed
    # what the writer sent is there for a reader
    data = airis.client("metrics").get("/metrics/query", params={"name": "cpu.usage",
                                                                 "labels": "host:host-01"}).json()["data"]
    assert data["series"][0]["labels"] == {"host": "host-01"}


def test_revoked_key_is_refused(airis: AirisProcess) -> None:
    key = cli(airis, "token", "create", "--role", "writer", "--name", "host-02").strip()
    cli(airis, "token", "revoke", "host-02")
    resp = bare(airis).post("/metrics", json=POINT, headers={"Authorization": f"Bearer {key}"})
    assert refused(resp, 401, "UNAUTHORIZED")["details"]["reason"] == "revoked"


def test_profile_is_admin_only_and_returns_a_profile(airis: AirisProcess) -> None:
    admin = airis.client("trace")
    assert admin.post("/debug/profile/start").status_code == 200
    for _ in range(30):
        airis.client("metrics").post("/metrics", json=POINT)
    resp = admin.post("/debug/profile/stop")
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    assert data["duration_secs"] > 0 and data["text"]
    assert Path(data["file"]).parent == airis.data_dir / "profiles" and Path(data["file"]).exists()


def test_rate_limit_holds(tmp_path: Path) -> None:
    airis = AirisProcess(tmp_path / "data", role="metrics",
                         extra_args=["--set", "auth.rate_limit_per_minute=5"]).start()
    try:
        client = airis.client("metrics")
        codes = [client.get("/metrics", params={"name": "x"}) for _ in range(6)]
        assert [r.status_code for r in codes] == [200] * 5 + [429], codes[-1].text
        last = codes[-1]
        refused(last, 429, "RATE_LIMITED")
        assert int(last.headers["Retry-After"]) >= 1
        assert last.headers["X-RateLimit-Limit"] == "5" and last.headers["X-RateLimit-Remaining"] == "0"
        assert [r.headers["X-RateLimit-Remaining"] for r in codes[:5]] == ["4", "3", "2", "1", "0"]
        assert bare(airis).get("/health").status_code == 200  # health is never limited
    finally:
        airis.stop()


def test_login_throttling(tmp_path: Path) -> None:
    airis = AirisProcess(tmp_path / "data", role="metrics").start()
    try:
        client = bare(airis, "metrics")
        attempt = {"username": "admin", "password": "not-the-password"}
        codes = [client.post("/auth/login", json=attempt).status_code for _ in range(6)]
        assert codes == [401] * 5 + [429]
        resp = client.post("/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        refused(resp, 429, "RATE_LIMITED")
        assert int(resp.headers["Retry-After"]) >= 1
        assert "not-the-password" not in airis.log()
    finally:
        airis.stop()


def test_placeholder_jwt_secret_stops_the_daemon(tmp_path: Path) -> None:
    placeholder = "your-super-secret-jwt-key-change-this-in-production"
    airis = AirisProcess(tmp_path / "data", role="metrics", env={"JWT_SECRET": placeholder}).start(wait=False)
    assert airis.proc is not None
    assert airis.proc.wait(timeout=30) != 0
    log = airis.log()
    assert "JWT_SECRET is the placeholder" in log and "Traceback" not in log
    assert placeholder not in log
    assert not (tmp_path / "data" / "auth.db").exists()


def test_generated_admin_password_is_shown_once(tmp_path: Path) -> None:
    airis = AirisProcess(tmp_path / "data", role="metrics", env={"AIRISD_ADMIN_PASSWORD": ""}).start()
    try:
        found = re.findall(r"password: (\S+)", airis.log())
        assert len(found) == 1
        password = found[0]
        assert airis.login("admin", password)
        airis.terminate()
        airis.start()
        assert airis.log().count(password) == 1  # not shown again, never logged
        assert airis.login("admin", password)
    finally:
        airis.stop()


def test_secrets_never_reach_logs_health_or_config_check(tmp_path: Path) -> None:
    env = {
        "JWT_SECRET": secrets.token_urlsafe(48),
        "SMTP_PASS": "smtp-" + secrets.token_hex(8),
        "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/" + secrets.token_hex(12),
        "AIRISD_ADMIN_PASSWORD": "admin-" + secrets.token_hex(8),
    }
    # every role but log: the module's daemon holds the log role's fixed syslog port
    airis = AirisProcess(tmp_path / "data", role="metrics,trace,alert", env=env,
                         extra_args=["--set", 'agent.log_level="debug"']).start()
    try:
        seen: list[str] = []
        headers = {"Authorization": f"Bearer {airis.login('admin', env['AIRISD_ADMIN_PASSWORD'])}"}
        key = cli(airis, "token", "create", "--role", "writer", "--name", "scan",
                  env={**_base_env(), **env}).strip()
        secret_values = [*env.values(), headers["Authorization"].split()[1], key]
        client = bare(airis)
        seen.append(client.post("/metrics", json=POINT, headers={"Authorization": f"Bearer {key}"}).text)
        seen.append(client.post("/auth/login", json={"username": "admin", "password": env["SMTP_PASS"]}).text)
        seen.append(client.get("/metrics", headers={"Authorization": f"Bearer {env['JWT_SECRET']}x.y"}).text)
        seen.append(client.get("/health/detailed", headers=headers).text)
        check = subprocess.run([airisd_bin(), "config", "check", "--config",
                                str(ROOT / "etc" / "airisd.toml"), "--data-dir", str(airis.data_dir)],
                               capture_output=True, text=True, timeout=60, env={**_base_env(), **env})
        assert check.returncode == 0, check.stderr
        seen += [check.stdout, check.stderr]
        airis.terminate()
        log = airis.log()
        assert "login failed" in log and "auth ready" in log
        for value in secret_values:
            assert value not in log, "a secret reached the log"
            for text in seen:
                assert value not in text, "a secret reached a response or config check"
    finally:
        airis.stop()


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "JWT_SECRET"}


def test_forwarded_for_from_an_untrusted_peer_is_ignored(tmp_path: Path) -> None:
    """With `trusted_proxies` empty (the default) X-Forwarded-For is the client's word, not the
    proxy's: rotating it must not give a client a fresh per-address login budget. (uvicorn's own
    proxy-header rewriting, which trusts 127.0.0.1, is off: the daemon decides, by its config.)"""
    airis = AirisProcess(tmp_path / "data", role="metrics").start()
    try:
        client = bare(airis, "metrics")
        codes = [client.post("/auth/login", json={"username": f"nobody-{i}", "password": "x"},
                             headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code for i in range(6)]
        assert codes == [401] * 5 + [429]
    finally:
        airis.stop()

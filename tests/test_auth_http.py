"""The [auth] section, AuthApi (login, per-request check, rate limits, CORS), the profiler endpoints and
`airisd user|token`, in process over httpx's ASGI transport with fake clocks; and a hypothesis fuzz of
every query route of a daemon built in process, with a valid token."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import anyio.from_thread
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.requests import Request
from starlette.responses import Response

from airisd import cli
from airisd.auth import ScryptParams
from airisd.auth.apikeys import ApiKeyStore
from airisd.auth.db import AuthDB
from airisd.auth.http import AuthApi, AuthConfig, parse_auth_config, register_env_secrets
from airisd.auth.secrets import PLACEHOLDER_SECRET
from airisd.config import build_config
from airisd.errors import ConfigError, Unauthorized
from airisd.http.app import HttpContext, build_app
from airisd.http.envelope import ok
from airisd.logsetup import mask
from airisd.plugin import Route
from airisd.roles.debug import DebugApi
from airisd.selfmetrics import Registry

ADMIN_PW = "unit-admin-password-1"
SECRET = "Xq3-v9LpA7Zr1mN5bT8cW2kD6hJ0sF4gY_eUoIiQ"
FAST = ScryptParams(log2_n=4, r=8, p=1)
T0 = 1_700_000_000.0


class Clock:
    """Fake wall and monotonic time in one: ``advance`` moves both."""

    def __init__(self) -> None:
        self.wall = T0
        self.mono = 0.0

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, secs: float) -> None:
        self.wall += secs
        self.mono += secs


@dataclass
class Harness:
    api: AuthApi
    debug: DebugApi
    client: httpx.AsyncClient
    clock: Clock
    data_dir: Path

    async def login(self, user: str, password: str) -> str:
        resp = await self.client.post("/auth/login", json={"username": user, "password": password})
        assert resp.status_code == 200, resp.text
        data = resp.json()["data"]
        assert set(data) == {"token", "expires_in"}
        return str(data["token"])

    async def bearer(self, user: str, password: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.login(user, password)}"}


async def _echo(request: Request) -> Response:
    principal = request.scope["state"].get("principal")
    return ok(request, {"sub": principal.sub if principal else None})


def make_api(data_dir: Path, clock: Clock, *, environ: dict[str, str] | None = None,
             cors: tuple[str, ...] = (), **cfg: Any) -> AuthApi:
    env = {"AIRISD_ADMIN_PASSWORD": ADMIN_PW} if environ is None else environ
    return AuthApi(AuthConfig(**cfg), data_dir=data_dir, cors_allow_origins=cors, environ=env,
                   clock=clock.time, monotonic=clock.monotonic, scrypt_params=FAST)


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def _harness(tmp_path: Path, clock: Clock, **kw: Any) -> AsyncIterator[Harness]:
    api = make_api(tmp_path, clock, **kw)
    api.open(notice=lambda text: None)
    assert api.authenticator is not None
    api.authenticator.users.add("wanda", "writer", "writer-pass-1")
    api.authenticator.users.add("rita", "reader", "reader-pass-1")
    debug = DebugApi(tmp_path)
    routes = [
        *api.routes(), *debug.routes(),
        Route("GET", "/health", _echo, scope="public"),
        Route("GET", "/r", _echo, scope="read"),
        Route("POST", "/w", _echo, scope="write"),
        Route("POST", "/a", _echo, scope="admin"),
        Route("GET", "/metrics/prometheus", _echo, scope="read"),
    ]
    ctx = HttpContext(role="metrics", metrics=Registry(), auth_check=api.check)
    app = api.wrap_asgi(build_app(routes, ctx))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://airisd") as client:
        yield Harness(api, debug, client, clock, tmp_path)
    debug.close()
    api.close()


@pytest.fixture
async def h(tmp_path: Path, clock: Clock) -> AsyncIterator[Harness]:
    async for harness in _harness(tmp_path, clock):
        yield harness


def error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["success"] is False and body["error"]["code"] == code
    assert body["request_id"].startswith("req_")
    return dict(body["error"])


# --- the [auth] section ------------------------------------------------------------------------------


def test_defaults_live_in_the_struct() -> None:
    cfg = parse_auth_config({})
    got = (cfg.enabled, cfg.jwt_algorithm, cfg.token_ttl_secs, cfg.rate_limit_per_minute)
    assert got == (True, "HS256", 3600, 1000)
    assert cfg.public_prometheus is False and cfg.users == [] and cfg.trusted_proxies == []


def test_rate_limit_comes_from_api_rate_limit_in_the_sample(tmp_path: Path) -> None:
    import tomllib

    from airisd.sample import sample_config

    data = tomllib.loads(sample_config())
    config = build_config(data, source="sample", environ={"API_RATE_LIMIT": "250"})
    assert parse_auth_config(config.auth).rate_limit_per_minute == 250
    config = build_config(data, source="sample", environ={})
    assert parse_auth_config(config.auth).rate_limit_per_minute == 1000


@pytest.mark.parametrize(("raw", "needle"), [
    ({"rate_limit": 5}, "unknown key 'rate_limit'"),
    ({"rate_limit_per_minute": "lots"}, "rate_limit_per_minute"),
    ({"rate_limit_per_minute": -1}, "API_RATE_LIMIT"),
    ({"jwt_algorithm": "none"}, "jwt_algorithm 'none'"),
    ({"token_ttl_secs": 0}, "token_ttl_secs"),
    ({"trusted_proxies": ["nginx"]}, "trusted_proxies[0]"),
    ({"login_max_failures": 0}, "login_max_failures"),
    ({"users": [{"name": "x", "role": "reader"}]}, "password_hash"),
])
def test_bad_section_names_the_key_and_the_file(raw: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        AuthApi.from_config(build_config({"auth": raw}, source="a.toml", environ={}), environ={})
    assert needle in info.value.message and "a.toml" in info.value.message


@pytest.mark.parametrize(("secret", "needle"), [
    (PLACEHOLDER_SECRET, "placeholder"),
    ("short-secret", "too short"),
])
def test_weak_jwt_secret_is_refused_before_anything_is_written(tmp_path: Path, secret: str,
                                                                needle: str) -> None:
    config = build_config({}, source="x", environ={}, data_dir=str(tmp_path / "d"))
    with pytest.raises(ConfigError) as info:
        AuthApi.from_config(config, environ={"JWT_SECRET": secret})
    assert needle in info.value.message and secret not in info.value.message
    assert not (tmp_path / "d").exists()


def test_from_config_writes_nothing_and_open_generates_the_secret(tmp_path: Path, clock: Clock) -> None:
    api = make_api(tmp_path / "d", clock)
    assert not (tmp_path / "d").exists()
    api.open(notice=lambda text: None)
    try:
        assert (tmp_path / "d" / "jwt.secret").stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "d" / "auth.db").exists()
    finally:
        api.close()
        api.close()  # safe twice


def test_short_admin_password_and_key_file_with_hs_are_refused(tmp_path: Path, clock: Clock) -> None:
    with pytest.raises(ConfigError, match="AIRISD_ADMIN_PASSWORD"):
        make_api(tmp_path, clock, environ={"AIRISD_ADMIN_PASSWORD": "short"})
    with pytest.raises(ConfigError, match="jwt_private_key_file"):
        make_api(tmp_path, clock, environ={}, jwt_private_key_file="/etc/key.pem")
    with pytest.raises(ConfigError, match="cors_allow_origins"):
        make_api(tmp_path, clock, cors=("https://ok.example", "https://x.example/path"))


def test_generated_admin_password_is_shown_once_and_masked(tmp_path: Path, clock: Clock) -> None:
    notes: list[str] = []
    api = make_api(tmp_path, clock, environ={})
    generated = api.open(notice=notes.append)
    api.close()
    assert generated and len(notes) == 1 and generated in notes[0]
    assert mask(f"x {generated} y") == "x *** y"
    secret = (tmp_path / "jwt.secret").read_text().strip()
    assert secret not in mask(f"secret={secret}")
    again = make_api(tmp_path, clock, environ={})
    assert again.open(notice=notes.append) is None and len(notes) == 1
    try:
        assert again.authenticator is not None
        token, _ = again.authenticator.login("admin", generated, None)
        assert again.authenticator.authenticate_header(f"Bearer {token}").role == "admin"
    finally:
        again.close()


def test_env_secrets_are_registered_by_name() -> None:
    env = {"JWT_SECRET": "a" * 40, "SMTP_PASS": "smtp-pass-value", "SLACK_WEBHOOK_URL": "https://hooks/x/y/z",
           "REDIS_PASSWORD": "redis-pass-value", "GITHUB_TOKEN": "ghp_tokenvalue", "SMTP_USER": "ops@example",
           "SLACK_CHANNEL": "#alerts", "EMPTY_SECRET": ""}
    names = register_env_secrets(env)
    assert names == ["GITHUB_TOKEN", "JWT_SECRET", "REDIS_PASSWORD", "SLACK_WEBHOOK_URL", "SMTP_PASS"]
    assert mask("smtp-pass-value via https://hooks/x/y/z by ops@example") == "*** via *** by ops@example"


# --- the per-request check ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_no_token_is_401_with_a_bearer_challenge(h: Harness) -> None:
    for method, path in (("GET", "/r"), ("POST", "/w"), ("POST", "/a"), ("GET", "/metrics/prometheus")):
        resp = await h.client.request(method, path)
        err = error(resp, 401, "UNAUTHORIZED")
        assert "Bearer" in err["message"]
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="airisd"'
    resp = await h.client.get("/r", headers={"Authorization": "Bearer not.a.token"})
    error(resp, 401, "UNAUTHORIZED")
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    assert "not.a.token" not in resp.text
    assert (await h.client.get("/health")).status_code == 200


@pytest.mark.anyio
async def test_roles_decide_what_a_token_may_do(h: Harness) -> None:
    admin = await h.bearer("admin", ADMIN_PW)
    writer = await h.bearer("wanda", "writer-pass-1")
    reader = await h.bearer("rita", "reader-pass-1")
    expected = {  # (headers, GET /r, POST /w, POST /a)
        "admin": (admin, 200, 200, 200),
        "writer": (writer, 403, 200, 403),
        "reader": (reader, 200, 403, 403),
    }
    for who, (headers, r, w, a) in expected.items():
        got = ((await h.client.get("/r", headers=headers)).status_code,
               (await h.client.post("/w", headers=headers)).status_code,
               (await h.client.post("/a", headers=headers)).status_code)
        assert got == (r, w, a), who
    resp = await h.client.post("/w", headers=reader)
    assert error(resp, 403, "FORBIDDEN")["details"] == {"role": "reader", "scope": "write"}
    assert (await h.client.get("/r", headers=admin)).json()["data"] == {"sub": "admin"}


@pytest.mark.anyio
async def test_other_schemes_carry_tokens_and_keys(h: Harness) -> None:
    token = await h.login("wanda", "writer-pass-1")
    assert h.api.authenticator is not None
    key = h.api.authenticator.api_keys.create("host-01", "writer").key
    for header in (f"Bearer {key}", f"Token {key}", f"ApiKey {key}",
                   "Basic " + base64.b64encode(f"agent:{key}".encode()).decode(),
                   "Basic " + base64.b64encode(f"{token}:".encode()).decode()):
        assert (await h.client.post("/w", headers={"Authorization": header})).status_code == 200, header


@pytest.mark.anyio
async def test_key_revoked_by_another_process_is_refused_once_the_cache_expires(h: Harness) -> None:
    assert h.api.authenticator is not None
    new = h.api.authenticator.api_keys.create("host-02", "writer")
    headers = {"Authorization": f"Bearer {new.key}"}
    assert (await h.client.post("/w", headers=headers)).status_code == 200
    db = AuthDB.in_dir(h.data_dir)  # what `airisd token revoke` does
    try:
        ApiKeyStore(db).revoke("host-02")
    finally:
        db.close()
    h.clock.advance(6)
    resp = await h.client.post("/w", headers=headers)
    assert error(resp, 401, "UNAUTHORIZED")["details"]["reason"] == "revoked"


@pytest.mark.anyio
async def test_rate_limit_per_principal_with_headers(tmp_path: Path, clock: Clock) -> None:
    async for h in _harness(tmp_path, clock, rate_limit_per_minute=3):
        admin = await h.bearer("admin", ADMIN_PW)
        reader = await h.bearer("rita", "reader-pass-1")
        for remaining in (2, 1, 0):
            resp = await h.client.get("/r", headers=admin)
            assert resp.status_code == 200
            assert resp.headers["X-RateLimit-Limit"] == "3"
            assert resp.headers["X-RateLimit-Remaining"] == str(remaining)
        resp = await h.client.get("/r", headers=admin)
        err = error(resp, 429, "RATE_LIMITED")
        assert err["details"]["limit_per_minute"] == 3
        assert resp.headers["Retry-After"] == "20" and resp.headers["X-RateLimit-Remaining"] == "0"
        assert int(resp.headers["X-RateLimit-Reset"]) > 0
        assert (await h.client.get("/r", headers=reader)).status_code == 200  # its own budget
        clock.advance(20)
        assert (await h.client.get("/r", headers=admin)).status_code == 200


@pytest.mark.anyio
async def test_failed_authentication_counts_per_address(tmp_path: Path, clock: Clock) -> None:
    async for h in _harness(tmp_path, clock, rate_limit_per_minute=2):
        codes = [(await h.client.get("/r", headers={"Authorization": "Bearer junk"})).status_code
                 for _ in range(3)]
        assert codes == [401, 401, 429]


@pytest.mark.anyio
async def test_disabled_auth_and_public_prometheus(tmp_path: Path, clock: Clock) -> None:
    async for h in _harness(tmp_path / "a", clock, public_prometheus=True):
        assert (await h.client.get("/metrics/prometheus")).status_code == 200
        assert (await h.client.get("/r")).status_code == 401
    async for h in _harness(tmp_path / "b", clock, enabled=False):
        assert (await h.client.post("/a")).status_code == 200
        assert (await h.client.get("/r")).json()["data"] == {"sub": None}


def test_client_address_behind_a_trusted_proxy(tmp_path: Path, clock: Clock) -> None:
    api = make_api(tmp_path, clock, trusted_proxies=["127.0.0.1", "10.0.0.0/8"])

    def ip(peer: str, headers: dict[str, str]) -> str:
        scope = {"type": "http", "client": (peer, 1), "headers": [(k.lower().encode(), v.encode())
                                                                for k, v in headers.items()]}
        return api.client_ip(Request(scope))

    assert ip("127.0.0.1", {"X-Forwarded-For": "203.0.113.9, 10.1.2.3"}) == "203.0.113.9"
    assert ip("127.0.0.1", {"X-Forwarded-For": "garbage"}) == "127.0.0.1"
    assert ip("127.0.0.1", {"X-Real-IP": "198.51.100.4"}) == "198.51.100.4"
    assert ip("192.0.2.1", {"X-Forwarded-For": "203.0.113.9"}) == "192.0.2.1"  # untrusted peer: ignored


# --- login ---------------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("body", "field"), [
    (b"not json", "body"),
    (b"[1, 2]", "body"),
    (b'{"username": "admin"}', "password"),
    (b'{"username": 5, "password": "x"}', "username"),
    (b'{"username": "admin", "password": "x", "role": "admin"}', "role"),
])
async def test_bad_login_bodies_are_validation_errors(h: Harness, body: bytes, field: str) -> None:
    resp = await h.client.post("/auth/login", content=body, headers={"Content-Type": "application/json"})
    assert error(resp, 400, "VALIDATION_ERROR")["details"]["field"] == field


@pytest.mark.anyio
async def test_login_refusals(h: Harness) -> None:
    wrong = await h.client.post("/auth/login", json={"username": "admin", "password": "wrong-password"})
    nobody = await h.client.post("/auth/login", json={"username": "nobody", "password": "wrong-password"})
    assert error(wrong, 401, "UNAUTHORIZED")["message"] == error(nobody, 401, "UNAUTHORIZED")["message"]
    assert "wrong-password" not in wrong.text
    big = await h.client.post("/auth/login", json={"username": "admin", "password": "x" * 20_000})
    error(big, 413, "PAYLOAD_TOO_LARGE")


@pytest.mark.anyio
async def test_login_throttling_locks_out_then_lets_go(h: Harness) -> None:
    attempt = {"username": "wanda", "password": "wrong-password"}
    codes = [(await h.client.post("/auth/login", json=attempt)).status_code for _ in range(6)]
    assert codes == [401] * 5 + [429]
    resp = await h.client.post("/auth/login", json={"username": "wanda", "password": "writer-pass-1"})
    error(resp, 429, "RATE_LIMITED")
    assert int(resp.headers["Retry-After"]) >= 1
    h.clock.advance(10)
    assert await h.login("wanda", "writer-pass-1")


@pytest.mark.anyio
async def test_cors_preflight_only_for_allowed_origins(tmp_path: Path, clock: Clock) -> None:
    preflight = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
    async for h in _harness(tmp_path / "on", clock, cors=("https://grafana.example",)):
        ok_resp = await h.client.options("/r", headers={"Origin": "https://grafana.example", **preflight})
        assert ok_resp.status_code == 200
        assert ok_resp.headers["Access-Control-Allow-Origin"] == "https://grafana.example"
        bad = await h.client.options("/r", headers={"Origin": "https://evil.example", **preflight})
        assert bad.status_code == 400 and "Access-Control-Allow-Origin" not in bad.headers
        admin = await h.bearer("admin", ADMIN_PW)
        resp = await h.client.get("/r", headers={"Origin": "https://grafana.example", **admin})
        assert "X-RateLimit-Remaining" in resp.headers["Access-Control-Expose-Headers"]
    async for h in _harness(tmp_path / "off", clock):
        resp = await h.client.options("/r", headers={"Origin": "https://grafana.example", **preflight})
        assert resp.status_code == 405 and "Access-Control-Allow-Origin" not in resp.headers


@pytest.mark.anyio
@settings(max_examples=60)
@given(header=st.one_of(
    st.text(max_size=300),
    st.builds(lambda s, t: f"{s} {t}", st.sampled_from(["Bearer", "bearer", "Basic", "Token", "ApiKey", "X"]),
              st.text(max_size=300)),
    st.builds(lambda t: "Basic " + base64.b64encode(t.encode("utf-8", "surrogatepass")).decode(),
              st.text(max_size=200)),
    st.builds(lambda t: f"Bearer airisd_{t}", st.text(alphabet="0123456789abcdef_-xyzXYZ", max_size=80)),
))
async def test_hostile_authorization_headers_are_401(tmp_path_factory: pytest.TempPathFactory,
                                                     header: str) -> None:
    clock = Clock()
    api = make_api(tmp_path_factory.mktemp("fuzz"), clock, environ={"JWT_SECRET": SECRET})
    api.open(notice=lambda text: None)
    try:
        scope = {"type": "http", "method": "GET", "path": "/r", "client": ("127.0.0.1", 1),
                 "headers": [(b"authorization", header.encode("latin-1", "replace"))], "query_string": b""}
        with pytest.raises(Unauthorized) as info:
            await api.check(Request(scope), "read")
        assert info.value.headers["WWW-Authenticate"].startswith("Bearer")  # type: ignore[attr-defined]
    finally:
        api.close()


# --- /debug/profile ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_profile_start_stop_is_admin_only_and_returns_a_profile(h: Harness) -> None:
    admin = await h.bearer("admin", ADMIN_PW)
    reader = await h.bearer("rita", "reader-pass-1")
    error(await h.client.post("/debug/profile/start", headers=reader), 403, "FORBIDDEN")
    error(await h.client.post("/debug/profile/start"), 401, "UNAUTHORIZED")
    error(await h.client.post("/debug/profile/stop", headers=admin), 409, "CONFLICT")
    bad = await h.client.post("/debug/profile/start", params={"interval": "5s"}, headers=admin)
    assert error(bad, 400, "VALIDATION_ERROR")["details"]["field"] == "interval"
    resp = await h.client.post("/debug/profile/start", params={"interval": "1ms"}, headers=admin)
    assert resp.status_code == 200 and resp.json()["data"]["interval"] == "1ms"
    error(await h.client.post("/debug/profile/start", headers=admin), 409, "CONFLICT")
    for _ in range(20):
        await h.client.get("/r", headers=admin)
    resp = await h.client.post("/debug/profile/stop", headers=admin)
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    assert data["expired"] is False and data["duration_secs"] > 0
    assert "pyinstrument" in data["text"] or "Recorded" in data["text"]
    assert Path(data["file"]).parent == h.data_dir / "profiles"
    assert await anyio.Path(data["html_file"]).exists()
    assert (await anyio.Path(data["file"]).read_text()).startswith(data["text"][:50])
    error(await h.client.post("/debug/profile/stop", headers=admin), 409, "CONFLICT")


@pytest.mark.anyio
async def test_a_forgotten_profile_stops_by_itself_and_is_kept(h: Harness) -> None:
    admin = await h.bearer("admin", ADMIN_PW)
    resp = await h.client.post("/debug/profile/start", params={"max_duration": "1h"}, headers=admin)
    assert resp.json()["data"]["max_duration"] == "1h"
    run = h.debug._run
    assert run is not None and run.timer is not None
    run.timer.cancel()
    h.debug._expire(run)  # what the timer does when max_duration passes
    assert not h.debug.running
    data = (await h.client.post("/debug/profile/stop", headers=admin)).json()["data"]
    assert data["expired"] is True and await anyio.Path(data["file"]).exists()


# --- airisd user / token -----------------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str,
            stdin: str = "") -> tuple[int, str, str]:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_user_and_token_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch, clock: Clock) -> None:
    monkeypatch.delenv("AIRISD_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    d = ["--data-dir", str(tmp_path / "data")]
    api = make_api(tmp_path / "data", clock, environ={"JWT_SECRET": SECRET})
    api.open(notice=lambda text: None)  # the daemon's first start: admin exists
    try:
        assert run_cli(capsys, monkeypatch, "user", "add", "ops", "--role", "reader", *d,
                       stdin="ops-password-1\n")[0] == 0
        code, out, _ = run_cli(capsys, monkeypatch, "user", "list", *d)
        assert code == 0 and [line.split()[:2] for line in out.splitlines()[1:]] == [["admin", "admin"],
                                                                                     ["ops", "reader"]]
        code, _, err = run_cli(capsys, monkeypatch, "user", "add", "ops", "--role", "reader", *d,
                               stdin="ops-password-1\n")
        assert code == 1 and "already exists" in err
        code, _, err = run_cli(capsys, monkeypatch, "user", "add", "x", "--role", "reader", *d,
                               stdin="short\n")
        assert code == 1 and "at least 8" in err
        assert run_cli(capsys, monkeypatch, "user", "passwd", "ops", *d, stdin="ops-password-2\n")[0] == 0
        assert api.authenticator is not None
        assert api.authenticator.login("ops", "ops-password-2", None)[0]
        assert run_cli(capsys, monkeypatch, "user", "role", "ops", "writer", *d)[0] == 0
        code, _, err = run_cli(capsys, monkeypatch, "user", "del", "admin", *d)
        assert code == 1 and "last admin" in err
        assert run_cli(capsys, monkeypatch, "user", "del", "ops", *d)[0] == 0

        code, out, err = run_cli(capsys, monkeypatch, "token", "create", "--role", "writer",
                                 "--name", "host-01", *d)
        key = out.strip()
        assert code == 0 and key.startswith("airisd_") and key not in err and "shown once" in err
        assert api.authenticator.authenticate_header(f"Bearer {key}").role == "writer"
        code, out, _ = run_cli(capsys, monkeypatch, "token", "list", "--json", *d)
        import json

        listed = json.loads(out)
        assert [(k["name"], k["role"], k["revoked_at"]) for k in listed] == [("host-01", "writer", None)]
        assert key not in out
        assert run_cli(capsys, monkeypatch, "token", "revoke", "host-01", *d)[0] == 0
        code, _, err = run_cli(capsys, monkeypatch, "token", "revoke", "host-01", *d)
        assert code == 1 and "no active API key" in err
        code, out, _ = run_cli(capsys, monkeypatch, "token", "list", "--all", *d)
        assert "host-01" in out and listed[0]["id"] in out
    finally:
        api.close()


# --- hostile query parameters against every query route, in process ------------------------------------

HOSTILE = st.one_of(
    st.text(max_size=60),
    st.sampled_from([
        "", " ", "'", "\"", "' OR 1=1 --", "'; DROP TABLE points; --", "%", "%00", "\\", "\\\\'", "{", "}",
        "{host=~\".*\"}", "host:", ":", ",,,", "host:a,host:b", "*", "..", "../../etc/passwd", "\u0000",
        "\ud7ff\ue000", "9" * 40, "-1", "0", "1e999", "NaN", "-Infinity", "1.5e308", "2024-13-45T99:99:99Z",
        "2024-01-15T10:30:00+25:00", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "-9223372036854775809",
        "1ms", "0s", "-5m", "100000000d", "1h1h", "AND", "NOT", "\"unterminated", "(((((",
        "level:error AND (",
        "a" * 5000, "service.name=\"x\"", "{\"k\": [1, 2]}", "desc", "asc", "timestamp:desc",
    ]),
)


# Routes that do not list their parameters when given an unknown one (the Jaeger query API).
JAEGER_PARAMS = ["service", "operation", "tags", "start", "end", "limit", "lookback", "minDuration",
                 "maxDuration", "spanKind"]


class InProcessDaemon:
    """The daemon's listeners as ASGI apps (no sockets): stores opened, auth open, a valid token."""

    def __init__(self, data_dir: Path) -> None:
        import tomllib

        from airisd.daemon import Daemon
        from airisd.registry import build_registry
        from airisd.sample import sample_config

        config = build_config(tomllib.loads(sample_config()), source="<sample>", role="metrics,log,trace",
                              data_dir=str(data_dir), environ={"API_RATE_LIMIT": "0"})
        self.daemon = Daemon(config, build_registry())
        self.daemon.build()
        self.clients: dict[str, httpx.AsyncClient] = {}
        self.routes: list[tuple[str, str]] = []
        self.headers: dict[str, str] = {}

    async def start(self) -> None:
        d = self.daemon
        await anyio.to_thread.run_sync(d.auth_api.open)
        for inst in d.instances:
            if inst.section == "outputs":
                await inst.plugin.start()
        for listener in d.listeners:
            app = build_app(listener.routes, HttpContext(role=listener.role, metrics=d.metrics,
                                                         auth_check=d.auth_check))
            self.clients[listener.role] = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                                            base_url="http://airisd")
            self.routes += [(listener.role, r.path) for r in listener.routes if r.method == "GET"]
        resp = await self.clients["metrics"].post("/auth/login",
                                                 json={"username": "admin", "password": ADMIN_PW})
        self.headers = {"Authorization": f"Bearer {resp.json()['data']['token']}"}

    async def accepted(self, role: str, path: str) -> list[str]:
        """The query parameters a route takes, from its own answer to an unknown one."""
        resp = await self.clients[role].get(path.replace("{", "x").replace("}", ""), params={"zz_probe": "1"},
                                            headers=self.headers)
        accepted = resp.json().get("error", {}).get("details", {}).get("accepted", []) \
            if resp.status_code == 400 else []
        return list(accepted) or (JAEGER_PARAMS if path.startswith("/api/") else [])

    async def get(self, role: str, path: str, params: dict[str, str]) -> httpx.Response:
        return await self.clients[role].get(path, params=params, headers=self.headers)

    async def stop(self) -> None:
        for client in self.clients.values():
            await client.aclose()
        for inst in self.daemon.instances:
            await inst.plugin.shutdown()
        self.daemon.auth_api.close()


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, InProcessDaemon]]:
    old = os.environ.get("AIRISD_ADMIN_PASSWORD")
    os.environ["AIRISD_ADMIN_PASSWORD"] = ADMIN_PW
    try:
        with anyio.from_thread.start_blocking_portal("asyncio") as portal:
            daemon = portal.call(lambda: _make_in_process(tmp_path_factory.mktemp("inproc")))
            try:
                yield portal, daemon
            finally:
                portal.call(daemon.stop)
    finally:
        if old is None:
            os.environ.pop("AIRISD_ADMIN_PASSWORD", None)
        else:
            os.environ["AIRISD_ADMIN_PASSWORD"] = old


async def _make_in_process(data_dir: Path) -> InProcessDaemon:
    daemon = InProcessDaemon(data_dir)
    await daemon.start()
    return daemon


@pytest.fixture(scope="module")
def query_routes(in_process: tuple[Any, InProcessDaemon]) -> list[tuple[str, str, list[str]]]:
    portal, daemon = in_process
    skip = {"/health", "/health/detailed", "/metrics/prometheus"}
    found = [(role, path, portal.call(daemon.accepted, role, path)) for role, path in daemon.routes
             if path not in skip]
    assert {p for _, p, _ in found} >= {"/metrics/query", "/metrics"}
    assert any("labels" in params for _, _, params in found)
    return found


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                  HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_hostile_query_parameters_never_give_a_5xx(in_process: tuple[Any, InProcessDaemon],
                                                   query_routes: list[tuple[str, str, list[str]]],
                                                   data: st.DataObject) -> None:
    portal, daemon = in_process
    role, path, accepted = data.draw(st.sampled_from(query_routes))
    while "{" in path:  # a path parameter: hostile too
        start, end = path.index("{"), path.index("}")
        path = path[:start] + quote(data.draw(HOSTILE) or "x", safe="") + path[end + 1:]
    names = data.draw(st.lists(st.sampled_from(accepted), unique=True)) if accepted else []
    params = {name: data.draw(HOSTILE) for name in names}
    resp = portal.call(daemon.get, role, path, params)
    assert resp.status_code < 500, (role, path, params, resp.text[:500])
    assert resp.status_code not in (401, 403), resp.text

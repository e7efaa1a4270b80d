"""The ``[auth]`` section and its HTTP face: ``POST /auth/login`` and the check every other route runs.

    AuthConfig     the [auth] section; its defaults live here and nowhere else
    AuthApi        from_config()  checks the section, JWT_SECRET and AIRISD_ADMIN_PASSWORD, no I/O
                                  (so ``airisd config check`` refuses the seed's placeholder secret)
                   open()         keys, <data_dir>/auth.db, the first admin (its generated password
                                  is shown once on stderr)
                   routes()       POST /auth/login (public; scrypt runs in a worker thread)
                   check()        HttpContext.auth_check: authenticate, rate-limit, authorize
                   wrap_asgi()    CORS, off unless [http] cors_allow_origins lists origins
                   close()

``check`` answers 401 (with ``WWW-Authenticate: Bearer``), 403, or 429 (``Retry-After`` and
``X-RateLimit-*``). The ``X-RateLimit-*`` headers of an admitted request are left in
``request.scope["state"]["response_headers"]`` for the HTTP layer to copy onto the response, and the
caller's Principal in ``request.scope["state"]["principal"]`` for handlers that want to know who asked.

Rate limits count per principal (``jwt:<user>`` or ``api_key:<name>``), so agents behind one NAT do
not share a budget; requests that fail authentication, login attempts and (with auth disabled) all
requests count per client address. The address is the socket's peer, or, when the peer is one of
``trusted_proxies`` (nginx terminating TLS), the first untrusted hop of ``X-Forwarded-For``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import anyio
import msgspec
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from airisd.auth import Authenticator, LoginThrottle, RateLimiter
from airisd.auth.passwords import ScryptParams, check_password_policy
from airisd.auth.principal import Principal
from airisd.auth.secrets import ALGORITHMS, HMAC_ALGORITHMS, load_jwt_keys, load_jwt_secret
from airisd.auth.tokens import MAX_TTL_SECS
from airisd.auth.users import ConfigUser, parse_config_users
from airisd.errors import Backpressure, ConfigError, RateLimited, Unauthorized, ValidationError
from airisd.http.envelope import ok
from airisd.http.request import header, read_json
from airisd.logsetup import add_secret
from airisd.plugin import Route

log = logging.getLogger("airisd.auth")

PROMETHEUS_PATH: Final = "/metrics/prometheus"
MAX_LOGIN_BODY_BYTES: Final = 16 * 1024
MAX_LOGIN_WAITING: Final = 64  # logins queued for a hashing slot before new ones get 503
LOGIN_THREADS: Final = 2  # matches UserStore's concurrent-hash bound: waiting happens on the loop
WWW_AUTHENTICATE: Final = 'Bearer realm="airisd"'
CORS_METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE")
CORS_HEADERS: Final = ("Authorization", "Content-Type", "Content-Encoding", "X-Request-ID")
CORS_EXPOSE: Final = ("X-Request-ID", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
                      "Retry-After")
_ORIGIN_RE: Final = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+$")

# Environment variables whose values are secrets wherever they turn up (logs, errors): the seed's
# .env names, plus anything named like a password, secret, token, key or webhook.
SECRET_ENV_NAMES: Final = ("JWT_SECRET", "AIRISD_ADMIN_PASSWORD", "SMTP_PASS", "SLACK_WEBHOOK_URL")
_SECRET_ENV_RE: Final = re.compile(
    r"(?:^|_)(?:PASS|PASSWD|PASSWORD|SECRET|TOKEN|API_?KEY|PRIVATE_KEY|WEBHOOK|WEBHOOK_URL|CREDENTIALS?)$"
)


class AuthConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[auth]``. The HS* signing secret is not here: it is ``JWT_SECRET`` from the environment
    (or generated into ``<data_dir>/jwt.secret``), so it never sits in a config file."""

    enabled: bool = True
    jwt_algorithm: str = "HS256"
    jwt_private_key_file: str = ""
    jwt_public_key_file: str = ""
    token_ttl_secs: int = 3600
    rate_limit_per_minute: int = 1000  # the sample fills it from ${API_RATE_LIMIT:-1000}; 0 disables
    login_max_failures: int = 5
    login_max_lockout_secs: float = 900.0
    public_prometheus: bool = False
    trusted_proxies: list[str] = msgspec.field(default_factory=list)
    users: list[dict[str, Any]] = msgspec.field(default_factory=list)

    def validate(self) -> None:
        """Raise ValueError naming the key and quoting the bad value."""
        if self.jwt_algorithm not in ALGORITHMS:
            raise ValueError(f"jwt_algorithm {self.jwt_algorithm!r} is not one of {', '.join(ALGORITHMS)}")
        if not 1 <= self.token_ttl_secs <= MAX_TTL_SECS:
            raise ValueError(f"token_ttl_secs must be from 1 to {MAX_TTL_SECS}, got {self.token_ttl_secs}")
        if self.rate_limit_per_minute < 0:
            raise ValueError(f"rate_limit_per_minute (API_RATE_LIMIT) must be 0 (off) or more, "
                             f"got {self.rate_limit_per_minute}")
        if self.login_max_failures < 1:
            raise ValueError(f"login_max_failures must be at least 1, got {self.login_max_failures}")
        if not 1.0 <= self.login_max_lockout_secs <= 86400.0:
            raise ValueError(f"login_max_lockout_secs must be from 1 to 86400, "
                             f"got {self.login_max_lockout_secs}")
        for i, net in enumerate(self.trusted_proxies):
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(f"trusted_proxies[{i}] {net!r} is not an IP address or network") from None


def parse_auth_config(raw: Mapping[str, Any], *, source: str = "<config>") -> AuthConfig:
    """``[auth]`` as a checked AuthConfig; ConfigError naming the file and the key otherwise."""
    from airisd.config import _explain

    try:
        cfg = msgspec.convert(dict(raw), AuthConfig, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: [auth] {_explain(exc)}", details={"key": "auth"}) from None
    try:
        cfg.validate()
    except ValueError as exc:
        raise ConfigError(f"{source}: [auth] {exc}", details={"key": "auth"}) from None
    return cfg


def register_env_secrets(environ: Mapping[str, str]) -> list[str]:
    """Mask, in every log line, the value of each environment variable that holds a secret. Returns
    the names registered (never the values)."""
    names = sorted(n for n, v in environ.items()
                   if v and (n in SECRET_ENV_NAMES or _SECRET_ENV_RE.search(n.upper())))
    for name in names:
        add_secret(environ[name])
    return names


def _stderr_notice(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Unauthenticated(Unauthorized):
    """401 carrying ``WWW-Authenticate`` (the envelope copies an exception's ``headers``)."""

    def __init__(self, message: str, *, details: dict[str, Any] | None = None, error: str = "") -> None:
        super().__init__(message, details=details)
        challenge = WWW_AUTHENTICATE + (f', error="{error}"' if error else "")
        self.headers = {"WWW-Authenticate": challenge}


class TooManyRequests(RateLimited):
    """429 carrying ``Retry-After`` and ``X-RateLimit-*``."""

    def __init__(self, message: str, *, retry_after_secs: int, headers: dict[str, str],
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message, retry_after_secs=retry_after_secs, details=details)
        self.headers = headers


class AuthApi:
    """Login, per-request authentication, rate limiting and CORS for every role's listener."""

    def __init__(
        self,
        config: AuthConfig,
        *,
        data_dir: Path,
        cors_allow_origins: Sequence[str] = (),
        environ: Mapping[str, str] | None = None,
        source: str = "<config>",
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        scrypt_params: ScryptParams | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        register_env_secrets(env)
        self.config = config
        self.data_dir = Path(data_dir)
        self._clock = clock
        self._params = scrypt_params
        self._jwt_secret = env.get("JWT_SECRET") or None
        self._admin_password = env.get("AIRISD_ADMIN_PASSWORD") or None
        self._config_users: list[ConfigUser] = parse_config_users(config.users,
                                                                  source=f"{source}: auth.users")
        self._check_keys()
        if self._admin_password is not None:
            try:
                check_password_policy(self._admin_password, field="AIRISD_ADMIN_PASSWORD")
            except ValidationError as exc:
                raise ConfigError(exc.message, details={"key": "AIRISD_ADMIN_PASSWORD"}) from None
        self.cors_allow_origins = _check_origins(cors_allow_origins)
        self._trusted = [ipaddress.ip_network(n, strict=False) for n in config.trusted_proxies]
        self.limiter = RateLimiter(config.rate_limit_per_minute, clock=monotonic)
        self.throttle = LoginThrottle(max_failures=config.login_max_failures,
                                      max_lockout_secs=config.login_max_lockout_secs,
                                      forget_after_secs=max(3600.0, config.login_max_lockout_secs),
                                      clock=monotonic)
        self.authenticator: Authenticator | None = None
        self._login_limiter: anyio.CapacityLimiter | None = None
        self._login_waiting = 0

    @classmethod
    def from_config(cls, config: Any, *, environ: Mapping[str, str] | None = None, **kwargs: Any) -> AuthApi:
        """From the daemon's Config: ``[auth]``, ``agent.data_dir`` and ``http.cors_allow_origins``."""
        return cls(parse_auth_config(config.auth, source=config.source), data_dir=Path(config.agent.data_dir),
                   cors_allow_origins=config.http.cors_allow_origins, environ=environ, source=config.source,
                   **kwargs)

    def _key_files(self) -> tuple[str | None, str | None]:
        return self.config.jwt_private_key_file or None, self.config.jwt_public_key_file or None

    def _check_keys(self) -> None:
        """Refuse a weak JWT_SECRET, a key file that does not fit, or key files with an HS algorithm,
        reading but never writing: the generated secret is created only by ``open``."""
        private, public = self._key_files()
        if self.config.jwt_algorithm in HMAC_ALGORITHMS and not (self._jwt_secret or private or public):
            return
        load_jwt_keys(data_dir=self.data_dir, algorithm=self.config.jwt_algorithm, secret=self._jwt_secret,
                      private_key_file=private, public_key_file=public)

    # --- lifecycle -------------------------------------------------------------------------------

    def open(self, *, notice: Callable[[str], None] = _stderr_notice) -> str | None:
        """Open keys and ``auth.db`` and create the first admin. Returns the generated admin password
        (already shown through ``notice``) on the very first start without AIRISD_ADMIN_PASSWORD."""
        if self.authenticator is not None:
            return None
        private, public = self._key_files()
        auth = Authenticator.open(
            self.data_dir, jwt_secret=self._jwt_secret, jwt_algorithm=self.config.jwt_algorithm,
            jwt_private_key_file=private, jwt_public_key_file=public,
            token_ttl_secs=self.config.token_ttl_secs, config_users=self._config_users, clock=self._clock,
            throttle=self.throttle, params=self._params,
        )
        try:
            if self.config.jwt_algorithm in HMAC_ALGORITHMS:
                add_secret(load_jwt_secret(self._jwt_secret, self.data_dir).decode("utf-8", "replace"))
            generated = auth.users.bootstrap_admin(self._admin_password)
        except BaseException:
            auth.close()
            raise
        self.authenticator = auth
        if generated is not None:
            add_secret(generated)
            notice(
                "airisd: created the first admin account\n"
                f"    user:     admin\n    password: {generated}\n"
                f"  This password is shown once and stored only as a hash in {self.data_dir / 'auth.db'}.\n"
                "  Change it with `airisd user passwd admin`; set AIRISD_ADMIN_PASSWORD before the first "
                "start to choose it instead."
            )
        if not self.config.enabled:
            log.warning("auth is disabled ([auth] enabled = false): every route is open to anyone "
                        "who can reach the listeners")
        log.info("auth ready", extra={"kv": {
            "enabled": self.config.enabled, "jwt_algorithm": self.config.jwt_algorithm,
            "token_ttl_secs": self.config.token_ttl_secs,
            "rate_limit_per_minute": self.config.rate_limit_per_minute,
            "secret_source": self._secret_source()}})
        return generated

    def _secret_source(self) -> str:
        if self.config.jwt_algorithm not in HMAC_ALGORITHMS:
            return "jwt_private_key_file"
        return "JWT_SECRET" if self._jwt_secret else str(self.data_dir / "jwt.secret")

    def close(self) -> None:
        """Safe without ``open`` and safe twice."""
        auth, self.authenticator = self.authenticator, None
        if auth is not None:
            auth.close()

    def _require_open(self) -> Authenticator:
        if self.authenticator is None:
            raise Backpressure("the daemon is still starting; retry shortly", retry_after_secs=1)
        return self.authenticator

    # --- HTTP ------------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        return [Route("POST", "/auth/login", self.login, name="auth_login", scope="public")]

    async def login(self, request: Request) -> Response:
        """``{"username", "password"}`` → ``{"token", "expires_in"}``."""
        ip = self.client_ip(request)
        self._count(request, f"ip:{ip}")
        body = await read_json(request, MAX_LOGIN_BODY_BYTES)
        if not isinstance(body, dict):
            raise ValidationError("body must be a JSON object with username and password",
                                  details={"field": "body"})
        unknown = sorted(k for k in body if k not in ("username", "password"))
        if unknown:
            raise ValidationError(f"unknown field {unknown[0][:64]!r} (accepted: username, password)",
                                  details={"field": unknown[0][:64]})
        username: Any = body.get("username")
        password: Any = body.get("password")
        auth = self._require_open()
        if self._login_waiting >= MAX_LOGIN_WAITING:
            raise Backpressure("too many logins in progress; try again shortly", retry_after_secs=1)
        if self._login_limiter is None:
            self._login_limiter = anyio.CapacityLimiter(LOGIN_THREADS)
        who = {"user": _loggable_name(username), "client": ip}
        self._login_waiting += 1
        try:
            token, expires_in = await anyio.to_thread.run_sync(auth.login, username, password, ip,
                                                               limiter=self._login_limiter)
        except Unauthorized:
            log.warning("login failed", extra={"kv": who})
            raise
        except RateLimited:
            log.warning("login throttled after repeated failures", extra={"kv": who})
            raise
        finally:
            self._login_waiting -= 1
        log.info("login", extra={"kv": who})
        return ok(request, {"token": token, "expires_in": expires_in})

    async def check(self, request: Request, scope: str) -> None:
        """The ``auth_check`` of every non-public route."""
        state = request.scope.setdefault("state", {})
        if not self.config.enabled or (self.config.public_prometheus and request.url.path == PROMETHEUS_PATH):
            self._count(request, f"ip:{self.client_ip(request)}")
            return
        auth = self._require_open()
        try:
            principal = auth.authenticate_header(header(request, b"authorization"))
        except Unauthorized as exc:
            # floods of bad credentials are limited per address (a 429 wins over the 401)
            self._count(request, f"ip:{self.client_ip(request)}")
            reason = exc.details.get("reason", "")
            raise Unauthenticated(exc.message, details=exc.details,
                                  error="" if reason == "missing" else "invalid_token") from None
        state["principal"] = principal
        self._count(request, principal.rate_limit_key())
        auth.authorize(principal, scope)

    def _count(self, request: Request, key: str) -> None:
        """One request against ``key``'s budget; TooManyRequests when it is spent."""
        if not self.limiter.enabled:
            return
        decision = self.limiter.check(key[:320])
        headers = decision.headers()
        if not decision.allowed:
            raise TooManyRequests(
                f"rate limit of {decision.limit} requests per minute exceeded; "
                f"retry in {decision.retry_after_secs} s",
                retry_after_secs=decision.retry_after_secs, headers=headers,
                details={"limit_per_minute": decision.limit, "retry_after_secs": decision.retry_after_secs},
            )
        request.scope.setdefault("state", {})["response_headers"] = headers

    def client_ip(self, request: Request) -> str:
        """The peer address, or the first untrusted X-Forwarded-For hop behind a trusted proxy."""
        peer = request.client.host if request.client else ""
        if not self._trusted or not self._is_trusted(peer):
            return peer or "unknown"
        forwarded = request.headers.get("x-forwarded-for", "")
        for hop in reversed(forwarded.split(",")[-16:]):
            hop = hop.strip()
            if _is_ip(hop) and not self._is_trusted(hop):
                return hop
        real = request.headers.get("x-real-ip", "").strip()
        return real if _is_ip(real) else peer

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self._trusted)

    def principal(self, request: Request) -> Principal | None:
        """Who made ``request`` (after ``check``); None on public routes or with auth disabled."""
        value = request.scope.get("state", {}).get("principal")
        return value if isinstance(value, Principal) else None

    def wrap_asgi(self, app: ASGIApp) -> ASGIApp:
        """``app`` behind CORS when origins are allowed; ``app`` itself otherwise (CORS off)."""
        if not self.cors_allow_origins:
            return app
        return CORSMiddleware(app, allow_origins=list(self.cors_allow_origins),
                              allow_methods=list(CORS_METHODS), allow_headers=list(CORS_HEADERS),
                              expose_headers=list(CORS_EXPOSE),
                              allow_credentials=False, max_age=600)


def _check_origins(origins: Sequence[str]) -> tuple[str, ...]:
    for i, origin in enumerate(origins):
        if origin != "*" and not (isinstance(origin, str) and _ORIGIN_RE.match(origin)):
            raise ConfigError(
                f"http.cors_allow_origins[{i}] {str(origin)[:80]!r} is not an origin "
                f"(scheme://host[:port], no path) or \"*\"",
                details={"key": f"http.cors_allow_origins[{i}]"})
    return tuple(origins)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _loggable_name(value: object) -> str:
    """A user name fit for a log line; anything else (a pasted password, control characters) is not
    logged."""
    from airisd.auth.users import NAME_RE

    return value if isinstance(value, str) and NAME_RE.match(value) else "<invalid>"

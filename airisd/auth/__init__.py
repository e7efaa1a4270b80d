"""Authentication and authorisation for every role, free of any web framework.

    Authenticator              the entry point the HTTP layer and the CLI use
    ├── TokenService           JWT issue/verify, one pinned algorithm      (tokens.py)
    ├── UserStore              password accounts in auth.db + config       (users.py)
    ├── ApiKeyStore            long-lived agent keys in auth.db            (apikeys.py)
    └── LoginThrottle          failed-login lockouts per user and address  (ratelimit.py)
    RateLimiter                API_RATE_LIMIT per client                   (ratelimit.py)
    load_jwt_secret/_keys      JWT_SECRET, jwt.secret, PEM key files       (secrets.py)
    redact                     masking secrets in log lines                (redact.py)

Roles and scopes are in principal.py: admin may do everything; writer may write (ingest); reader
may read (query). Writers may not read.

Accepted ``Authorization`` schemes, so that agents speaking the standard protocols can send an API
key the way their client already does: ``Bearer <jwt|key>`` (OTLP, Prometheus remote_write, Loki),
``Token <key>`` (Influx v2), ``ApiKey <key>`` (Elasticsearch clients), and ``Basic`` whose password
(or, when the password is empty, user name) is a JWT or API key: Basic never checks an account
password, which would cost a scrypt per request.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

from airisd.auth.apikeys import ApiKeyInfo, ApiKeyStore, NewApiKey, looks_like_api_key
from airisd.auth.db import AuthDB
from airisd.auth.passwords import DEFAULT_PARAMS, ScryptParams, hash_password, verify_password
from airisd.auth.principal import ROLE_SCOPES, ROLES, SCOPES, Principal, Role, Scope, role_allows
from airisd.auth.ratelimit import LoginThrottle, RateDecision, RateLimiter
from airisd.auth.redact import redact
from airisd.auth.secrets import JwtKeys, load_jwt_keys, load_jwt_secret
from airisd.auth.tokens import TokenService
from airisd.auth.users import ConfigUser, UserInfo, UserStore, parse_config_users
from airisd.errors import Forbidden, Unauthorized, ValidationError

__all__ = [
    "ROLES",
    "ROLE_SCOPES",
    "SCOPES",
    "ApiKeyInfo",
    "ApiKeyStore",
    "AuthDB",
    "Authenticator",
    "ConfigUser",
    "JwtKeys",
    "LoginThrottle",
    "NewApiKey",
    "Principal",
    "RateDecision",
    "RateLimiter",
    "Role",
    "Scope",
    "ScryptParams",
    "TokenService",
    "UserInfo",
    "UserStore",
    "hash_password",
    "load_jwt_keys",
    "load_jwt_secret",
    "parse_config_users",
    "redact",
    "role_allows",
    "verify_password",
]

MAX_HEADER_CHARS: Final = 16_384
_SCHEMES: Final = frozenset({"bearer", "token", "apikey"})


def _refuse(message: str, reason: str) -> Unauthorized:
    return Unauthorized(message, details={"reason": reason})


class Authenticator:
    """Turns credentials into principals and principals into permissions.

    All methods are synchronous. ``authenticate_header`` is cheap (an HMAC or SHA-256, and a cached
    SQLite read) and may run on the event loop; ``login`` runs scrypt (~0.3 s): run it in a worker
    thread (``anyio.to_thread.run_sync``).
    """

    def __init__(
        self,
        *,
        tokens: TokenService,
        users: UserStore,
        api_keys: ApiKeyStore,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self.tokens = tokens
        self.users = users
        self.api_keys = api_keys
        self.throttle = throttle if throttle is not None else LoginThrottle()
        self._db: AuthDB | None = None

    @classmethod
    def open(
        cls,
        data_dir: Path,
        *,
        jwt_secret: str | None = None,
        jwt_algorithm: str = "HS256",
        jwt_private_key_file: Path | str | None = None,
        jwt_public_key_file: Path | str | None = None,
        token_ttl_secs: int = 3600,
        config_users: Iterable[ConfigUser] = (),
        clock: Callable[[], float] = time.time,
        throttle: LoginThrottle | None = None,
        params: ScryptParams | None = None,
    ) -> Authenticator:
        """Everything from the settings: keys (refusing weak ones), ``<data_dir>/auth.db`` and stores.
        Call ``users.bootstrap_admin(os.environ.get("AIRISD_ADMIN_PASSWORD"))`` after this."""
        keys = load_jwt_keys(
            data_dir=Path(data_dir),
            algorithm=jwt_algorithm,
            secret=jwt_secret,
            private_key_file=jwt_private_key_file,
            public_key_file=jwt_public_key_file,
        )
        tokens = TokenService(keys, ttl_secs=token_ttl_secs, clock=clock)
        db = AuthDB.in_dir(Path(data_dir))
        users = UserStore(
            db,
            config_users=config_users,
            clock=clock,
            params=params if params is not None else DEFAULT_PARAMS,
        )
        auth = cls(tokens=tokens, users=users, api_keys=ApiKeyStore(db, clock=clock), throttle=throttle)
        auth._db = db
        return auth

    def close(self) -> None:
        if self._db is not None:
            self._db.close()

    # --- authentication ----------------------------------------------------------------------

    def authenticate_header(self, authorization: str | None) -> Principal:
        """The principal an ``Authorization`` header value proves; ``Unauthorized`` (code
        UNAUTHORIZED) for a missing, malformed, unsupported or invalid one. Never raises anything
        else, whatever the input."""
        if not isinstance(authorization, str) or not authorization.strip():
            raise _refuse("missing Authorization header; send Authorization: Bearer <token>", "missing")
        if len(authorization) > MAX_HEADER_CHARS:
            raise _refuse("malformed Authorization header", "malformed")
        scheme, _, rest = authorization.strip().partition(" ")
        scheme = scheme.lower()
        rest = rest.strip()
        if scheme == "basic":
            credential = self._basic_credential(rest)
        elif scheme in _SCHEMES:
            credential = rest
        else:
            raise _refuse("unsupported Authorization scheme; send Authorization: Bearer <token>", "scheme")
        # split() == [credential]: no whitespace in it (the same characters as str.isspace), in C
        # rather than a generator over each of a JWT's ~200 characters
        if not credential or not credential.isascii() or credential.split() != [credential]:
            raise _refuse("malformed Authorization header", "malformed")
        return self.authenticate_credential(credential)

    @staticmethod
    def _basic_credential(value: str) -> str:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise _refuse("malformed Basic credentials", "malformed") from None
        user, _, password = decoded.partition(":")
        return password or user

    def authenticate_credential(self, credential: str) -> Principal:
        """A bare JWT or API key (for protocols that carry it outside the Authorization header)."""
        if not isinstance(credential, str) or not credential:
            raise _refuse("missing credentials", "missing")
        if looks_like_api_key(credential):
            return self.api_keys.verify(credential)
        principal = self.tokens.verify(credential)
        state = self.users.token_state(principal.sub)
        if state is None:
            raise _refuse("the token's user no longer exists", "revoked")
        if state.role != principal.role:
            raise _refuse("the user's role has changed; log in again", "revoked")
        if principal.issued_at is not None and principal.issued_at < state.valid_after:
            raise _refuse("the token predates a password or role change; log in again", "revoked")
        return principal

    # --- authorisation -----------------------------------------------------------------------

    def authorize(self, principal: Principal, scope: str) -> None:
        """``Forbidden`` unless ``principal``'s role grants ``scope`` ("read", "write" or "admin")."""
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}")
        if not role_allows(principal.role, scope):
            raise Forbidden(
                f"role {principal.role} may not {scope}" + (" (admin only)" if scope == "admin" else ""),
                details={"role": principal.role, "scope": scope},
            )

    def require(self, authorization: str | None, scope: str) -> Principal:
        """``authenticate_header`` then ``authorize``: the one call most routes need."""
        principal = self.authenticate_header(authorization)
        self.authorize(principal, scope)
        return principal

    # --- login -------------------------------------------------------------------------------

    def login(self, username: str, password: str, client_ip: str | None) -> tuple[str, int]:
        """``(token, expires_in)`` for a correct user name and password.

        ValidationError when a field is missing or not a string; RateLimited (Retry-After) while the
        user or the address is locked out after repeated failures; Unauthorized otherwise, with the
        same message for an unknown user and a wrong password."""
        if not isinstance(username, str) or not username:
            raise ValidationError("username is required", details={"field": "username"})
        if not isinstance(password, str) or not password:
            raise ValidationError("password is required", details={"field": "password"})
        self.throttle.check(username, client_ip)
        try:
            principal = self.users.authenticate(username, password)
        except Unauthorized:
            self.throttle.record_failure(username, client_ip)
            raise
        self.throttle.record_success(username, client_ip)
        return self.tokens.issue(principal.sub, principal.role)

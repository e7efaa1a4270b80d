"""Who is calling (a Principal) and what each role may do.

Roles and scopes are one small table so that the decision is visible in one place:

    scope   what it covers                                             admin  writer  reader
    read    queries, search, alert state and history                    yes    no      yes
    write   ingestion on every path (seed JSON API and the protocols)   yes    yes     no
    admin   rules, channels, users, API keys, /debug/profile/*          yes    no      no

A writer may not read: writers are mostly API keys on monitored hosts, and a stolen host key must not
read every other host's logs and traces. An account that needs both gets two credentials, or admin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Role = Literal["admin", "writer", "reader"]
Scope = Literal["read", "write", "admin"]
Kind = Literal["jwt", "api_key"]

ROLES: Final[tuple[Role, ...]] = ("admin", "writer", "reader")
SCOPES: Final[tuple[Scope, ...]] = ("read", "write", "admin")

ROLE_SCOPES: Final[dict[str, frozenset[str]]] = {
    "admin": frozenset({"read", "write", "admin"}),
    "writer": frozenset({"write"}),
    "reader": frozenset({"read"}),
}


def is_role(value: object) -> bool:
    return isinstance(value, str) and value in ROLE_SCOPES


def role_allows(role: str, scope: str) -> bool:
    """True when ``role`` grants ``scope``; unknown roles and scopes grant nothing."""
    return scope in ROLE_SCOPES.get(role, frozenset())


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    ``sub`` is the user name (JWT) or the API key's name; ``token_id`` is the JWT's ``jti`` or the API
    key's id, safe to log (it is not a secret). ``issued_at``/``expires_at`` are epoch seconds for JWTs.
    """

    sub: str
    role: str
    kind: Kind = "jwt"
    token_id: str = ""
    issued_at: int | None = None
    expires_at: int | None = None

    def rate_limit_key(self) -> str:
        """The key the rate limiter counts this caller under (kind-qualified so names never collide)."""
        return f"{self.kind}:{self.sub}"

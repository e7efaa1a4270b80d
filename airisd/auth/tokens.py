"""Issuing and verifying the daemon's JWTs.

Verification pins the one configured algorithm (so ``alg: none`` and HS/RS confusion are refused),
requires every claim the daemon issues, and checks times against an injected clock with a small
leeway. Every failure is an ``Unauthorized`` whose message names the reason but never the token.

HS* tokens (the default) are signed and checked by ``hsjwt`` (hmac + hashlib); PyJWT, which imports
``cryptography`` (~9 MB of idle RSS), is imported only when an RS/ES key pair is configured.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any, Final

from airisd.auth import hsjwt
from airisd.auth.principal import Principal, is_role
from airisd.auth.secrets import ALGORITHMS, HMAC_ALGORITHMS, JwtKeys
from airisd.errors import ConfigError, Unauthorized

REQUIRED_CLAIMS: Final = ("iss", "sub", "iat", "nbf", "exp", "jti", "role")
MAX_TOKEN_CHARS: Final = 8192
VERIFIED_CACHE_SIZE: Final = 10_000
MAX_SUB_CHARS: Final = 256
MAX_TTL_SECS: Final = 30 * 86400
DEFAULT_LEEWAY_SECS: Final = 5

Clock = Callable[[], float]


def _refuse(message: str, reason: str) -> Unauthorized:
    return Unauthorized(message, details={"reason": reason})


class TokenService:
    """Signs and checks bearer JWTs with one pinned algorithm.

    ``secret_or_keys`` is an HMAC secret (bytes, for HS*) or a ``JwtKeys`` from ``load_jwt_keys``.
    ``clock`` returns epoch seconds (``time.time``); tests pass a fake one.
    """

    def __init__(
        self,
        secret_or_keys: bytes | JwtKeys,
        *,
        algorithm: str | None = None,
        issuer: str = "airisd",
        ttl_secs: int = 3600,
        clock: Clock = time.time,
        leeway_secs: int = DEFAULT_LEEWAY_SECS,
    ) -> None:
        if isinstance(secret_or_keys, JwtKeys):
            if algorithm is not None and algorithm != secret_or_keys.algorithm:
                raise ConfigError(
                    f"jwt_algorithm {algorithm} does not match the keys loaded "
                    f"for {secret_or_keys.algorithm}",
                    details={"key": "jwt_algorithm"},
                )
            keys = secret_or_keys
        else:
            algorithm = algorithm or "HS256"
            if algorithm not in HMAC_ALGORITHMS:
                raise ConfigError(
                    f"jwt_algorithm {algorithm} needs a key pair, not a secret",
                    details={"key": "jwt_algorithm"},
                )
            keys = JwtKeys(algorithm, bytes(secret_or_keys), bytes(secret_or_keys))
        if keys.algorithm not in ALGORITHMS:
            raise ConfigError(
                f"jwt_algorithm {keys.algorithm!r} is not supported", details={"key": "jwt_algorithm"}
            )
        if isinstance(ttl_secs, bool) or not isinstance(ttl_secs, int) or not 1 <= ttl_secs <= MAX_TTL_SECS:
            raise ConfigError(
                f"token ttl_secs must be an integer from 1 to {MAX_TTL_SECS}", details={"key": "ttl_secs"}
            )
        if not 0 <= leeway_secs <= 300:
            raise ConfigError("token leeway_secs must be from 0 to 300", details={"key": "leeway_secs"})
        self._check_key(keys)
        self.algorithm: str = keys.algorithm
        self.issuer = issuer
        self.ttl_secs = ttl_secs
        self.leeway_secs = leeway_secs
        self._keys = keys
        self._clock = clock
        self._hmac = keys.algorithm in HMAC_ALGORITHMS
        self._jwt: Any = None
        if not self._hmac:
            import jwt  # RS/ES only: PyJWT and cryptography are not loaded for HS* tokens

            self._jwt = jwt.PyJWT(options={"enforce_minimum_key_length": True})
        self._verified: dict[str, dict[str, Any]] = {}
        # tokens whose claims passed every check: the principal (immutable), exp, nbf and iat
        self._principals: dict[str, tuple[Principal, int, int, int]] = {}

    @staticmethod
    def _check_key(keys: JwtKeys) -> None:
        """Fail at start, not at the first login, when the key does not fit the algorithm."""
        if keys.algorithm in HMAC_ALGORITHMS:
            TokenService._check_hmac_key(keys)
            return
        from jwt.algorithms import get_default_algorithms

        alg = get_default_algorithms()[keys.algorithm]
        try:
            prepared = alg.prepare_key(keys.signing_key)
            alg.prepare_key(keys.verification_key)
        except Exception:
            raise ConfigError(
                f"the JWT key does not fit jwt_algorithm {keys.algorithm} "
                f"(an HMAC secret must be random bytes, "
                f"not a PEM key)",
                details={"key": "jwt_algorithm"},
            ) from None
        problem = alg.check_key_length(prepared)
        if problem:
            raise ConfigError(
                f"the JWT key is too weak for {keys.algorithm}: {problem}", details={"key": "JWT_SECRET"}
            )

    @staticmethod
    def _check_hmac_key(keys: JwtKeys) -> None:
        for key in (keys.signing_key, keys.verification_key):
            if isinstance(key, str):
                key = key.encode()
            problem = hsjwt.key_problem(key, keys.algorithm) if isinstance(key, bytes) else ("unfit", "")
            if problem is None:
                continue
            if problem[0] == "weak":
                raise ConfigError(
                    f"the JWT key is too weak for {keys.algorithm}: {problem[1]}", details={"key": "JWT_SECRET"}
                )
            raise ConfigError(
                f"the JWT key does not fit jwt_algorithm {keys.algorithm} "
                f"(an HMAC secret must be random bytes, "
                f"not a PEM key)",
                details={"key": "jwt_algorithm"},
            )

    def __repr__(self) -> str:
        return f"TokenService(algorithm={self.algorithm!r}, issuer={self.issuer!r}, ttl_secs={self.ttl_secs})"

    def issue(self, sub: str, role: str) -> tuple[str, int]:
        """A signed token for ``sub`` with ``role``, and its lifetime in seconds (``expires_in``)."""
        if not isinstance(sub, str) or not sub or len(sub) > MAX_SUB_CHARS:
            raise ValueError("sub must be a non-empty string of at most 256 characters")
        if not is_role(role):
            raise ValueError(f"unknown role {role!r}")
        now = int(self._clock())
        claims = {
            "iss": self.issuer,
            "sub": sub,
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl_secs,
            "jti": secrets.token_hex(16),
            "role": role,
        }
        if self._hmac:
            token = hsjwt.encode(claims, self._hmac_key(self._keys.signing_key), self.algorithm)
        else:
            token = self._jwt.encode(claims, self._keys.signing_key, algorithm=self.algorithm)
        return token, self.ttl_secs

    def verify(self, token: str) -> Principal:
        """The principal a valid token names; ``Unauthorized`` for anything else."""
        if not isinstance(token, str) or not token:
            raise _refuse("missing token", "missing")
        if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            raise _refuse("malformed token", "malformed")
        # A signature check costs tens of µs; a token seen before (and verified then) is taken from
        # a bounded cache, and once its claims passed (they cannot change), so is its principal.
        # The times are still checked every time, and revocation by the caller.
        hit = self._principals.get(token)
        if hit is not None:  # its claims passed _check_claims before: only the time has changed
            principal, exp, nbf, iat = hit
            self._check_times(exp, nbf, iat)
            return principal
        claims = self._verified.get(token)
        if claims is None:
            claims = self._decode(token)
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.clear()
            self._verified[token] = claims
        principal = self._check_claims(claims)
        if len(self._principals) >= VERIFIED_CACHE_SIZE:
            self._principals.clear()
        self._principals[token] = (principal, claims["exp"], claims["nbf"], claims["iat"])
        return principal

    @staticmethod
    def _hmac_key(key: bytes | str) -> bytes:
        return key.encode() if isinstance(key, str) else key

    def _decode(self, token: str) -> dict[str, Any]:
        if self._hmac:
            return self._decode_hmac(token)
        import jwt

        try:
            return self._jwt.decode(
                token,
                self._keys.verification_key,
                algorithms=[self.algorithm],
                issuer=self.issuer,
                options={
                    "require": list(REQUIRED_CLAIMS),
                    # times are checked in _check_claims against the injected clock
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.MissingRequiredClaimError as exc:
            claim = exc.claim if exc.claim in REQUIRED_CLAIMS else "a required"
            raise _refuse(f"token lacks the {claim} claim", "missing_claim") from None
        except jwt.InvalidSignatureError:
            raise _refuse("token signature is invalid", "signature") from None
        except jwt.InvalidAlgorithmError:
            raise _refuse(
                f"token algorithm is not accepted (expected {self.algorithm})", "algorithm"
            ) from None
        except jwt.InvalidIssuerError:
            raise _refuse("token issuer is not accepted", "issuer") from None
        except jwt.InvalidAudienceError:
            raise _refuse("token audience is not accepted", "audience") from None
        except jwt.DecodeError:
            raise _refuse("malformed token", "malformed") from None
        except (jwt.PyJWTError, ValueError, TypeError, KeyError, RecursionError, OverflowError):
            # fail closed on whatever else a hostile token provokes inside the decoder
            raise _refuse("token is invalid", "invalid") from None

    def _decode_hmac(self, token: str) -> dict[str, Any]:
        try:
            return hsjwt.decode(
                token,
                self._hmac_key(self._keys.verification_key),
                self.algorithm,
                issuer=self.issuer,
                required=REQUIRED_CLAIMS,
            )
        except hsjwt.TokenError as exc:
            if exc.reason == "missing_claim":
                claim = exc.claim if exc.claim in REQUIRED_CLAIMS else "a required"
                raise _refuse(f"token lacks the {claim} claim", "missing_claim") from None
            if exc.reason == "algorithm":
                raise _refuse(
                    f"token algorithm is not accepted (expected {self.algorithm})", "algorithm"
                ) from None
            raise _refuse(str(exc), exc.reason) from None
        except (ValueError, TypeError, KeyError, RecursionError, OverflowError):
            # fail closed on whatever else a hostile token provokes inside the decoder
            raise _refuse("token is invalid", "invalid") from None

    def _check_times(self, exp: int, nbf: int, iat: int) -> None:
        """Refuse a token outside its lifetime at the clock's time."""
        now = self._clock()
        if exp <= now - self.leeway_secs:
            raise _refuse("token has expired", "expired")
        if nbf > now + self.leeway_secs or iat > now + self.leeway_secs:
            raise _refuse("token is not yet valid", "not_yet_valid")

    def _check_claims(self, claims: dict[str, Any]) -> Principal:
        times: dict[str, int] = {}
        for name in ("iat", "nbf", "exp"):
            value = claims[name]
            if isinstance(value, bool) or not isinstance(value, int):
                raise _refuse(f"token {name} claim must be an integer", "malformed")
            times[name] = value
        self._check_times(times["exp"], times["nbf"], times["iat"])
        sub, role, jti = claims["sub"], claims["role"], claims["jti"]
        if not isinstance(sub, str) or not sub or len(sub) > MAX_SUB_CHARS:
            raise _refuse("token sub claim is invalid", "malformed")
        if not is_role(role):
            raise _refuse("token role claim is invalid", "malformed")
        if not isinstance(jti, str) or not jti or len(jti) > 128:
            raise _refuse("token jti claim is invalid", "malformed")
        return Principal(sub, role, "jwt", jti, times["iat"], times["exp"])

"""Request rate limiting per client, and login throttling per user and per address.

``RateLimiter`` is GCRA (the token bucket written as one "theoretical arrival time" per client):
``limit`` requests may arrive at once, then one more every ``window/limit``; after a full idle
window the client is back to ``limit``. Times are integer nanoseconds inside, so exactly ``limit``
requests pass and the next is refused, with no float drift. Idle clients (whose bucket is full again)
are evicted, so memory tracks the clients active in the last window, capped at ``max_clients``.

``LoginThrottle`` counts failed logins per user name and per client address; from the
``max_failures``-th failure on, each further attempt must wait an exponentially growing lockout.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from airisd.errors import ConfigError, RateLimited

Clock = Callable[[], float]
NS: Final = 1_000_000_000


def _ns(seconds: float) -> int:
    return round(seconds * NS)


def _ceil_secs(ns: int) -> int:
    return max(0, -(-ns // NS))


@dataclass(frozen=True, slots=True)
class RateDecision:
    """What the HTTP layer needs: whether to serve, and the X-RateLimit-* / Retry-After values.

    ``reset_secs`` is the time until the client's allowance is full again; ``retry_after_secs`` is 0
    when allowed, else the time until one request would pass (at least 1).
    """

    allowed: bool
    limit: int
    remaining: int
    reset_secs: int
    retry_after_secs: int

    def headers(self) -> dict[str, str]:
        out = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_secs),
        }
        if not self.allowed:
            out["Retry-After"] = str(self.retry_after_secs)
        return out


class RateLimiter:
    """``limit`` requests per ``window_secs`` per client key (``API_RATE_LIMIT`` per minute).

    ``limit`` 0 disables limiting (``check`` always allows; ``enabled`` is False). ``clock`` is
    monotonic seconds; tests inject a fake one.
    """

    def __init__(
        self,
        limit: int,
        *,
        window_secs: float = 60.0,
        max_clients: int = 100_000,
        clock: Clock = time.monotonic,
    ) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ConfigError(
                f"API_RATE_LIMIT must be a whole number of requests per minute (0 disables), not {limit!r}",
                details={"key": "API_RATE_LIMIT"},
            )
        if not window_secs > 0 or max_clients < 1:
            raise ConfigError(
                "rate limit window_secs and max_clients must be positive", details={"key": "window_secs"}
            )
        self.limit = limit
        self.window_secs = window_secs
        self.max_clients = max_clients
        self._clock = clock
        self._window_ns = _ns(window_secs)
        self._interval_ns = max(1, self._window_ns // limit) if limit else 0
        self._tat: OrderedDict[str, int] = OrderedDict()  # client -> theoretical arrival time (ns)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def __len__(self) -> int:
        return len(self._tat)

    def check(self, client_key: str) -> RateDecision:
        """Count one request from ``client_key`` and say whether to serve it."""
        if not self.limit:
            return RateDecision(True, 0, 0, 0, 0)
        now = _ns(self._clock())
        with self._lock:
            self._evict_idle(now)
            tat = self._tat.get(client_key, now)
            if tat < now:
                tat = now
            new_tat = tat + self._interval_ns
            if new_tat - now > self._window_ns:
                allowed = False
                retry_ns = new_tat - self._window_ns - now
            else:
                allowed = True
                retry_ns = 0
                tat = new_tat
                self._tat[client_key] = tat
                self._tat.move_to_end(client_key)
                while len(self._tat) > self.max_clients:
                    self._tat.popitem(last=False)  # the least recently admitted client starts afresh
        backlog = tat - now
        remaining = max(0, (self._window_ns - backlog) // self._interval_ns)
        retry_after = 0 if allowed else max(1, _ceil_secs(retry_ns))
        return RateDecision(allowed, self.limit, remaining, _ceil_secs(backlog), retry_after)

    def _evict_idle(self, now: int) -> None:
        """Drop clients whose allowance is full again: they behave exactly like unseen clients.
        Entries are in admission order, so the stale ones are at the front."""
        tat = self._tat
        while tat:
            key = next(iter(tat))
            if tat[key] > now:
                break
            del tat[key]


@dataclass(slots=True)
class _Failures:
    count: int
    locked_until: float
    last_failure: float


class LoginThrottle:
    """Slows password guessing: per user name and per client address.

    After ``max_failures`` failures for a key, each further failure locks that key for
    ``base_lockout_secs * 2**(failures - max_failures)`` seconds, capped at ``max_lockout_secs``.
    A successful login clears the user's count (not the address's: one valid account must not reset
    a spraying address). Counts are forgotten after ``forget_after_secs`` without failures.
    """

    def __init__(
        self,
        *,
        max_failures: int = 5,
        base_lockout_secs: float = 1.0,
        max_lockout_secs: float = 900.0,
        forget_after_secs: float = 3600.0,
        max_entries: int = 100_000,
        clock: Clock = time.monotonic,
    ) -> None:
        if (
            max_failures < 1
            or base_lockout_secs <= 0
            or max_lockout_secs < base_lockout_secs
            or forget_after_secs < max_lockout_secs
            or max_entries < 1
        ):
            raise ConfigError("login throttle settings are inconsistent", details={"key": "login_throttle"})
        self.max_failures = max_failures
        self.base_lockout_secs = base_lockout_secs
        self.max_lockout_secs = max_lockout_secs
        self.forget_after_secs = forget_after_secs
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, _Failures] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _keys(username: str, client_ip: str | None) -> list[str]:
        keys = [f"user:{username.casefold()[:256]}"]
        if client_ip:
            keys.append(f"ip:{client_ip[:64]}")
        return keys

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, username: str, client_ip: str | None) -> None:
        """Raise ``RateLimited`` (with Retry-After) while the user or the address is locked out."""
        now = self._clock()
        with self._lock:
            wait = 0.0
            for key in self._keys(username, client_ip):
                entry = self._entries.get(key)
                if entry is not None and entry.locked_until > now:
                    wait = max(wait, entry.locked_until - now)
        if wait > 0:
            retry = max(1, math.ceil(wait))
            raise RateLimited(
                f"too many failed logins; try again in {retry} s",
                retry_after_secs=retry,
                details={"retry_after_secs": retry},
            )

    def record_failure(self, username: str, client_ip: str | None) -> None:
        now = self._clock()
        with self._lock:
            self._evict(now)
            for key in self._keys(username, client_ip):
                entry = self._entries.pop(key, None)
                if entry is None or now - entry.last_failure > self.forget_after_secs:
                    entry = _Failures(0, 0.0, now)
                entry.count += 1
                entry.last_failure = now
                if entry.count >= self.max_failures:
                    exponent = min(entry.count - self.max_failures, 62)
                    lockout = min(self.max_lockout_secs, self.base_lockout_secs * 2.0**exponent)
                    entry.locked_until = now + lockout
                self._entries[key] = entry  # re-inserted at the end: entries stay in failure order
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def record_success(self, username: str, client_ip: str | None) -> None:
        with self._lock:
            self._entries.pop(self._keys(username, None)[0], None)

    def _evict(self, now: float) -> None:
        entries = self._entries
        while entries:
            key, first = next(iter(entries.items()))
            if now - first.last_failure <= self.forget_after_secs:
                break  # entries are in failure order: the rest are more recent
            del entries[key]

"""Request rate limiting and login throttling, on a fake clock."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airisd.auth.ratelimit import LoginThrottle, RateLimiter
from airisd.errors import ConfigError, RateLimited


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, secs: float) -> None:
        self.t += secs


# --- RateLimiter -----------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 7, 60, 1000])
def test_limit_holds_exactly_and_recovers_after_the_window(limit: int) -> None:
    clock = FakeClock()
    limiter = RateLimiter(limit, clock=clock)
    decisions = [limiter.check("c") for _ in range(limit)]
    assert all(d.allowed for d in decisions)
    assert [d.remaining for d in decisions] == list(range(limit - 1, -1, -1))
    refused = limiter.check("c")
    assert not refused.allowed
    assert refused.remaining == 0 and refused.limit == limit
    assert 1 <= refused.retry_after_secs <= 60
    assert refused.headers()["Retry-After"] == str(refused.retry_after_secs)
    clock.advance(60)
    after = [limiter.check("c") for _ in range(limit)]
    assert all(d.allowed for d in after)  # the full allowance is back
    assert not limiter.check("c").allowed


def test_allowance_refills_one_request_per_interval() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, clock=clock)  # one per second
    for _ in range(60):
        limiter.check("c")
    refused = limiter.check("c")
    assert not refused.allowed and refused.retry_after_secs == 1
    clock.advance(0.999)
    assert not limiter.check("c").allowed
    clock.advance(0.001)
    assert limiter.check("c").allowed
    assert not limiter.check("c").allowed


def test_headers_of_an_allowed_request() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1000, clock=clock)
    decision = limiter.check("c")
    assert decision.headers() == {
        "X-RateLimit-Limit": "1000",
        "X-RateLimit-Remaining": "999",
        "X-RateLimit-Reset": "1",
    }
    assert decision.retry_after_secs == 0


def test_reset_counts_down_to_a_full_allowance() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock)
    for _ in range(10):
        last = limiter.check("c")
    assert last.reset_secs == 60
    clock.advance(30)
    assert limiter.check("c").reset_secs == 36  # 30 s of backlog left plus the 6 s this request costs


def test_clients_are_independent() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, clock=clock)
    assert limiter.check("a").allowed and limiter.check("a").allowed
    assert not limiter.check("a").allowed
    assert limiter.check("b").allowed


def test_zero_disables_and_bad_limits_are_refused() -> None:
    limiter = RateLimiter(0)
    assert not limiter.enabled
    assert all(limiter.check("c").allowed for _ in range(10_000))
    assert len(limiter) == 0
    for bad in (-1, 1.5, "1000", True):
        with pytest.raises(ConfigError) as info:
            RateLimiter(bad)  # type: ignore[arg-type]
        assert info.value.details["key"] == "API_RATE_LIMIT"


def test_idle_clients_are_evicted() -> None:
    clock = FakeClock()
    limiter = RateLimiter(100, clock=clock)
    for i in range(1000):
        limiter.check(f"client-{i}")
    assert len(limiter) == 1000
    clock.advance(0.5)  # not yet idle: each request costs 0.6 s of allowance
    limiter.check("new")
    assert len(limiter) == 1001
    clock.advance(0.1)  # the first thousand are full again, "new" still owes 0.5 s
    limiter.check("newer")
    assert len(limiter) == 2


def test_memory_is_bounded_by_max_clients() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, max_clients=50, clock=clock)
    for i in range(500):
        assert limiter.check(f"c{i}").allowed
    assert len(limiter) == 50


class BucketOracle:
    """A token bucket in exact rational arithmetic: capacity ``limit``, refilled at limit/window."""

    def __init__(self, limit: int, window: int) -> None:
        self.limit = limit
        self.rate = Fraction(limit, window)
        self.tokens: dict[str, Fraction] = {}
        self.seen: dict[str, Fraction] = {}

    def check(self, client: str, now: Fraction) -> bool:
        tokens = self.tokens.get(client, Fraction(self.limit))
        tokens = min(Fraction(self.limit), tokens + (now - self.seen.get(client, now)) * self.rate)
        self.seen[client] = now
        allowed = tokens >= 1
        self.tokens[client] = tokens - 1 if allowed else tokens
        return allowed


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([1, 2, 3, 4, 5, 6, 10, 12, 60, 100]),
    st.lists(st.tuples(st.integers(0, 3000), st.sampled_from("abc")), max_size=300),
)
def test_matches_an_exact_token_bucket(limit: int, events: list[tuple[int, str]]) -> None:
    """Brute-force oracle: the same decisions as a rational-arithmetic token bucket (times in ms)."""
    clock = FakeClock(0.0)
    limiter = RateLimiter(limit, clock=clock)
    oracle = BucketOracle(limit, 60)
    now_ms = 0
    for step_ms, client in events:
        now_ms += step_ms
        clock.t = now_ms / 1000
        decision = limiter.check(client)
        assert decision.allowed == oracle.check(client, Fraction(now_ms, 1000)), (now_ms, client)
        assert 0 <= decision.remaining < limit or (decision.remaining == 0 and not decision.allowed)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([1, 5, 60, 1000]), st.lists(st.integers(0, 5000), min_size=1, max_size=400))
def test_never_more_than_burst_plus_refill(limit: int, steps_ms: list[int]) -> None:
    clock = FakeClock(0.0)
    limiter = RateLimiter(limit, clock=clock)
    allowed = 0
    for step in steps_ms:
        clock.advance(step / 1000)
        allowed += limiter.check("c").allowed
    elapsed = sum(steps_ms) / 1000
    assert allowed <= limit + elapsed * limit / 60 + 1e-9


# --- LoginThrottle ---------------------------------------------------------------------------------


def test_five_failures_lock_with_exponential_backoff() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    for _ in range(4):
        throttle.check("admin", "10.0.0.1")
        throttle.record_failure("admin", "10.0.0.1")
    throttle.check("admin", "10.0.0.1")  # four failures: not yet locked
    throttle.record_failure("admin", "10.0.0.1")
    waits = []
    for _ in range(5):
        with pytest.raises(RateLimited) as info:
            throttle.check("admin", "10.0.0.1")
        waits.append(info.value.retry_after_secs)
        assert info.value.status == 429 and info.value.code == "RATE_LIMITED"
        clock.advance(info.value.retry_after_secs)
        throttle.check("admin", "10.0.0.1")  # the lockout has passed
        throttle.record_failure("admin", "10.0.0.1")
    assert waits == [1, 2, 4, 8, 16]


def test_lockout_is_capped() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(max_lockout_secs=60, clock=clock)
    for _ in range(40):
        throttle.record_failure("admin", None)
    with pytest.raises(RateLimited) as info:
        throttle.check("admin", None)
    assert info.value.retry_after_secs == 60


def test_user_lockout_applies_from_any_address_and_is_case_insensitive() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    for i in range(5):
        throttle.record_failure("admin", f"10.0.0.{i}")
    with pytest.raises(RateLimited):
        throttle.check("ADMIN", "192.168.1.1")
    throttle.check("alice", "192.168.1.1")


def test_address_spraying_many_users_is_locked() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    for i in range(5):
        throttle.record_failure(f"user{i}", "203.0.113.9")
    with pytest.raises(RateLimited):
        throttle.check("user99", "203.0.113.9")
    throttle.check("user99", "198.51.100.1")  # the same name from elsewhere is fine


def test_success_clears_the_user_but_not_the_address() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    for _ in range(4):
        throttle.record_failure("alice", "203.0.113.9")
    throttle.record_success("alice", "203.0.113.9")
    throttle.record_failure("alice", "198.51.100.1")
    throttle.check("alice", "198.51.100.1")  # the user's count restarted at 1
    throttle.record_failure("bob", "203.0.113.9")  # the address's fifth failure
    with pytest.raises(RateLimited):
        throttle.check("carol", "203.0.113.9")


def test_failures_are_forgotten_after_a_quiet_period() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(forget_after_secs=3600, clock=clock)
    for _ in range(4):
        throttle.record_failure("alice", None)
    clock.advance(3601)
    throttle.record_failure("alice", None)  # counts as the first failure again
    throttle.check("alice", None)
    assert len(throttle) == 1


def test_throttle_memory_is_bounded() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(max_entries=100, clock=clock)
    for i in range(1000):
        throttle.record_failure(f"u{i}", f"10.0.{i // 256}.{i % 256}")
    assert len(throttle) == 100
    clock.advance(4000)
    throttle.record_failure("late", None)
    assert len(throttle) == 1


def test_inconsistent_throttle_settings_are_refused() -> None:
    with pytest.raises(ConfigError):
        LoginThrottle(max_failures=0)
    with pytest.raises(ConfigError):
        LoginThrottle(max_lockout_secs=7200, forget_after_secs=3600)

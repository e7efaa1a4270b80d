"""processors.redact (masks secrets before storage) and processors.sample (head sampling by trace
id), tested as units: examples, properties over generated input, and config validation."""

from __future__ import annotations

import math
import random
import re
from pathlib import Path
from typing import Any

import pytest
from airisd_plugins.processors.redact import RedactConfig, RedactProcessor
from airisd_plugins.processors.sample import SampleConfig, SampleProcessor, trace_hash
from hypothesis import assume, given
from hypothesis import strategies as st

from airisd.daemon import plugin_config
from airisd.errors import ConfigError
from airisd.model import Batch, LogRecord, Signal, Span, SpanLog
from tests.conftest import make_ctx


def redactor(**raw: Any) -> RedactProcessor:
    return RedactProcessor(
        plugin_config(RedactProcessor, raw, where="[[processors.redact]]"), make_ctx(Path("/"))
    )


def sampler(**raw: Any) -> SampleProcessor:
    return SampleProcessor(
        plugin_config(SampleProcessor, raw, where="[[processors.sample]]"), make_ctx(Path("/"))
    )


# -- redact: the built-ins -------------------------------------------------------------------------

REDACT_EXAMPLES = [
    (
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJl",
        "Authorization: Bearer [REDACTED]",
    ),
    ("retry with token=0123456789abcdef now", "retry with token=[REDACTED] now"),
    ("token: abc", "token: abc"),  # too short to be a credential
    (
        "connect postgres://app:s3cr3t@db.internal:5432/users",
        "connect postgres://app:[REDACTED]@db.internal:5432/users",
    ),
    ("GET https://bob:pa55@api.example.com/v1", "GET https://bob:[REDACTED]@api.example.com/v1"),
    ("login failed password=hunter2 for admin", "login failed password=[REDACTED] for admin"),
    ('config {"api_key": "abc def"}', 'config {"api_key": [REDACTED]}'),
    ("PWD: x1;next", "PWD: [REDACTED];next"),
    ("mail alice.smith+tag@example.co.uk today", "mail [EMAIL] today"),
    ("card 4111 1111 1111 1111 declined", "card [CARD] declined"),
    ("card 4111-1111-1111-1111 declined", "card [CARD] declined"),
    ("amex 378282246310005.", "amex [CARD]."),
    ("order 1234567890123 shipped", "order 1234567890123 shipped"),  # 13 digits, not Luhn-valid
    ("trace 79927398713 id", "trace 79927398713 id"),  # Luhn-valid but only 11 digits
    ("id 12345678901234567890123 kept", "id 12345678901234567890123 kept"),  # too long for a card
    ("nothing to see here", "nothing to see here"),
]


@pytest.mark.parametrize(("text", "expected"), REDACT_EXAMPLES)
def test_builtin_patterns(text: str, expected: str) -> None:
    assert redactor().scrub(text) == expected


def luhn_check_digit(payload: str) -> int:
    """The digit that makes payload + digit pass the Luhn check (an independent implementation)."""
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d // 10 + d % 10
    return (10 - total % 10) % 10


def passes_luhn(number: str) -> bool:
    return luhn_check_digit(number[:-1]) == int(number[-1])


def grouped(number: str, sep: str) -> str:
    return sep.join(number[i : i + 4] for i in range(0, len(number), 4))


card_payloads = st.integers(12, 18).flatmap(lambda n: st.text("0123456789", min_size=n, max_size=n))
separators = st.sampled_from(["", " ", "-"])


@given(payload=card_payloads, sep=separators)
def test_luhn_valid_card_numbers_are_masked(payload: str, sep: str) -> None:
    number = payload + str(luhn_check_digit(payload))
    assert redactor().scrub(f"paid with {grouped(number, sep)} today") == "paid with [CARD] today"


@given(payload=card_payloads, sep=separators, delta=st.integers(1, 9))
def test_digit_runs_failing_luhn_are_kept(payload: str, sep: str, delta: int) -> None:
    """Any run of 13-19 digits without separators; with separators, runs of up to 16 digits, which
    have no shorter part of 13 or more digits that could itself be a card (see the next test)."""
    if sep:
        payload = payload[:15]
    number = payload + str((luhn_check_digit(payload) + delta) % 10)
    text = f"order {grouped(number, sep)} shipped"
    assert redactor().scrub(text) == text


@given(payload=card_payloads, extra=st.text("0123456789", min_size=2, max_size=4))
def test_a_card_next_to_another_number_is_still_masked(payload: str, extra: str) -> None:
    """A card followed by a CVV or an expiry month: the card's digits must not leak because the
    run as a whole fails the Luhn check."""
    number = payload + str(luhn_check_digit(payload))
    assume(not passes_luhn(number + extra))
    out = redactor().scrub(f"card {grouped(number, ' ')} {extra} ok")
    assert number[:6] not in out.replace(" ", "") and "[CARD]" in out


emails = st.from_regex(r"[a-z][a-z0-9._+\-]{0,15}@[a-z][a-z0-9\-]{0,10}\.(com|org|co\.uk|io)", fullmatch=True)


@given(email=emails)
def test_email_addresses_are_masked(email: str) -> None:
    assert redactor().scrub(f"user {email} signed up") == "user [EMAIL] signed up"


secrets_text = st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=20)


@given(
    secret=secrets_text,
    key=st.sampled_from(["password", "passwd", "pwd", "secret", "api_key", "API-KEY"]),
    sep=st.sampled_from(["=", ": ", " = "]),
)
def test_password_fields_never_leak(secret: str, key: str, sep: str) -> None:
    out = redactor().scrub(f"attempt {key}{sep}{secret} done")
    assert out == f"attempt {key}{sep}[REDACTED] done"


@given(text=st.text(max_size=200))
def test_scrub_never_fails_and_is_idempotent(text: str) -> None:
    r = redactor()
    once = r.scrub(text)
    assert r.scrub(once) == once


def test_custom_patterns_run_after_the_builtins_and_are_counted() -> None:
    r = redactor(
        builtins=["email"],
        patterns=[
            {"name": "ssn", "regex": r"\b\d{3}-\d{2}-\d{4}\b", "replacement": "[SSN]"},
            {"regex": r"(session=)\w+", "replacement": r"\1[HIDDEN]"},
        ],
    )
    out = r.scrub("ssn 123-45-6789 of bob@example.com session=abc123 password=kept")
    assert out == "ssn [SSN] of [EMAIL] session=[HIDDEN] password=kept"  # password_field not enabled
    assert (r.m_masked.get("ssn"), r.m_masked.get("email"), r.m_masked.get("pattern1")) == (1, 1, 1)
    assert redactor(builtins=[]).scrub("bob@example.com") == "bob@example.com"


def test_process_scrubs_every_text_field_of_logs() -> None:
    record = LogRecord(
        ts=1,
        level="ERROR",
        message="login bob@example.com password=pw1",
        stack_trace="at connect(postgres://u:pw2@db/x)",
        labels={"owner": "carol@example.com"},
        attributes={"card": "4111111111111111", "count": 4111111111111111, "ok": True},
        user_id="bob@example.com",
    )
    out = redactor().process(Batch(Signal.LOGS, [record])).items[0]
    assert out.message == "login [EMAIL] password=[REDACTED]"
    assert out.stack_trace == "at connect(postgres://u:[REDACTED]@db/x)"
    assert out.labels == {"owner": "[EMAIL]"}
    assert out.attributes == {"card": "[CARD]", "count": 4111111111111111, "ok": True}  # numbers untouched
    assert out.user_id == "bob@example.com"  # ids are identifiers, searched whole: left alone


def span(trace_id: str = "t1", span_id: str = "s1", *, error: bool = False, **kw: Any) -> Span:
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        operation_name="op",
        service_name="svc",
        start_ts=0,
        end_ts=1,
        error=error,
        **kw,
    )


def test_process_scrubs_span_tags_and_events() -> None:
    s = span(
        tags={"http.url": "https://u:pw@h/x", "http.status_code": 500, "user": "dave@example.com"},
        logs=[
            SpanLog(
                ts=1,
                message="token=abcdefgh12345678",
                fields={"exception.message": "bad password=hunter2", "attempt": 2},
            )
        ],
    )
    out = redactor().process(Batch(Signal.TRACES, [s])).items[0]
    assert out.tags == {"http.url": "https://u:[REDACTED]@h/x", "http.status_code": 500, "user": "[EMAIL]"}
    assert out.logs[0].message == "token=[REDACTED]"
    # OpenTelemetry puts exception messages in event attributes: they are scrubbed too
    assert out.logs[0].fields == {"exception.message": "bad password=[REDACTED]", "attempt": 2}


def test_values_of_secret_named_keys_are_masked_whole() -> None:
    record = LogRecord(
        ts=1,
        level="INFO",
        message="m",
        labels={"api-key": "k1", "env": "prod"},
        attributes={
            "password": "hunter2",
            "db.password": "pw",
            "client_secret": "s",
            "retries": 3,
            "passwordless": "yes",
        },
    )
    out = redactor().process(Batch(Signal.LOGS, [record])).items[0]
    assert out.labels == {"api-key": "[REDACTED]", "env": "prod"}
    assert out.attributes == {
        "password": "[REDACTED]",
        "db.password": "[REDACTED]",
        "client_secret": "[REDACTED]",
        "retries": 3,
        "passwordless": "yes",
    }
    s = span(tags={"db.password": "pw", "db.user": "app"})
    assert redactor().process(Batch(Signal.TRACES, [s])).items[0].tags == {
        "db.password": "[REDACTED]",
        "db.user": "app",
    }
    plain = redactor(builtins=["email"]).process(Batch(Signal.TRACES, [span(tags={"password": "pw"})]))
    assert plain.items[0].tags == {"password": "pw"}  # only with the password_field built-in


def test_signals_option_limits_what_is_scrubbed() -> None:
    r = redactor(signals=["logs"])
    s = span(tags={"user": "dave@example.com"})
    assert r.process(Batch(Signal.TRACES, [s])).items[0].tags == {"user": "dave@example.com"}


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"builtins": ["ssn"]}, "unknown pattern 'ssn'"),
        ({"patterns": [{"regex": "(unclosed"}]}, "patterns[0].regex"),
        ({"patterns": [{"replacement": "x"}]}, "regex"),
        ({"patterns": [{"regex": "x", "colour": "red"}]}, "colour"),
        ({"signals": ["metrics"]}, "metrics"),
        ({"builtin": ["email"]}, "builtin"),
    ],
)
def test_bad_redact_config_is_refused(raw: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        redactor(**raw)
    assert needle in str(info.value) and "[[processors.redact]]" in str(info.value)


# -- sample ------------------------------------------------------------------------------------------

trace_ids = st.one_of(
    st.text("0123456789abcdef", min_size=32, max_size=32),
    st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
)
rates = st.floats(0.0, 1.0)


@given(tid=trace_ids, rate=rates, n_spans=st.integers(2, 12), split=st.integers(1, 11))
def test_every_span_of_a_trace_shares_one_decision(tid: str, rate: float, n_spans: int, split: int) -> None:
    """Across batches and across processor instances (another airisd, or after a restart)."""
    spans = [span(tid, f"s{i}") for i in range(n_spans)]
    first, second = sampler(rate=rate), sampler(rate=rate)
    kept = first.process(Batch(Signal.TRACES, spans[:split])).items
    kept += second.process(Batch(Signal.TRACES, spans[split:])).items
    assert len(kept) in (0, n_spans)
    assert (len(kept) == n_spans) == (trace_hash(tid) < int(rate * 2**64))


@given(tid=trace_ids, low=rates, high=rates)
def test_a_trace_kept_at_a_rate_is_kept_at_any_higher_rate(tid: str, low: float, high: float) -> None:
    low, high = min(low, high), max(low, high)
    if sampler(rate=low).keep(span(tid)):
        assert sampler(rate=high).keep(span(tid))


@pytest.mark.parametrize("rate", [0.0, 0.01, 0.1, 0.5, 0.9, 1.0])
def test_kept_fraction_is_near_the_rate(rate: float) -> None:
    rng = random.Random(int(rate * 1000))
    n = 20_000
    s = sampler(rate=rate)
    kept = sum(s.keep(span(f"{rng.getrandbits(128):032x}")) for _ in range(n))
    sigma = math.sqrt(n * rate * (1 - rate))
    assert abs(kept - n * rate) <= 5 * sigma + 1e-9, (kept, n * rate)


def test_error_spans_are_always_kept() -> None:
    s = sampler(rate=0.0)
    batch = s.process(Batch(Signal.TRACES, [span("t", "ok"), span("t", "bad", error=True), span("u", "x")]))
    assert [x.span_id for x in batch.items] == ["bad"]
    strict = sampler(rate=0.0, keep_errors=False)
    assert strict.process(Batch(Signal.TRACES, [span("t", "bad", error=True)])).items == []
    assert len(sampler().process(Batch(Signal.TRACES, [span("t", str(i)) for i in range(5)])).items) == 5


def test_rate_may_come_from_the_environment_as_text() -> None:
    """``rate = "${JAEGER_SAMPLING_RATE:-1.0}"`` reaches the config as a string."""
    assert sampler(rate="0.1").config.rate == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"rate": 1.5}, "rate must be between 0.0 and 1.0, got 1.5"),
        ({"rate": -0.1}, "rate must be between"),
        ({"rate": "lots"}, "rate"),
        ({"rate": float("nan")}, "rate"),
        ({"keep_errors": "maybe"}, "keep_errors"),
        ({"ratio": 0.5}, "ratio"),
    ],
)
def test_bad_sample_config_is_refused(raw: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        sampler(**raw)
    assert needle in str(info.value)


def test_config_classes_are_the_plugins() -> None:
    assert RedactProcessor.Config is RedactConfig and SampleProcessor.Config is SampleConfig
    assert re.fullmatch(r"[0-9]+", str(trace_hash("abc")))


def _scrub_without_prechecks(r: RedactProcessor, text: str) -> str:
    """The reference: every regex over every text, as before the literal pre-checks."""
    if not text:
        return text
    for name, rx, rep in r.rules:
        text = rx.sub(r._card if name == "card_number" else rep, text)
    return text


fragments = st.sampled_from([
    "Bearer abcdefgh12345", "token=zzzzzzzzzz", "TOKEN: 12345678", "https://u:p4ss@h.example/x", "a@b.io",
    "user@example.com", "password=hunter2", "PWD: x", "api-key='k'", "secret \"s\"", "4111 1111 1111 1111",
    "4111-1111-1111-1111 12/27", "1234567890123", "ſecret=x", "PAſſWORD: y", "٤١١١١١١١١١١١١١١١", " ", "\n",
    "://", "@", "=", ":", "ok", "12", "x" * 30])


@given(parts=st.lists(st.one_of(fragments, st.text(max_size=12)), max_size=12))
def test_prechecks_never_change_what_is_masked(parts: list[str]) -> None:
    text = "".join(parts)
    r = redactor()
    assert r.scrub(text) == _scrub_without_prechecks(r, text)


_texts_st = st.lists(st.one_of(fragments, st.text(max_size=12)), max_size=4).map("".join)
_keys_st = st.one_of(st.sampled_from(["host", "password", "db.pwd", "api_key", "note"]), st.text(max_size=6))


@given(records=st.lists(st.tuples(_texts_st, _texts_st, st.dictionaries(_keys_st, _texts_st, max_size=3),
                                  st.dictionaries(_keys_st, st.one_of(_texts_st, st.integers()), max_size=3)),
                        max_size=6),
       spans=st.lists(st.tuples(st.dictionaries(_keys_st, st.one_of(_texts_st, st.booleans()), max_size=3),
                                st.lists(st.tuples(_texts_st, st.dictionaries(_keys_st, _texts_st, max_size=2)),
                                         max_size=2)), max_size=4))
def test_the_whole_batch_check_never_changes_what_is_masked(
        records: list[tuple[str, str, dict[str, str], dict[str, Any]]],
        spans: list[tuple[dict[str, Any], list[tuple[str, dict[str, str]]]]]) -> None:
    """A batch skipped by the one-scan check is one the per-text path would leave as it is."""
    def logs() -> Batch:
        return Batch(Signal.LOGS, [LogRecord(ts=1, level="INFO", message=m, stack_trace=st_, labels=dict(lb),
                                             attributes=dict(at)) for m, st_, lb, at in records])

    def traces() -> Batch:
        return Batch(Signal.TRACES, [
            Span(trace_id="a" * 32, span_id="b" * 16, operation_name="op", service_name="s", start_ts=1, end_ts=2,
                 tags=dict(tags), logs=[SpanLog(ts=1, message=m, fields=dict(f)) for m, f in events])
            for tags, events in spans])

    fast, slow = redactor(), redactor()
    slow._nothing_to_mask = lambda batch: False  # type: ignore[method-assign]
    for make in (logs, traces):
        assert fast.process(make()).items == slow.process(make()).items


@pytest.mark.parametrize("builtin", ["bearer_token", "url_password", "password_field", "email", "card_number"])
@given(texts=st.lists(_texts_st, min_size=1, max_size=4))
def test_a_batch_with_something_to_mask_is_never_skipped(builtin: str, texts: list[str]) -> None:
    r = redactor(builtins=[builtin])
    batch = Batch(Signal.LOGS, [LogRecord(ts=1, level="INFO", message=t) for t in texts])
    if any(_scrub_without_prechecks(r, t) != t for t in texts):
        assert not r._nothing_to_mask(batch)

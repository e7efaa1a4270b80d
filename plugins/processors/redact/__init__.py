"""Mask secrets and personal data in logs (and span tags) before anything stores them."""

from __future__ import annotations

import re
from typing import Any, ClassVar

import msgspec

from airisd.hookspecs import hookimpl
from airisd.model import Batch, Signal
from airisd.plugin import Plugin, PluginConfig, Processor


def _is_card(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    return 13 <= len(digits) <= 19 and _luhn_ok(digits)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# An attribute, label or tag whose name (its last dotted part) is one of these holds a secret.
_SECRET_KEY = re.compile(r"(?i)(?:.*[._-])?(password|passwd|pwd|secret|api[_-]?key)$")

# name -> (pattern, replacement). Replacements may use groups to keep the harmless part visible.
BUILTIN_PATTERNS: dict[str, tuple[str, str]] = {
    "bearer_token": (r"(?i)\b(bearer|token)(\s+|=|:\s*)[A-Za-z0-9\-._~+/]{8,}=*", r"\1\2[REDACTED]"),
    "url_password": (r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s:/@]+:)[^\s@/]+@", r"\1[REDACTED]@"),
    # The optional '"' after the name catches JSON text: {"password": "x"}.
    "password_field": (
        r"(?i)\b(password|passwd|pwd|secret|api[_-]?key)(\"?\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&]+)",
        r"\1\2[REDACTED]"),
    "email": (r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b", "[EMAIL]"),
    "card_number": (r"\b(?:\d[ -]?){12,18}\d\b", "[CARD]"),
}


_DIGITS = b"0123456789"
# Every literal some built-in's pre-check looks for (below); most lines hold none of them, and one
# scan for all is what lets scrub() skip every built-in at once.
_ANY_LITERAL = re.compile("bearer|token|pass|pwd|secret|api|@")
_MIN_CARD_DIGITS = 13  # the card pattern needs 13 digits at least


def _digit_count(ascii_text: str) -> int:
    b = ascii_text.encode("ascii")
    return len(b) - len(b.translate(None, _DIGITS))


def _may_match(name: str, text: str, low: str) -> bool:
    """A cheap test that is true whenever the built-in pattern ``name`` could match the ASCII ``text``
    (``low`` is ``text.lower()``): most log lines hold none of these literals, and a regex scan of every line
    for every pattern was the processor's whole cost. Custom patterns always run."""
    if name == "bearer_token":
        return "bearer" in low or "token" in low
    if name == "url_password":
        return "@" in text and "://" in text
    if name == "password_field":
        return "pass" in low or "pwd" in low or "secret" in low or ("api" in low and "key" in low)
    if name == "email":
        return "@" in text
    if name == "card_number":
        return _digit_count(text) >= _MIN_CARD_DIGITS
    return True


# The card pattern needs 13 digits with at most separators (" ", "-") between them. Deleting the
# separators and marking digits 1, everything else 0 (newlines too), it needs "1" * 13: one
# translate and a substring search (a regex scan for the run took ~4 ms for 1000 log lines).
_DIGIT_MARKS = bytes(0x31 if 0x30 <= c <= 0x39 else 0x30 for c in range(256))
_CARD_DIGITS = b"1" * _MIN_CARD_DIGITS


def _batch_may_match(name: str, text: str, low: str) -> bool:
    """_may_match over the newline-joined ASCII texts of a batch: true whenever it is true for one of
    them (each test is a substring search, so a text's hit is the joined text's hit)."""
    if name == "card_number":
        return _CARD_DIGITS in text.encode("ascii").translate(_DIGIT_MARKS, b" -")
    return _may_match(name, text, low)


def _texts(batch: Batch) -> tuple[list[Any], set[str]]:
    """Every value scrub() would look at in a batch, and the keys _scrub_value would test."""
    texts: list[Any] = []
    keys: set[str] = set()
    if batch.signal is Signal.LOGS:
        for r in batch.items:
            texts.append(r.message)
            texts.append(r.stack_trace)
            for d in (r.labels, r.attributes):
                if d:
                    texts.extend(d.values())
                    keys.update(d)
    else:
        for s in batch.items:
            if s.tags:
                texts.extend(s.tags.values())
                keys.update(s.tags)
            for log in s.logs:
                texts.append(log.message)
                if log.fields:
                    texts.extend(log.fields.values())
                    keys.update(log.fields)
    return texts, keys


class RedactPattern(msgspec.Struct, forbid_unknown_fields=True):
    regex: str
    replacement: str = "[REDACTED]"
    name: str = ""


class RedactConfig(PluginConfig):
    ## Built-in patterns to apply: bearer_token, url_password, password_field, email, card_number.
    builtins: list[str] = msgspec.field(
        default_factory=lambda: ["bearer_token", "url_password", "password_field", "email", "card_number"])
    ## Your own: [{ name = "ssn", regex = '\d{3}-\d{2}-\d{4}', replacement = "[SSN]" }].
    patterns: list[RedactPattern] = msgspec.field(default_factory=list)
    ## Which signals to scrub: logs (message, stack trace, string attributes and labels) and traces
    ## (string tags, span log messages and their string fields).
    signals: list[str] = msgspec.field(default_factory=lambda: ["logs", "traces"])

    def validate(self) -> None:
        for name in self.builtins:
            if name not in BUILTIN_PATTERNS:
                raise ValueError(f"builtins: unknown pattern {name!r} (known: {', '.join(BUILTIN_PATTERNS)})")
        for i, p in enumerate(self.patterns):
            try:
                re.compile(p.regex)
            except re.error as exc:
                raise ValueError(f"patterns[{i}].regex {p.regex!r} does not compile: {exc}") from None
        for s in self.signals:
            if s not in ("logs", "traces"):
                raise ValueError(f"signals: {s!r} is not 'logs' or 'traces'")


class RedactProcessor(Processor):
    name: ClassVar[str] = "redact"
    Config: ClassVar[type[RedactConfig]] = RedactConfig
    description: ClassVar[str] = "Mask tokens, passwords, e-mail addresses and card numbers before storage"
    signals: ClassVar[frozenset[Signal]] = frozenset({Signal.LOGS, Signal.TRACES})
    config: RedactConfig

    def __init__(self, config: RedactConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        rules = [(n, *BUILTIN_PATTERNS[n]) for n in config.builtins]
        rules += [(p.name or f"pattern{i}", p.regex, p.replacement) for i, p in enumerate(config.patterns)]
        self.rules = [(n, re.compile(rx), rep) for n, rx, rep in rules]
        self._prechecked = [(n in BUILTIN_PATTERNS and i < len(config.builtins), n, rx, rep)
                            for i, (n, rx, rep) in enumerate(self.rules)]
        self._builtins_only = all(b for b, *_ in self._prechecked)
        self.secret_keys = "password_field" in config.builtins
        self.m_masked = ctx.metrics.counter("redact_masked_total", "Values masked by the redact processor",
                                            ("pattern",))

    def scrub(self, text: str) -> str:
        if not text:
            return text
        # Non-ASCII text runs every regex: (?i) folds letters such as U+017F to "s", which lower() keeps.
        ascii_text = text.isascii()
        low = text.lower()
        none_can = ascii_text and _ANY_LITERAL.search(low) is None and _digit_count(text) < _MIN_CARD_DIGITS
        if none_can and self._builtins_only:
            return text
        for builtin, name, rx, rep in self._prechecked:
            if builtin and ascii_text and (none_can or not _may_match(name, text, low)):
                continue
            if name == "card_number":
                text, n = rx.subn(self._card, text)
            else:
                text, n = rx.subn(rep, text)
            if n:
                self.m_masked.inc(n, name)
                low = text.lower()
        return text

    @staticmethod
    def _card(m: re.Match[str]) -> str:
        text = m.group(0)
        if _is_card(text):
            return "[CARD]"
        # A card next to another number (a CVV, an expiry month) makes one longer run that fails
        # the check as a whole: try the separator-aligned parts, longest first, so its digits do not leak.
        starts = [0] + [i + 1 for i, ch in enumerate(text) if ch in " -"]
        ends = [i for i, ch in enumerate(text) if ch in " -"] + [len(text)]
        parts = sorted(((a, b) for a in starts for b in ends if a < b), key=lambda p: p[0] - p[1])
        for a, b in parts:
            if _is_card(text[a:b]):
                return text[:a] + "[CARD]" + text[b:]
        return text

    def _scrub_value(self, value: Any, key: str = "") -> Any:
        """A string value, scrubbed; with password_field on, the whole value of a key that names a
        secret (``{"password": "x"}``, ``db.password``), since no pattern sees the key in the value."""
        if not isinstance(value, str):
            return value
        if self.secret_keys and value and _SECRET_KEY.match(key):
            self.m_masked.inc(1, "password_field")
            return "[REDACTED]"
        return self.scrub(value)

    def _nothing_to_mask(self, batch: Batch) -> bool:
        """Whether no built-in can match any text of the batch (one scan of them all joined, instead
        of one per text: most batches hold no secret, and this was ~3.5 ms of CPU per 1000 logs)."""
        if not self._builtins_only:
            return False
        texts, keys = _texts(batch)
        if self.secret_keys and any(_SECRET_KEY.match(k) for k in keys):
            return False
        try:
            text = "\n".join(texts)
        except TypeError:  # numbers, lists and the like, which scrub() leaves alone
            text = "\n".join(t for t in texts if type(t) is str)
        if not text.isascii():  # (?i) folds some non-ASCII letters to ASCII ones: the careful path
            return False
        low = text.lower()
        return not any(_batch_may_match(name, text, low) for name in self.config.builtins)

    def process(self, batch: Batch) -> Batch:
        if batch.signal.value not in self.config.signals:
            return batch
        if self._nothing_to_mask(batch):
            return batch
        if batch.signal is Signal.LOGS:
            for r in batch.items:
                r.message = self.scrub(r.message)
                r.stack_trace = self.scrub(r.stack_trace)
                if r.attributes:
                    r.attributes = {k: self._scrub_value(v, k) for k, v in r.attributes.items()}
                if r.labels:
                    r.labels = {k: self._scrub_value(v, k) for k, v in r.labels.items()}
        elif batch.signal is Signal.TRACES:
            for s in batch.items:
                if s.tags:
                    s.tags = {k: self._scrub_value(v, k) for k, v in s.tags.items()}
                for log in s.logs:
                    log.message = self.scrub(log.message)
                    if log.fields:  # OpenTelemetry event attributes: exception.message and the like
                        log.fields = {k: self._scrub_value(v, k) for k, v in log.fields.items()}
        return batch


@hookimpl
def airisd_plugin_classes() -> list[type[Plugin]]:
    return [RedactProcessor]


plugin_class = RedactProcessor

"""A safe subset of Go's text/template for notification subjects and bodies.

Why a subset of our own: the seed writes templates in Go syntax (``{{.RuleName}}``), and users
copy Alertmanager examples; a general template engine (Jinja) would run user-supplied logic in the
daemon. This one only looks fields up, so a template can never run code, loop or blow up.

Syntax (all of it):

    {{.Name}}                    a variable (see VARIABLES); unknown names fail at compile time
    {{.Labels.team}}             a key of a map variable (Labels, Annotations, GroupLabels,
                                 CommonLabels); a missing key renders as ""
    {{index .Labels "a.b/c"}}    a map key that is not an identifier
    {{.X | default "n/a"}}       functions, applied left to right: default "TEXT" (when empty),
                                 upper, lower, title, trim, json (a quoted JSON string),
                                 urlquery (query-escaped)
    {{"{{"}}                     a string literal, e.g. to write a literal "{{"
    {{- .X -}}                   trim the whitespace before / after the action
    {{/* a comment */}}

Rendering never raises: missing values render as "", floats without a needless ".0", maps as
``k=v, k=v`` sorted by key, lists joined with ", ".
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

from airisd.errors import ValidationError

MAX_TEMPLATE_CHARS = 64 * 1024

# name -> what it holds; map variables accept one key segment.
VARIABLES: dict[str, str] = {
    "RuleName": "the rule's name (alertname label for external alerts)",
    "RuleID": "the rule's id",
    "Severity": "info, warning, error or critical",
    "Description": "the rule's description (or the alert's description/summary annotation)",
    "Status": "firing or resolved",
    "Timestamp": "RFC 3339 UTC time of the event: when it fired, or when it resolved",
    "StartsAt": "RFC 3339 UTC time the alert started firing",
    "EndsAt": "RFC 3339 UTC time it resolved (empty while firing)",
    "Value": "the observed value: the metric's aggregate, or the number of matching log records",
    "Metric": "the metric name of a metric rule",
    "Operator": "gt, gte, lt, lte, eq or ne",
    "Threshold": "the metric rule's threshold, or the log rule's count",
    "Count": "the log rule's count (records needed to fire)",
    "Query": "the log rule's log_query",
    "Duration": "the rule's duration as written (e.g. 5m)",
    "Aggregation": "the metric rule's aggregation (avg, min, max, sum, count, last)",
    "Fingerprint": "a stable hash of the alert's labels",
    "GeneratorURL": "a link to the source of the alert, when known",
    "AlertCount": "how many alerts the notification carries",
    "Receiver": "the channel's name",
    "ExternalURL": "the alert role's public URL (alerting.external_url)",
    "To": "the recipient (SMS gateway templates only)",
    "Message": "the rendered message_template (SMS body and URL templates only)",
    "Labels": "map: the alert's labels",
    "Annotations": "map: the alert's annotations",
    "GroupLabels": "map: the labels the notification's alerts are grouped by",
    "CommonLabels": "map: the labels all alerts of the notification share",
}
MAP_VARIABLES = frozenset({"Labels", "Annotations", "GroupLabels", "CommonLabels"})

# name -> number of string arguments
FUNCTIONS: dict[str, int] = {
    "default": 1,
    "upper": 0,
    "lower": 0,
    "title": 0,
    "trim": 0,
    "json": 0,
    "urlquery": 0,
}

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WS = " \t\r\n"
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


@dataclass(frozen=True)
class _Action:
    path: tuple[str, ...]  # () for a string literal
    literal: str
    funcs: tuple[tuple[str, tuple[str, ...]], ...]


class Template:
    """A compiled template: a sequence of literal text and field lookups."""

    __slots__ = ("_parts", "field", "fields", "source")

    def __init__(self, source: str, parts: list[str | _Action], field: str) -> None:
        self.source = source
        self.field = field
        self._parts = parts
        self.fields = frozenset(p.path[0] for p in parts if isinstance(p, _Action) and p.path)

    def uses(self, name: str) -> bool:
        """True if the template looks up the variable ``name`` (e.g. "Status")."""
        return name in self.fields

    def render(self, ctx: Mapping[str, Any]) -> str:
        out: list[str] = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
            else:
                try:
                    out.append(_render_action(part, ctx))
                except Exception:  # a hostile __str__ in a context value must not break a send
                    out.append("")
        return "".join(out)

    def __repr__(self) -> str:
        return f"Template({self.field}, {self.source[:40]!r})"


def compile_template(text: str, *, field: str) -> Template:
    """Parse ``text``; raise ValidationError naming ``field`` and the position of the problem."""
    if not isinstance(text, str):
        raise ValidationError(f"{field}: expected a string", details={"field": field})
    if len(text) > MAX_TEMPLATE_CHARS:
        raise ValidationError(
            f"{field}: template longer than {MAX_TEMPLATE_CHARS} characters",
            details={"field": field, "length": len(text)},
        )
    return Template(text, _Parser(text, field).parse(), field)


def format_value(value: Any) -> str:
    """How a context value prints: the one formatting rule for every channel."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda kv: str(kv[0]))
        return ", ".join(f"{k}={format_value(v)}" for k, v in items)
    if isinstance(value, list | tuple):
        return ", ".join(format_value(v) for v in value)
    return str(value)


def _render_action(action: _Action, ctx: Mapping[str, Any]) -> str:
    if action.path:
        value: Any = ctx.get(action.path[0])
        if len(action.path) > 1:
            value = value.get(action.path[1]) if isinstance(value, Mapping) else None
        text = format_value(value)
    else:
        text = action.literal
    for name, args in action.funcs:
        text = _apply(name, args, text)
    return text


def _apply(name: str, args: tuple[str, ...], text: str) -> str:
    if name == "default":
        return text if text else args[0]
    if name == "upper":
        return text.upper()
    if name == "lower":
        return text.lower()
    if name == "title":
        return text.title()
    if name == "trim":
        return text.strip()
    if name == "json":
        return json.dumps(text, ensure_ascii=False)
    if name == "urlquery":
        return quote_plus(text)
    raise AssertionError(name)  # compile_template admits only FUNCTIONS


class _Parser:
    """A hand-written scanner: one pass, positions kept for error messages."""

    def __init__(self, text: str, field: str) -> None:
        self.text = text
        self.field = field
        self.pos = 0

    def fail(self, problem: str, pos: int | None = None) -> ValidationError:
        at = self.pos if pos is None else pos
        line = self.text.count("\n", 0, at) + 1
        column = at - (self.text.rfind("\n", 0, at) + 1) + 1
        return ValidationError(
            f"{self.field}: template error at line {line} column {column}: {problem}",
            details={"field": self.field, "position": at, "line": line, "column": column, "problem": problem},
        )

    def parse(self) -> list[str | _Action]:
        parts: list[str | _Action] = []
        text = self.text
        trim_next = False
        while True:
            start = text.find("{{", self.pos)
            chunk = text[self.pos : start if start >= 0 else len(text)]
            if trim_next:
                chunk = chunk.lstrip(_WS)
            if start < 0:
                if chunk:
                    parts.append(chunk)
                return _merge(parts)
            self.pos = start + 2
            if text.startswith("-", self.pos) and text[self.pos + 1 : self.pos + 2] in tuple(_WS):
                chunk = chunk.rstrip(_WS)
                self.pos += 1
            if chunk:
                parts.append(chunk)
            action, trim_next = self.action(start)
            if action is not None:
                parts.append(action)

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _WS:
            self.pos += 1

    def close(self) -> bool | None:
        """At ``}}`` or `` -}}``: consume it and return whether to trim; else None."""
        text = self.text
        if text.startswith("}}", self.pos):
            self.pos += 2
            return False
        if text.startswith("-}}", self.pos) and self.pos > 0 and text[self.pos - 1] in _WS:
            self.pos += 3
            return True
        return None

    def action(self, start: int) -> tuple[_Action | None, bool]:
        text = self.text
        self.skip_ws()
        if text.startswith("/*", self.pos):
            end = text.find("*/", self.pos + 2)
            if end < 0:
                raise self.fail("unclosed comment", start)
            self.pos = end + 2
            self.skip_ws()
            trim = self.close()
            if trim is None:
                raise self.fail("a comment must be the whole action: expected }} after */")
            return None, trim
        path, literal = self.head(start)
        funcs: list[tuple[str, tuple[str, ...]]] = []
        while True:
            self.skip_ws()
            if self.pos >= len(text):
                raise self.fail("unclosed action: missing }}", start)
            trim = self.close()
            if trim is not None:
                return _Action(path, literal, tuple(funcs)), trim
            if text[self.pos] != "|":
                raise self.fail(f"unexpected {text[self.pos : self.pos + 10]!r}: expected | or }}}}")
            self.pos += 1
            self.skip_ws()
            funcs.append(self.function())

    def head(self, start: int) -> tuple[tuple[str, ...], str]:
        text = self.text
        if self.pos >= len(text):
            raise self.fail("unclosed action: missing }}", start)
        ch = text[self.pos]
        if ch == ".":
            return self.field_path(), ""
        if ch in '"`':
            return (), self.string()
        m = _IDENT.match(text, self.pos)
        if m and m.group() == "index":
            self.pos = m.end()
            self.skip_ws()
            at = self.pos
            if not text.startswith(".", self.pos):
                raise self.fail("index expects a map variable such as .Labels")
            path = self.field_path()
            if len(path) != 1 or path[0] not in MAP_VARIABLES:
                raise self.fail(f"index expects a map variable ({', '.join(sorted(MAP_VARIABLES))})", at)
            self.skip_ws()
            if self.pos >= len(text) or text[self.pos] not in '"`':
                raise self.fail("index expects a quoted key after the map")
            return (path[0], self.string()), ""
        if ch == "}" or (ch == "-" and text.startswith("-}}", self.pos)):
            raise self.fail("empty action", start)
        word = m.group() if m else text[self.pos : self.pos + 10]
        if m and m.group() in ("if", "range", "with", "define", "template", "block", "end", "else"):
            raise self.fail(f"{word!r} is not supported: only field lookups such as {{{{.RuleName}}}}")
        raise self.fail(f"unexpected {word!r}: expected a field such as .RuleName or a quoted string")

    def field_path(self) -> tuple[str, ...]:
        text = self.text
        names: list[str] = []
        while text.startswith(".", self.pos):
            at = self.pos
            m = _IDENT.match(text, self.pos + 1)
            if m is None:
                raise self.fail("expected a name after '.'", at)
            names.append(m.group())
            self.pos = m.end()
            if len(names) == 1 and m.group() not in VARIABLES:
                raise self.fail(f"unknown variable .{m.group()} (known: {', '.join(sorted(VARIABLES))})", at)
            if len(names) == 2 and names[0] not in MAP_VARIABLES:
                raise self.fail(f".{names[0]} has no field .{names[1]}", at)
            if len(names) > 2:
                raise self.fail(f".{names[0]}.{names[1]} is a string and has no field .{names[2]}", at)
        return tuple(names)

    def string(self) -> str:
        text = self.text
        start = self.pos
        quote = text[self.pos]
        self.pos += 1
        if quote == "`":
            end = text.find("`", self.pos)
            if end < 0:
                raise self.fail("unterminated raw string", start)
            self.pos = end + 1
            return text[start + 1 : end]
        out: list[str] = []
        while self.pos < len(text):
            ch = text[self.pos]
            if ch == '"':
                self.pos += 1
                return "".join(out)
            if ch == "\n":
                break
            if ch == "\\":
                esc = text[self.pos + 1 : self.pos + 2]
                if esc not in _ESCAPES:
                    raise self.fail(f"unknown escape \\{esc} in string")
                out.append(_ESCAPES[esc])
                self.pos += 2
                continue
            out.append(ch)
            self.pos += 1
        raise self.fail("unterminated string", start)

    def function(self) -> tuple[str, tuple[str, ...]]:
        at = self.pos
        m = _IDENT.match(self.text, self.pos)
        if m is None:
            raise self.fail("expected a function name after |")
        name = m.group()
        if name not in FUNCTIONS:
            raise self.fail(f"unknown function {name!r} (known: {', '.join(sorted(FUNCTIONS))})", at)
        self.pos = m.end()
        args: list[str] = []
        for _ in range(FUNCTIONS[name]):
            self.skip_ws()
            if self.pos >= len(self.text) or self.text[self.pos] not in '"`':
                raise self.fail(f"{name} expects a quoted string argument")
            args.append(self.string())
        return name, tuple(args)


def _merge(parts: list[str | _Action]) -> list[str | _Action]:
    out: list[str | _Action] = []
    for part in parts:
        if isinstance(part, str) and out and isinstance(out[-1], str):
            out[-1] += part
        else:
            out.append(part)
    return out

"""The log query language: one parser, an in-memory evaluator and a compiler to SQLite.

The log search API (``GET /logs/search?q=``) and the alert role's log rules (``log_query``) both
use it; ``matches`` (one record, in memory) and ``to_sql`` (the SQLite store) have the same
semantics, which the tests check against each other on random records and queries.

Syntax
------
    database                      a bare term
    "connection failed"           a phrase: the words in this order, next to each other
    data*                         a prefix: any word that starts with "data"
    level:ERROR  service:user-api  message:database  message:"connection failed"
    labels.component:database     a label;  http.status:500  any attribute (dotted names too)
    a AND b   a OR b   NOT a   -a   (a OR b) c

``AND`` binds tighter than ``OR``; two expressions side by side mean ``AND``; ``NOT`` (or a ``-``
glued to the front of an expression) negates. The operators are capitalised words: ``and`` is a
term. A backslash makes the next character literal (``\\:``, ``\\*``, ``\\(``, ``\\"``, ``\\-x``,
``\\AND``). Inside quotes only ``\\"`` and ``\\\\`` need it. ``*`` is allowed only at the end of a
term or a field value. A field name starts with a letter, ``_`` or ``@`` and continues with
letters, digits and ``_ . - / @``; a value runs to the next space or parenthesis and may contain
``:`` (``url:http://x``). At most 256 terms and 64 levels of nesting.

Words (tokens)
--------------
Text is lower-cased (``str.lower``), then a token is a run of word characters (Unicode letters,
digits and ``_``) in which single ``.`` or ``-`` characters may join runs:
``\\w+(?:[.-]\\w+)*``. So ``user_12345``, ``db.query``, ``user-api``, ``10.0.0.1`` and
``v1.2.3`` are single tokens, while the full stop ending a sentence is not part of the last word
(``failed.`` is ``failed``). A compound token is one word: ``database`` does not find
``Database.connect()``, but ``database*`` and ``database.connect`` do.

What matches
------------
- A bare term, phrase or prefix looks at the words of ``message``, ``stack_trace``, ``level``,
  ``service``, ``trace_id``, ``span_id``, ``user_id`` and ``request_id`` (``level`` so that
  ``database AND error`` finds an ERROR line about the database, as grep on the seed's plain line
  format would; the ids so that a pasted ``req_67890`` finds its lines). The term is tokenised
  like the text: one token must equal a token of a field; several tokens (``"connection failed"``, or a term
  such as ``foo/bar``) must appear one after the other within one field; a term without any
  token (``!!!``) matches nothing. A prefix matches any token that starts with it (``db.*``
  matches ``db.query``); a prefix that no token can start with (one that does not begin with a
  word character, or holds a character that is never in a token) matches nothing.
- ``message:`` and ``stack_trace:`` do the same on that one field.
- ``level:``, ``service:``, ``trace_id:``, ``span_id:``, ``user_id:``, ``request_id:`` compare the
  whole value, ignoring the case of ASCII letters (SQLite's NOCASE); a prefix compares the start.
  ``level:`` accepts the level aliases (``level:warning`` finds WARN).
- ``labels.<key>:`` compares the label's whole value the same way.
- Any other field name is an attribute (an extra field of a JSON record; nested objects are
  flattened to dotted names on ingestion). A string attribute compares whole, ignoring ASCII case;
  a number compares numerically when the query value is a number (``status:500`` finds 500 and
  500.0 and "500"); ``true``/``false`` find booleans, ``null`` finds nulls (and non-finite
  floats, which are stored as null); prefixes apply to strings only; arrays and objects never
  match. A record without the attribute does not match (and ``NOT`` of it does).
- Quoted or not makes no difference to whole-value fields: ``service:"user api"`` compares the
  whole value ``user api``.

The store keeps the tokens of these eight fields in an FTS5 table whose ``ascii`` tokenizer
(``tokenchars '._-'``) is given the text already tokenised and lower-cased by ``index_text`` (and
``meta_text`` for the six short fields, which share a column): FTS5 then splits only at the spaces
we put there (``fts_text`` leaves as they are the ASCII texts where FTS5 would split exactly where
we do), so the index holds exactly the tokens above, and an FTS5 phrase or prefix query finds
exactly what ``matches`` finds. ``trace_id:``/``span_id:``/``user_id:``/``request_id:`` use the
index to find candidates too, so a trace's logs are found without a scan.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

from airisd.errors import ValidationError
from airisd.logparse import is_level_word, normalize_level
from airisd.model import LogRecord

__all__ = [
    "FTS_COLUMNS",
    "And",
    "Kind",
    "Match",
    "Node",
    "Not",
    "Or",
    "QuerySyntaxError",
    "SqlFilter",
    "fts_text",
    "index_text",
    "matches",
    "meta_text",
    "parse",
    "to_sql",
    "to_string",
    "tokenize",
]

MAX_QUERY_CHARS = 8192
MAX_TERMS = 256
MAX_DEPTH = 64

# What a bare term searches: the text, and the short fields a user may paste into a search box.
# The FTS5 table's columns: the short fields share one column, "meta" (see meta_text).
META_FIELDS = ("level", "service", "trace_id", "span_id", "user_id", "request_id")
SEARCHED_FIELDS = ("message", "stack_trace", *META_FIELDS)
FTS_COLUMNS = ("message", "stack_trace", "meta")
ID_FIELDS = frozenset(("trace_id", "span_id", "user_id", "request_id"))
TEXT_FIELDS = frozenset(("message", "stack_trace"))  # fields matched by tokens
EXACT_FIELDS = frozenset(("level", "service", "trace_id", "span_id", "user_id", "request_id"))

# Possessive: the same tokens as r"\w+(?:[.\-]\w+)*" (nothing follows that a backtrack could
# help), without the engine saving backtrack points; ~20% cheaper, and index_text runs per record.
_TOKEN = re.compile(r"\w++(?:[.\-]\w++)*+")
_PREFIX_OK = re.compile(r"\w[\w.\-]*")  # a token starts with a word character
FIELD_RE = re.compile(r"(?:[^\W\d]|@)[\w.\-/@]*")
_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_KEYWORDS = frozenset(("AND", "OR", "NOT"))
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class QuerySyntaxError(ValidationError):
    """A query that does not parse; details name the field, the 0-based position and what was
    expected there."""

    def __init__(self, expected: str, position: int, *, field: str = "q") -> None:
        super().__init__(
            f"query syntax error at position {position}: expected {expected}",
            details={"field": field, "position": position, "expected": expected},
        )
        self.position = position
        self.expected = expected


# -- the tree --------------------------------------------------------------------------------


class Kind(StrEnum):
    TERM = "term"
    PHRASE = "phrase"
    PREFIX = "prefix"


@dataclass(frozen=True, slots=True)
class Match:
    """``field:value`` (field None for a bare term). ``value`` is the text as the user meant it,
    escapes removed and case kept; for PREFIX it excludes the ``*``."""

    field: str | None
    value: str
    kind: Kind = Kind.TERM

    def __post_init__(self) -> None:
        if self.field is not None and not _valid_field(self.field):
            raise ValueError(f"{self.field!r} is not a field name")
        if self.kind is not Kind.PHRASE and not self.value:
            raise ValueError(f"a {self.kind.value} needs a value")


@dataclass(frozen=True, slots=True)
class Not:
    child: Node


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]


Node = Match | Not | And | Or


def _valid_field(name: str) -> bool:
    if not FIELD_RE.fullmatch(name):
        return False
    return name != "labels" and not (name.startswith("labels.") and len(name) == len("labels."))


# -- tokens ----------------------------------------------------------------------------------


def tokenize(text: str) -> list[str]:
    """The words of text, as the index and ``matches`` see them."""
    return _TOKEN.findall(text.lower())


def index_text(text: str) -> str:
    """What the store gives FTS5 for one text field: the tokens joined by single spaces."""
    return " ".join(_TOKEN.findall(text.lower())) if text else ""


def fts_text(text: str) -> str:
    """index_text's tokens, spelled as cheaply as possible. FTS5's ascii tokenizer (which
    lower-cases ASCII) splits ASCII text without dots and dashes exactly where we do, so such text,
    most log lines, is given as it is: tokenizing it here was a seventh of the daemon's time per
    record. (A dot or dash that does not join two word characters is where the two differ; finding
    those cost as much as tokenizing.)"""
    if text.isascii() and "." not in text and "-" not in text:
        return text
    return index_text(text)


@lru_cache(maxsize=4096)
def _meta_head(level: str, service: str) -> str:  # levels and service names repeat
    return index_text(level) + " . " + index_text(service)


_NO_IDS = " . " + " . ".join(("", "", "", ""))


def meta_text(level: str, service: str, trace_id: str, span_id: str, user_id: str, request_id: str) -> str:
    """The FTS5 "meta" column: the tokens of the short fields (META_FIELDS), each field's run
    separated from the next by a lone ".", a token the tokenizer never makes and no phrase or
    prefix can match, so a phrase never spans two fields (one column instead of six makes inserts
    ~30% cheaper)."""
    head = _meta_head(level, service)
    if not (trace_id or span_id or user_id or request_id):
        return head + _NO_IDS
    ids = (fts_text(trace_id), fts_text(span_id), fts_text(user_id), fts_text(request_id))
    return head + " . " + " . ".join(ids)


@lru_cache(maxsize=4096)
def _query_tokens(value: str) -> tuple[str, ...]:
    return tuple(tokenize(value))


def _ascii_lower(s: str) -> str:
    return s.lower() if s.isascii() else s.translate(_ASCII_LOWER)


# -- parsing ---------------------------------------------------------------------------------

_PRIMARY = "a term, a \"phrase\", field:value, NOT or '('"


@dataclass(slots=True)
class _Tok:
    kind: str  # "match", "(", ")", "and", "or", "not", "eof"
    pos: int
    match: Match | None = None


class _Lexer:
    def __init__(self, q: str, field: str) -> None:
        self.q = q
        self.field = field

    def error(self, expected: str, pos: int) -> QuerySyntaxError:
        return QuerySyntaxError(expected, pos, field=self.field)

    def tokens(self) -> list[_Tok]:
        q, n, i = self.q, len(self.q), 0
        out: list[_Tok] = []
        while i < n:
            c = q[i]
            if c.isspace():
                i += 1
            elif c in "()":
                out.append(_Tok(c, i))
                i += 1
            elif c == '"':
                value, end = self.phrase(i)
                out.append(_Tok("match", i, Match(None, value, Kind.PHRASE)))
                i = end
            elif c == "-" and i + 1 < n and not q[i + 1].isspace() and q[i + 1] != ")":
                out.append(_Tok("not", i))
                i += 1
            else:
                tok, i = self.word(i)
                out.append(tok)
        out.append(_Tok("eof", n))
        return out

    def phrase(self, start: int) -> tuple[str, int]:
        q, n, j = self.q, len(self.q), start + 1
        chars: list[str] = []
        while j < n:
            c = q[j]
            if c == "\\":
                if j + 1 >= n:
                    raise self.error("a character after '\\'", j)
                chars.append(q[j + 1])
                j += 2
            elif c == '"':
                return "".join(chars), j + 1
            else:
                chars.append(c)
                j += 1
        raise self.error("a closing '\"'", start)

    def word(self, start: int) -> tuple[_Tok, int]:
        q, n, j = self.q, len(self.q), start
        chars: list[str] = []
        escaped: list[bool] = []
        where: list[int] = []
        while j < n:
            c = q[j]
            if c.isspace() or c in '()"':
                break
            where.append(j)
            if c == "\\":
                if j + 1 >= n:
                    raise self.error("a character after '\\'", j)
                chars.append(q[j + 1])
                escaped.append(True)
                j += 2
            else:
                chars.append(c)
                escaped.append(False)
                j += 1
        text = "".join(chars)
        if text in _KEYWORDS and not any(escaped):
            return _Tok(text.lower(), start), j
        field: str | None = None
        colon = next((k for k, c in enumerate(chars) if c == ":" and not escaped[k]), -1)
        if colon > 0 and not any(escaped[:colon]) and FIELD_RE.fullmatch(text[:colon]):
            field = text[:colon]
            if not _valid_field(field):
                raise self.error("labels.<key>", start)
            chars, escaped, where = chars[colon + 1 :], escaped[colon + 1 :], where[colon + 1 :]
            if not chars:
                if j < n and q[j] == '"':
                    value, end = self.phrase(j)
                    return _Tok("match", start, Match(field, value, Kind.PHRASE)), end
                raise self.error(f"a value after '{field}:'", j)
        kind = Kind.TERM
        stars = [k for k, c in enumerate(chars) if c == "*" and not escaped[k]]
        if stars and stars[-1] == len(chars) - 1:
            kind = Kind.PREFIX
            if len(chars) == 1:
                raise self.error("a term before '*'", where[0])
            stars.pop()
            chars = chars[:-1]
        if stars:
            raise self.error("'*' only at the end of a term (write \\* for a literal one)", where[stars[0]])
        return _Tok("match", start, Match(field, "".join(chars), kind)), j


class _Parser:
    def __init__(self, toks: list[_Tok], lexer: _Lexer) -> None:
        self.toks = toks
        self.i = 0
        self.lexer = lexer
        self.terms = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def parse(self) -> Node:
        node = self.or_expr(0)
        tok = self.peek()
        if tok.kind != "eof":
            expected = "end of query (this ')' has no '(')" if tok.kind == ")" else "end of query"
            raise self.lexer.error(expected, tok.pos)
        return node

    def or_expr(self, depth: int) -> Node:
        children = [self.and_expr(depth)]
        while self.peek().kind == "or":
            self.take()
            children.append(self.and_expr(depth))
        return children[0] if len(children) == 1 else Or(tuple(children))

    def and_expr(self, depth: int) -> Node:
        children = [self.unary(depth)]
        while True:
            kind = self.peek().kind
            if kind == "and":
                self.take()
            elif kind not in ("match", "(", "not"):
                break
            children.append(self.unary(depth))
        return children[0] if len(children) == 1 else And(tuple(children))

    def unary(self, depth: int) -> Node:
        tok = self.peek()
        if tok.kind == "not":
            if depth >= MAX_DEPTH:
                raise self.lexer.error(f"at most {MAX_DEPTH} levels of nesting", tok.pos)
            self.take()
            return Not(self.unary(depth + 1))
        return self.primary(depth)

    def primary(self, depth: int) -> Node:
        tok = self.take()
        if tok.kind == "match":
            assert tok.match is not None
            self.terms += 1
            if self.terms > MAX_TERMS:
                raise self.lexer.error(f"at most {MAX_TERMS} terms", tok.pos)
            return tok.match
        if tok.kind == "(":
            if depth >= MAX_DEPTH:
                raise self.lexer.error(f"at most {MAX_DEPTH} levels of nesting", tok.pos)
            node = self.or_expr(depth + 1)
            close = self.take()
            if close.kind != ")":
                raise self.lexer.error("')'", close.pos)
            return node
        raise self.lexer.error(_PRIMARY, tok.pos)


def parse(q: str, *, field: str = "q") -> Node:
    """Parse a query; raise QuerySyntaxError naming ``field``, the position and what was expected."""
    if len(q) > MAX_QUERY_CHARS:
        expected = f"a query of at most {MAX_QUERY_CHARS} characters"
        raise QuerySyntaxError(expected, MAX_QUERY_CHARS, field=field)
    lexer = _Lexer(q, field)
    return _Parser(lexer.tokens(), lexer).parse()


# -- printing --------------------------------------------------------------------------------


def _escape_word(value: str, *, bare: bool) -> str:
    out = []
    for i, c in enumerate(value):
        if c.isspace() or c in '()"\\*' or (bare and (c == ":" or (i == 0 and c == "-"))):
            out.append("\\")
        out.append(c)
    text = "".join(out)
    return "\\" + text if bare and value in _KEYWORDS else text


def _print_match(m: Match) -> str:
    prefix = "" if m.field is None else m.field + ":"
    bare = m.field is None
    if m.kind is Kind.PHRASE:
        return prefix + '"' + m.value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    text = _escape_word(m.value, bare=bare)
    return prefix + (text + "*" if m.kind is Kind.PREFIX else text)


def to_string(node: Node) -> str:
    """The canonical spelling: explicit AND/OR/NOT, parentheses only where the tree needs them
    (and around an AND inside an OR, for the reader). ``parse(to_string(n)) == n``."""
    if isinstance(node, Match):
        return _print_match(node)
    if isinstance(node, Not):
        inner = to_string(node.child)
        return "NOT " + (inner if isinstance(node.child, Match | Not) else f"({inner})")
    op = " AND " if isinstance(node, And) else " OR "
    return op.join(f"({to_string(c)})" if isinstance(c, And | Or) else to_string(c) for c in node.children)


# -- in-memory evaluation --------------------------------------------------------------------


def _level_target(value: str) -> str:
    return normalize_level(value) if is_level_word(value) else value


def _number(text: str) -> int | float | None:
    if not _NUMBER.fullmatch(text):
        return None
    if "." in text or "e" in text or "E" in text:
        f = float(text)
        return f if math.isfinite(f) else None
    i = int(text)
    return i if -(2**63) <= i < 2**63 else float(i)


def _exact(value: str, m: Match) -> bool:
    if m.kind is Kind.PREFIX:
        return _ascii_lower(value).startswith(_ascii_lower(m.value))
    target = _level_target(m.value) if m.field == "level" else m.value
    return _ascii_lower(value) == _ascii_lower(target)


def _attribute(attrs: dict[str, Any], key: str, m: Match) -> bool:
    if key not in attrs:
        return False
    v = attrs[key]
    if isinstance(v, float) and not math.isfinite(v):
        v = None
    if m.kind is Kind.PREFIX:
        return isinstance(v, str) and _ascii_lower(v).startswith(_ascii_lower(m.value))
    if isinstance(v, str):
        return _ascii_lower(v) == _ascii_lower(m.value)
    if isinstance(v, bool):
        return _ascii_lower(m.value) == ("true" if v else "false")
    if v is None:
        return _ascii_lower(m.value) == "null"
    if isinstance(v, int | float):
        num = _number(m.value)
        return num is not None and v == num
    return False


def _has_run(tokens: list[str], run: tuple[str, ...]) -> bool:
    if len(run) == 1:
        return run[0] in tokens
    first, k = run[0], len(run)
    return any(t == first and tuple(tokens[i : i + k]) == run for i, t in enumerate(tokens))


class _Evaluator:
    __slots__ = ("rec", "tokens")

    def __init__(self, rec: LogRecord) -> None:
        self.rec = rec
        self.tokens: dict[str, list[str]] = {}

    def field_tokens(self, name: str) -> list[str]:
        toks = self.tokens.get(name)
        if toks is None:
            toks = self.tokens[name] = tokenize(getattr(self.rec, name))
        return toks

    def eval(self, node: Node) -> bool:
        if isinstance(node, Match):
            return self.match(node)
        if isinstance(node, Not):
            return not self.eval(node.child)
        if isinstance(node, And):
            return all(self.eval(c) for c in node.children)
        return any(self.eval(c) for c in node.children)

    def match(self, m: Match) -> bool:
        f = m.field
        if f is None or f in TEXT_FIELDS:
            columns = SEARCHED_FIELDS if f is None else (f,)
            if m.kind is Kind.PREFIX:
                p = m.value.lower()
                if not _PREFIX_OK.fullmatch(p):
                    return False
                return any(t.startswith(p) for c in columns for t in self.field_tokens(c))
            run = _query_tokens(m.value)
            return bool(run) and any(_has_run(self.field_tokens(c), run) for c in columns)
        if f in EXACT_FIELDS:
            return _exact(getattr(self.rec, f), m)
        if f.startswith("labels."):
            v = self.rec.labels.get(f[len("labels.") :])
            return isinstance(v, str) and _exact(v, m)
        return _attribute(self.rec.attributes, f, m)


def matches(node: Node, record: LogRecord) -> bool:
    """Whether one record satisfies the query: exactly what the store's search returns."""
    return _Evaluator(record).eval(node)


# -- SQLite ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SqlFilter:
    """A query compiled for the store. ``fts`` is an FTS5 MATCH expression that every result
    satisfies (None when the query has no positive text part): the store drives the search from
    the index, newest rowid first. ``where`` is an SQL condition over the logs row (alias ``l``)
    that is always 0 or 1, never NULL, so NOT works; ``params`` are its ``?`` values in order."""

    fts: str | None
    where: str
    params: tuple[Any, ...]


def _fts_match(m: Match) -> str | None:
    if m.field is not None and m.field not in TEXT_FIELDS:
        return None
    if m.kind is Kind.PREFIX:
        p = m.value.lower()
        if not _PREFIX_OK.fullmatch(p):
            return None
        phrase = f'"{p}" *'
    else:
        run = _query_tokens(m.value)
        if not run:
            return None
        phrase = '"' + " ".join(run) + '"'
    return phrase if m.field is None else f"{m.field} : {phrase}"


def _and_not(positive: list[str], negative: list[str]) -> str:
    expr = positive[0] if len(positive) == 1 else "(" + " AND ".join(positive) + ")"
    for n in negative:
        expr = f"({expr} NOT ({n}))"
    return expr


def _fts_expr(node: Node) -> str | None:
    """The node as one FTS5 expression, or None when FTS5 cannot say it (a field that is not
    text, a term without tokens, a NOT that has no positive partner)."""
    if isinstance(node, Match):
        return _fts_match(node)
    if isinstance(node, Or):
        parts = [_fts_expr(c) for c in node.children]
        if any(p is None for p in parts):
            return None
        return "(" + " OR ".join(p for p in parts if p is not None) + ")"
    if isinstance(node, And):
        positive, negative = [], []
        for c in node.children:
            if isinstance(c, Not):
                e = _fts_expr(c.child)
                if e is None:
                    return None
                negative.append(e)
            else:
                e = _fts_expr(c)
                if e is None:
                    return None
                positive.append(e)
        return _and_not(positive, negative) if positive else None
    return None


class _SqlCompiler:
    def __init__(self, alias: str, fts_table: str) -> None:
        self.a = alias
        self.fts = fts_table
        self.params: list[Any] = []

    def node(self, node: Node) -> str:
        expr = _fts_expr(node)
        if expr is not None:
            self.params.append(expr)
            return f"{self.a}.ts IN (SELECT rowid FROM {self.fts} WHERE {self.fts} MATCH ?)"
        if isinstance(node, Match):
            return self.match(node)
        if isinstance(node, Not):
            return f"NOT {self.node(node.child)}"
        op = " AND " if isinstance(node, And) else " OR "
        return "(" + op.join(self.node(c) for c in node.children) + ")"

    def like(self, column: str, prefix: str) -> str:
        self.params.append(prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        return f"{column} LIKE ? ESCAPE '\\'"

    def match(self, m: Match) -> str:
        f = m.field
        if f is None or f in TEXT_FIELDS:
            return "0"  # a text match FTS5 could not say: no tokens, or an impossible prefix
        if f in EXACT_FIELDS:
            column = f"{self.a}.{f}"
            if m.kind is Kind.PREFIX:
                return self.like(column, m.value)
            self.params.append(_level_target(m.value) if f == "level" else m.value)
            return f"{column} = ?"  # the column is declared COLLATE NOCASE
        if f.startswith("labels."):
            return self.json_text(f"{self.a}.labels", f[len("labels.") :], m)
        return self.json_any(f"{self.a}.attributes", f, m)

    def json_text(self, column: str, key: str, m: Match) -> str:
        path = f'$."{key}"'
        self.params += [path, path]
        head = f"json_type({column}, ?) = 'text' AND json_extract({column}, ?)"
        if m.kind is Kind.PREFIX:
            return f"COALESCE({self.like(head, m.value)}, 0)"
        self.params.append(m.value)
        return f"COALESCE({head} = ? COLLATE NOCASE, 0)"

    def json_any(self, column: str, key: str, m: Match) -> str:
        if m.kind is Kind.PREFIX:
            return self.json_text(column, key, m)
        path = f'$."{key}"'
        word = _ascii_lower(m.value)
        num = _number(m.value)
        self.params += [path, path, m.value]
        branches = [f"WHEN 'text' THEN json_extract({column}, ?) = ? COLLATE NOCASE"]
        if num is not None:
            self.params += [path, num, path, num]
            branches += [f"WHEN 'integer' THEN json_extract({column}, ?) = ?",
                         f"WHEN 'real' THEN json_extract({column}, ?) = ?"]  # fmt: skip
        branches += [
            f"WHEN 'true' THEN {int(word == 'true')}",
            f"WHEN 'false' THEN {int(word == 'false')}",
            f"WHEN 'null' THEN {int(word == 'null')}",
        ]
        return f"COALESCE(CASE json_type({column}, ?) {' '.join(branches)} ELSE 0 END, 0)"


def to_sql(node: Node | None, *, alias: str = "l", fts_table: str = "logs_fts") -> SqlFilter:
    """Compile for the store. The top-level AND's text parts become one FTS5 expression that
    drives the search; everything else becomes ``where``.

    A field equal to a value has the value's tokens in the "meta" column, so exact matches on the
    short fields also go into the FTS5 expression, to find candidates that ``where`` then decides:
    always for the ids (rare words), and for level and service only when nothing else would drive
    (their words are common, and the store has no B-tree index on them: see logs_store)."""
    if node is None:
        return SqlFilter(None, "1", ())
    conjuncts: list[Node] = list(node.children) if isinstance(node, And) else [node]
    positive: list[str] = []
    negative: list[str] = []
    rest: list[Node] = []
    prefilter: list[str] = []
    common: list[str] = []
    for c in conjuncts:
        e = _fts_expr(c)
        if e is not None:
            positive.append(e)
            continue
        if isinstance(c, Match) and c.field in EXACT_FIELDS and c.kind is not Kind.PREFIX:
            run = _query_tokens(_level_target(c.value) if c.field == "level" else c.value)
            if run:
                (prefilter if c.field in ID_FIELDS else common).append('meta : "' + " ".join(run) + '"')
        if isinstance(c, Not) and (e := _fts_expr(c.child)) is not None:
            negative.append(e)
            continue
        rest.append(c)
    if positive:
        positive += prefilter
    else:
        rest = conjuncts
        positive = prefilter or common
    compiler = _SqlCompiler(alias, fts_table)
    where = " AND ".join(compiler.node(c) for c in rest) or "1"
    return SqlFilter(_and_not(positive, negative) if positive else None, where, tuple(compiler.params))

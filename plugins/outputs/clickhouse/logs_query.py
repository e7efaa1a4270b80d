"""The log role's queries answered from ClickHouse, with the SQLite LogStore's methods and return
shapes (search, count, page), and the query language (airisd.logquery) translated to SQL with the
same semantics as ``logquery.matches``, which a hypothesis test checks on random records and
queries.

How the words are matched: the writer stores each text field's tokens (``logquery.tokenize``, the
same function the SQLite index and ``matches`` use) in arrays: ``message_tokens``,
``stack_tokens`` and ``meta_tokens`` (the six short fields, each run ended by a lone ".", a token
nothing matches, so a phrase never spans two fields). Then a term is ``has(tokens, t)``, a phrase
``hasSubstr(tokens, [t1, t2, ...])`` (the words next to each other, in order) and a prefix
``arrayExists(t -> startsWith(t, p), tokens)``; bloom-filter indexes on the arrays skip granules
without the word. Whole-value fields compare with ``lower()`` (ASCII only in ClickHouse, as
SQLite's NOCASE and logquery's rules); attributes are read from ``attributes_json`` by type, as
logquery defines it. Every user value is a bound ``{pN:Type}`` parameter, never inlined.
"""

from __future__ import annotations

from typing import Any

import orjson
from airisd_plugins.outputs.clickhouse.writer import classify

from airisd.errors import PermanentError, TransientError
from airisd.logquery import _PREFIX_OK as PREFIX_OK
from airisd.logquery import And, Kind, Match, Node, Not, Or
from airisd.logquery import _ascii_lower as ascii_lower  # the language's own case rule
from airisd.logquery import _level_target as level_target
from airisd.logquery import _number as number
from airisd.logquery import _query_tokens as query_tokens
from airisd.model import LogRecord

EXACT_FIELDS = ("level", "service", "trace_id", "span_id", "user_id", "request_id")
TOKEN_COLUMNS = {"message": ("message_tokens",), "stack_trace": ("stack_tokens",),
                 None: ("message_tokens", "stack_tokens", "meta_tokens")}
SELECT = ("toUnixTimestamp64Nano(timestamp), level, service, message, trace_id, span_id, labels, stack_trace, "
          "user_id, request_id, attributes_json")


class Compiler:
    """A query AST to a ClickHouse condition that is always 0 or 1 (so NOT works), with params."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}

    def bind(self, value: Any, type_: str) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"{{{name}:{type_}}}"

    def node(self, node: Node) -> str:
        if isinstance(node, Match):
            return self.match(node)
        if isinstance(node, Not):
            return f"NOT ({self.node(node.child)})"
        op = " AND " if isinstance(node, And) else " OR "
        assert isinstance(node, And | Or)
        return "(" + op.join(self.node(c) for c in node.children) + ")"

    def match(self, m: Match) -> str:
        f = m.field
        if f is None or f in ("message", "stack_trace"):
            return self.words(TOKEN_COLUMNS[f], m)
        if f in EXACT_FIELDS:
            return self.exact(f, m)
        if f.startswith("labels."):
            key = self.bind(f[len("labels."):], "String")
            return f"(mapContains(labels, {key}) AND {self.exact(f'labels[{key}]', m)})"
        return self.attribute(f, m)

    def words(self, columns: tuple[str, ...], m: Match) -> str:
        if m.kind is Kind.PREFIX:
            p = m.value.lower()
            if not PREFIX_OK.fullmatch(p):
                return "0"
            bound = self.bind(p, "String")
            return "(" + " OR ".join(f"arrayExists(t -> startsWith(t, {bound}), {c})" for c in columns) + ")"
        run = list(query_tokens(m.value))
        if not run:
            return "0"
        if len(run) == 1:
            bound = self.bind(run[0], "String")
            return "(" + " OR ".join(f"has({c}, {bound})" for c in columns) + ")"
        bound = self.bind(run, "Array(String)")
        return "(" + " OR ".join(f"hasSubstr({c}, {bound})" for c in columns) + ")"

    def exact(self, column: str, m: Match) -> str:
        if m.kind is Kind.PREFIX:
            return f"startsWith(lower({column}), {self.bind(ascii_lower(m.value), 'String')})"
        target = level_target(m.value) if m.field == "level" else m.value
        return f"lower({column}) = {self.bind(ascii_lower(target), 'String')}"

    def attribute(self, key: str, m: Match) -> str:
        k = self.bind(key, "String")
        typ = f"JSONType(attributes_json, {k})"
        text = f"lower(JSONExtractString(attributes_json, {k}))"
        if m.kind is Kind.PREFIX:
            return f"({typ} = 'String' AND startsWith({text}, {self.bind(ascii_lower(m.value), 'String')}))"
        # JSONType says Null for a missing key too: a record without the attribute never matches.
        has = f"JSONHas(attributes_json, {k})"
        word = ascii_lower(m.value)
        branches = [f"({typ} = 'String' AND {text} = {self.bind(word, 'String')})"]
        num = number(m.value)
        if isinstance(num, int):
            n = self.bind(num, "Int64")
            branches += [f"({typ} = 'Int64' AND JSONExtractInt(attributes_json, {k}) = {n})",
                         f"({typ} = 'UInt64' AND toInt128(JSONExtractUInt(attributes_json, {k})) = {n})",
                         f"({typ} = 'Double' AND JSONExtractFloat(attributes_json, {k}) = {n})"]
        elif isinstance(num, float):
            x = self.bind(num, "Float64")
            branches += [f"({typ} IN ('Int64', 'UInt64', 'Double') AND JSONExtractFloat(attributes_json, {k}) = {x})"]
        if word in ("true", "false"):
            branches.append(f"({typ} = 'Bool' AND JSONExtractBool(attributes_json, {k}) = {int(word == 'true')})")
        if word == "null":
            branches.append(f"({has} AND {typ} = 'Null')")
        return "(" + " OR ".join(branches) + ")"


def with_filters(query: Node | None, level: str | None, service: str | None) -> Node | None:
    """The ``level``/``service`` parameters mean what ``level:``/``service:`` mean in a query."""
    parts: list[Node] = []
    if query is not None:
        parts.extend(query.children if isinstance(query, And) else (query,))
    if level:
        parts.append(Match("level", level, Kind.TERM))
    if service:
        parts.append(Match("service", service, Kind.TERM))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def compile_query(node: Node | None, from_ns: int, to_ns: int) -> tuple[str, dict[str, Any]]:
    c = Compiler()
    where = [f"timestamp >= fromUnixTimestamp64Nano({c.bind(from_ns, 'Int64')}, 'UTC')",
             f"timestamp <= fromUnixTimestamp64Nano({c.bind(to_ns, 'Int64')}, 'UTC')"]
    if node is not None:
        where.append(c.node(node))
    return " AND ".join(where), c.params


def record(row: tuple[Any, ...]) -> LogRecord:
    ts, level, service, message, trace_id, span_id, labels, stack_trace, user_id, request_id, attrs = row
    return LogRecord(ts=int(ts), level=level, service=service, message=message, trace_id=trace_id, span_id=span_id,
                     labels=dict(labels), stack_trace=stack_trace, user_id=user_id, request_id=request_id,
                     attributes=orjson.loads(attrs) if attrs else {})


class ClickHouseLogStore:
    """Reads the ``logs`` table (see the module docstring); methods as the SQLite LogStore's."""

    def __init__(self, client_factory: Any, database: str) -> None:
        self._client_factory = client_factory
        self.table = f"`{database}`.logs"

    def _rows(self, sql: str, params: dict[str, Any]) -> list[tuple]:
        try:
            return self._client_factory().query(sql, parameters=params).result_rows
        except (TransientError, PermanentError):
            raise
        except Exception as exc:  # unreachable or failing: TransientError, which the roles answer with 503
            raise classify(exc, "log query") from exc

    def search(self, query: Node | None, *, level: str | None = None, service: str | None = None,
               from_ns: int, to_ns: int, limit: int) -> list[LogRecord]:
        """Records in [from_ns, to_ns] that match query and the level/service filters, newest first."""
        where, params = compile_query(with_filters(query, level, service), from_ns, to_ns)
        params["limit"] = limit
        rows = self._rows(f"SELECT {SELECT} FROM {self.table} WHERE {where} ORDER BY timestamp DESC "
                          "LIMIT {limit:UInt64}", params)
        return [record(r) for r in rows]

    def count(self, query: Node | None, from_ns: int, to_ns: int) -> int:
        """How many records in [from_ns, to_ns] match query (the alert role's log rules)."""
        where, params = compile_query(query, from_ns, to_ns)
        return int(self._rows(f"SELECT count() FROM {self.table} WHERE {where}", params)[0][0])

    def page(self, *, page: int, size: int, sort_desc: bool = True, level: str | None = None,
             service: str | None = None, from_ns: int, to_ns: int) -> tuple[int, list[LogRecord]]:
        """Page ``page`` (from 1) of ``size`` records in time order, and the total that match."""
        if page < 1 or size < 1:
            raise ValueError(f"page and size start at 1, got page={page} size={size}")
        where, params = compile_query(with_filters(None, level, service), from_ns, to_ns)
        total = int(self._rows(f"SELECT count() FROM {self.table} WHERE {where}", params)[0][0])
        offset = (page - 1) * size
        if offset >= total:
            return total, []
        params["limit"], params["offset"] = size, offset
        order = "DESC" if sort_desc else "ASC"
        rows = self._rows(f"SELECT {SELECT} FROM {self.table} WHERE {where} ORDER BY timestamp {order} "
                          "LIMIT {limit:UInt64} OFFSET {offset:UInt64}", params)
        return total, [record(r) for r in rows]

    def count_all(self) -> int:
        return int(self._rows(f"SELECT count() FROM {self.table}", {})[0][0])

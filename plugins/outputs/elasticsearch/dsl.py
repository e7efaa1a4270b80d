"""Our log query language (``airisd.logquery``) as Elasticsearch query DSL.

``to_dsl(node)`` gives the same answers as ``logquery.matches`` and the SQLite store, over the
document that ``template.document`` writes:

- a bare term, phrase or prefix is a ``bool.should`` over ``message``, ``stack_trace`` and the
  ``words`` sub-field of the six short fields, all analysed by ``airis_words`` (our tokenizer):
  one word is a ``term``, several words a ``match_phrase`` (one after the other, in one field), a
  prefix a ``prefix`` on the words; a term without words, or a prefix no word can start with,
  matches nothing (``match_none``);
- ``level:``, ``service:``, the ids and ``labels.KEY:`` are ``term``/``prefix`` queries on the
  ASCII-lower-cased copies in the ``airis`` flattened field (``level:`` aliases resolved first);
- any other field is an attribute: a ``terms`` query on its typed tokens (``s:``, ``n:``, ``b:``,
  ``z:null``), a prefix on ``s:`` + the prefix;
- AND, OR and NOT are ``bool`` ``filter``, ``should`` (at least one) and ``must_not``.
"""

from __future__ import annotations

import math
import re
from typing import Any

from airisd_plugins.outputs.elasticsearch.template import SHORT_FIELDS, TEXT_FIELDS, ascii_lower, canonical_number

from airisd.logparse import is_level_word, normalize_level
from airisd.logquery import And, Kind, Match, Node, Not, tokenize

MATCH_NONE: dict[str, Any] = {"match_none": {}}
MATCH_ALL: dict[str, Any] = {"match_all": {}}
SEARCHED = (*TEXT_FIELDS, *(f + ".words" for f in SHORT_FIELDS))  # logquery.SEARCHED_FIELDS
_PREFIX_OK = re.compile(r"\w[\w.\-]*")  # logquery._PREFIX_OK: a word starts with a word character
_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")


def _number(text: str) -> int | float | None:
    """logquery._number: the query value as a number, when it is one."""
    if not _NUMBER.fullmatch(text):
        return None
    if "." in text or "e" in text or "E" in text:
        f = float(text)
        return f if math.isfinite(f) else None
    i = int(text)
    return i if -(2**63) <= i < 2**63 else float(i)


def _any(clauses: list[dict[str, Any]]) -> dict[str, Any]:
    return clauses[0] if len(clauses) == 1 else {"bool": {"should": clauses, "minimum_should_match": 1}}


def _words(m: Match) -> dict[str, Any]:
    columns = SEARCHED if m.field is None else (m.field,)
    if m.kind is Kind.PREFIX:
        p = m.value.lower()
        if not _PREFIX_OK.fullmatch(p):
            return MATCH_NONE
        return _any([{"prefix": {c: p}} for c in columns])
    run = tokenize(m.value)
    if not run:
        return MATCH_NONE
    if len(run) == 1:
        return _any([{"term": {c: run[0]}} for c in columns])
    phrase = " ".join(run)
    return _any([{"match_phrase": {c: phrase}} for c in columns])


def _whole(key: str, m: Match, *, level: bool = False) -> dict[str, Any]:
    if m.kind is Kind.PREFIX:
        return {"prefix": {key: ascii_lower(m.value)}}
    value = normalize_level(m.value) if level and is_level_word(m.value) else m.value
    return {"term": {key: ascii_lower(value)}}


def _attribute(key: str, m: Match) -> dict[str, Any]:
    if m.kind is Kind.PREFIX:
        return {"prefix": {key: "s:" + ascii_lower(m.value)}}
    word = ascii_lower(m.value)
    tokens = ["s:" + word]
    num = _number(m.value)
    if num is not None:
        tokens.append("n:" + canonical_number(num))
    if word in ("true", "false"):
        tokens.append("b:" + word)
    if word == "null":
        tokens.append("z:null")
    return {"terms": {key: tokens}} if len(tokens) > 1 else {"term": {key: tokens[0]}}


def match_query(m: Match) -> dict[str, Any]:
    f = m.field
    if f is None or f in TEXT_FIELDS:
        return _words(m)
    if f in SHORT_FIELDS:
        return _whole("airis." + f, m, level=f == "level")
    if f.startswith("labels."):
        return _whole("airis.label." + f[len("labels."):], m)
    return _attribute("airis.attr." + f, m)


def to_dsl(node: Node | None) -> dict[str, Any]:
    """The query for a node (None: every record)."""
    if node is None:
        return MATCH_ALL
    if isinstance(node, Match):
        return match_query(node)
    if isinstance(node, Not):
        return {"bool": {"must_not": [to_dsl(node.child)]}}
    children = [to_dsl(c) for c in node.children]
    if isinstance(node, And):
        return {"bool": {"filter": children}}
    return {"bool": {"should": children, "minimum_should_match": 1}}


def time_range(from_ns: int, to_ns: int) -> dict[str, Any]:
    """Both ends included, to the nanosecond (``ts_ns`` is a long)."""
    return {"range": {"ts_ns": {"gte": from_ns, "lte": to_ns}}}


def search_query(node: Node | None, *, level: str | None = None, service: str | None = None,
                 from_ns: int, to_ns: int) -> dict[str, Any]:
    """A search's whole query: the time range, the level/service parameters (the same as
    ``level:`` and ``service:`` in the query) and the query."""
    parts = [time_range(from_ns, to_ns)]
    if level:
        parts.append(match_query(Match("level", level, Kind.TERM)))
    if service:
        parts.append(match_query(Match("service", service, Kind.TERM)))
    if node is not None:
        parts.append(to_dsl(node))
    return {"bool": {"filter": parts}}

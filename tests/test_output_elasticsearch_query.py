"""Our query language translated to Elasticsearch DSL, checked against the SQLite store.

The oracle: the same random logs are written to the SQLite ``LogStore`` and, through the output's
own document encoding, to noida-db's Elasticsearch API; the same random queries (from the query
language's grammar, as tests/test_logs_store.py draws them) must give the same hits in the same
order, the same counts and the same pages. Every translated query is also sent to the server, which
must accept it (a 400 fails the test).

noida-db is an emulator, not Elasticsearch. Where it differs and what the generator does about it:
- it compares ``long`` ranges as doubles (a bound 1 ns from a record's nanosecond can land on
  either side at today's epoch; real Elasticsearch compares longs exactly): the generator's
  instants are those of test_logs_store, below 2**53 ns, where doubles are exact;
- it shows new documents to searches only after a refresh: the test refreshes, as real
  Elasticsearch also needs (1 s by default);
- it stores ``_source`` re-encoded, and its number parser can be one unit in the last place off
  (2**-24, sent as ``5.960464477539063e-8``, comes back as ``...064e-8``; real Elasticsearch returns
  ``_source`` byte for byte): hits are compared with floats allowed to differ by one ulp;
- its pattern tokenizer ignores ``"flags": "UNICODE_CHARACTER_CLASS"``, so its ``\\w`` is ASCII
  only (``Äpi`` is indexed as ``pi``, ``데이터베이스`` not at all; real Elasticsearch honours the
  flag, which is Java's ``Pattern.UNICODE_CHARACTER_CLASS``): the records written here spell the
  generator's non-ASCII words in ASCII in the tokenized fields (message, stack trace and the six
  short fields), keeping the letter case, so that ``Äpi``/``äpi`` still differ only by case.
  Labels and attributes, which are not tokenized, keep their non-ASCII values.
"""

from __future__ import annotations

import itertools
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from airisd_plugins.outputs.elasticsearch.dsl import MATCH_NONE, SEARCHED, search_query, to_dsl
from airisd_plugins.outputs.elasticsearch.store import EsLogStore
from airisd_plugins.outputs.elasticsearch.template import SHORT_FIELDS, index_template
from airisd_plugins.outputs.elasticsearch.writer import prepare
from airisd_plugins.outputs.sqlite.logs_store import LogStore
from elasticsearch import Elasticsearch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airisd.logquery import Kind, Match, Node, parse
from airisd.model import LogRecord
from tests.servers import ServerProcess
from tests.test_logs_store import ALL, instants, queries, record_sets
from tests.test_output_elasticsearch import noida  # noqa: F401  (the module's server fixture)

_n = itertools.count()
# The generator's non-ASCII words (tests/test_logs_store.py) in ASCII, case kept (see the docstring).
_ASCII_SPELLING = {"데이터베이스": "deiteobeiseu", "서비스": "seobiseu", "Äpi": "Aepi", "äpi": "aepi"}
_TOKENIZED = ("message", "stack_trace", *SHORT_FIELDS)


def _ascii_spelled(rec: LogRecord) -> LogRecord:
    changes = {}
    for f in _TOKENIZED:
        value = getattr(rec, f)
        for word, ascii_word in _ASCII_SPELLING.items():
            value = value.replace(word, ascii_word)
        assert value.isascii(), value  # a new non-ASCII word in the generator belongs in _ASCII_SPELLING
        changes[f] = value
    return msgspec.structs.replace(rec, **changes)


noida_record_sets = record_sets().map(lambda recs: [_ascii_spelled(r) for r in recs])


@pytest.fixture(scope="module")
def es(noida: ServerProcess) -> Iterator[Elasticsearch]:  # noqa: F811
    client = Elasticsearch(noida.url)
    body = index_template("hq-", shards=1, replicas=0)
    meta = body.pop("_meta")
    client.indices.put_index_template(name="hq", meta=meta, **body)
    yield client
    client.close()


# -- unit: the translation's shape -----------------------------------------------------------------
def test_bare_word_searches_the_text_and_the_short_fields() -> None:
    q = to_dsl(parse("Database"))
    should = q["bool"]["should"]
    assert {"term": {"message": "database"}} in should and {"term": {"request_id.words": "database"}} in should
    assert to_dsl(parse('"connection failed"'))["bool"]["should"][0] == {
        "match_phrase": {"message": "connection failed"}}  # fmt: skip


def test_whole_value_fields_use_the_lower_cased_copies() -> None:
    assert to_dsl(parse("level:warning")) == {"term": {"airis.level": "warn"}}
    assert to_dsl(parse("service:User*")) == {"prefix": {"airis.service": "user"}}
    assert to_dsl(parse("labels.a.b:X")) == {"term": {"airis.label.a.b": "x"}}
    assert to_dsl(parse("http.status:500")) == {"terms": {"airis.attr.http.status": ["s:500", "n:500"]}}
    assert to_dsl(parse("ok:TRUE")) == {"terms": {"airis.attr.ok": ["s:true", "b:true"]}}


def test_words_are_unicode_words_as_in_sqlite() -> None:
    # The emulator ignores the flag (module docstring), so only the template can show it is asked for:
    # without it Java's \\w, and so Elasticsearch's, is ASCII only and "데이터베이스" is no word.
    tokenizer = index_template("x-", shards=1, replicas=0)["template"]["settings"]["analysis"]["tokenizer"]
    assert tokenizer["airis_words"]["flags"] == "UNICODE_CHARACTER_CLASS"
    assert to_dsl(parse("데이터베이스")) == _any_term("데이터베이스") and to_dsl(parse("Äpi")) == _any_term("äpi")


def _any_term(word: str) -> dict[str, Any]:
    return {"bool": {"should": [{"term": {c: word}} for c in SEARCHED], "minimum_should_match": 1}}


def test_operators() -> None:
    q = to_dsl(parse("a OR b -c"))
    assert q["bool"]["minimum_should_match"] == 1
    assert q["bool"]["should"][1]["bool"]["filter"][1] == {"bool": {"must_not": [to_dsl(parse("c"))]}}
    assert to_dsl(Match(None, "!!!", Kind.TERM)) == MATCH_NONE and to_dsl(Match(None, "-x", Kind.PREFIX)) == MATCH_NONE


def _same(a: Any, b: Any) -> bool:
    """Equal, except that two floats may differ by one ulp (the emulator's number parser, above)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or abs(a - b) <= math.ulp(max(abs(a), abs(b)))
    if isinstance(a, msgspec.Struct) and type(a) is type(b):
        return _same(msgspec.structs.astuple(a), msgspec.structs.astuple(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    if isinstance(a, list | tuple) and type(a) is type(b):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def assert_same(es_answer: Any, sqlite_answer: Any) -> None:
    assert es_answer == sqlite_answer or _same(es_answer, sqlite_answer), (es_answer, sqlite_answer)


def test_one_ulp_is_the_only_slack() -> None:
    x = 2.0**-24
    assert _same([{"a": x}], [{"a": math.nextafter(x, 1)}]) and not _same([{"a": x}], [{"a": x * (1 + 1e-15)}])
    assert not _same({"a": 1}, {"a": 1.0}) and not _same([x], (x,)) and not _same({"a": x}, {"b": x})


# -- the oracle ------------------------------------------------------------------------------------
@given(
    recs=noida_record_sets,
    searches=st.lists(st.tuples(
        st.one_of(st.none(), queries),
        st.sampled_from([None, None, "ERROR", "warning", "Unknown"]),
        st.sampled_from([None, None, "user-api", "äpi"]),
        st.tuples(instants, instants | st.just(ALL[1])),
        st.integers(1, 30),
    ), min_size=1, max_size=4),
)  # fmt: skip
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_elasticsearch_answers_what_sqlite_answers(
    es: Elasticsearch, recs: list[LogRecord],
    searches: list[tuple[Node | None, str | None, str | None, tuple[int, int], int]],
) -> None:  # fmt: skip
    prefix = f"hq-{next(_n)}-"
    docs = prepare(recs, prefix=prefix, date_format="%Y.%m.%d", content_ids=True)
    if docs:
        body = b"\n".join(line for d in docs for line in (d.action, d.body)) + b"\n"
        resp = es.bulk(operations=body, refresh=True)  # type: ignore[arg-type]
        assert not resp["errors"], resp["items"]
    store = EsLogStore(es, prefix)
    with tempfile.TemporaryDirectory() as d:
        sq = LogStore(Path(d), synchronous="OFF")
        sq.open()
        try:
            sq.write_batches([recs])
            for query, level, service, (lo, hi), limit in searches:
                es.count(index=prefix + "*", query=search_query(query, level=level, service=service, from_ns=lo,
                                                                to_ns=hi), allow_no_indices=True)  # accepted
                kw = {"level": level, "service": service, "from_ns": lo, "to_ns": hi}
                assert_same(store.search(query, limit=limit, **kw), sq.search(query, limit=limit, **kw))
                assert store.count(query, lo, hi) == sq.count(query, lo, hi)
                for desc in (True, False):
                    assert_same(store.page(page=2, size=3, sort_desc=desc, **kw),
                                sq.page(page=2, size=3, sort_desc=desc, **kw))
        finally:
            sq.close()
            if docs:
                es.indices.delete(index=",".join(sorted({d.index for d in docs})))


HANDPICKED = [
    "database", "Database.connect", "database*", '"connection failed"', '"failed connection"', "level:warning",
    "level:ERROR -service:user-api", "service:USER*", "http.status:500", "http.status:500.0", "http.status:5e2",
    'http.status:"500"', "ratio:0.25", "ratio:.25", "ok:true", "ok:TRUE", "none:null", "list:1", "obj:v",
    "labels.component:DATABASE", "labels.a.b:x", "trace_id:ABC123DEF456", "req_67890", "user-api", "!!!",
    "missing:x", "NOT missing:x", "text:한국어*", "(timeout OR database) AND NOT debug", "tiny:5.960464477539063e-8",
]  # fmt: skip


def test_handpicked_queries_answer_what_sqlite_answers(es: Elasticsearch, tmp_path: Path) -> None:
    """The seed's record and a few neighbours, and the queries the docs show."""
    from tests.test_output_elasticsearch import full_record

    t = 1_705_314_600_000_000_000
    recs = [
        full_record(ts=t),
        full_record(ts=t + 1, message="connection timeout", level="WARN", service="billing", labels={"a.b": "X"},
                    attributes={"http.status": "500", "ratio": 0.25, "ok": False, "none": "null", "list": 1}),
        full_record(ts=t + 2, message="debug me", level="DEBUG", trace_id="", attributes={"http.status": 500.0,
                                                                                             "tiny": 2.0**-24}),
    ]  # fmt: skip
    prefix = f"hq-{next(_n)}-"
    docs = prepare(recs, prefix=prefix, date_format="%Y.%m.%d", content_ids=True)
    body = b"\n".join(line for d in docs for line in (d.action, d.body)) + b"\n"
    assert not es.bulk(operations=body, refresh=True)["errors"]  # type: ignore[arg-type]
    sq = LogStore(tmp_path, synchronous="OFF")
    sq.open()
    try:
        sq.write_batches([recs])
        store = EsLogStore(es, prefix)
        hits = 0
        for q in HANDPICKED:
            node = parse(q)
            expected = sq.search(node, from_ns=ALL[0], to_ns=ALL[1], limit=10)
            assert_same(store.search(node, from_ns=ALL[0], to_ns=ALL[1], limit=10), expected)
            hits += len(expected)
        assert hits > len(HANDPICKED)  # the queries do find things
    finally:
        sq.close()

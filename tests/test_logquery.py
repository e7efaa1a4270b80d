"""The log query language: parse/print round trips, syntax errors, and the evaluator's semantics.
(The store's search is checked against ``matches`` in test_logs_store.py.)"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airisd.errors import ValidationError
from airisd.logquery import (
    MAX_DEPTH,
    MAX_TERMS,
    And,
    Kind,
    Match,
    Node,
    Not,
    Or,
    QuerySyntaxError,
    index_text,
    matches,
    meta_text,
    parse,
    to_sql,
    to_string,
    tokenize,
)
from airisd.model import LogRecord

T, P, X = Kind.TERM, Kind.PHRASE, Kind.PREFIX

# -- strategies ------------------------------------------------------------------------------

field_names = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "message",
            "level",
            "service",
            "trace_id",
            "labels.component",
            "http.status",
            "@version",
            "k8s/pod-name",
            "사용자",
        ]
    ),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-/@]{0,12}", fullmatch=True).filter(
        lambda f: f != "labels" and f != "labels."
    ),
)


@st.composite
def matches_st(draw: st.DrawFn) -> Match:
    field = draw(field_names)
    kind = draw(st.sampled_from(list(Kind)))
    value = draw(st.text(min_size=0 if kind is Kind.PHRASE else 1, max_size=12))
    return Match(field, value, kind)


def trees(leaves: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    return st.recursive(
        leaves,
        lambda kids: st.one_of(
            kids.map(Not),
            st.lists(kids, min_size=2, max_size=4).map(lambda cs: And(tuple(cs))),
            st.lists(kids, min_size=2, max_size=4).map(lambda cs: Or(tuple(cs))),
        ),
        max_leaves=12,
    )


# -- round trips -----------------------------------------------------------------------------


@given(trees(matches_st()))
@settings(max_examples=500)
def test_printed_query_parses_back_to_the_same_tree(node: Node) -> None:
    text = to_string(node)
    assert parse(text) == node, text


@given(st.text(max_size=60))
@settings(max_examples=500)
def test_any_text_parses_or_raises_a_syntax_error_and_printing_is_a_fixed_point(q: str) -> None:
    try:
        node = parse(q)
    except QuerySyntaxError as exc:
        assert 0 <= exc.details["position"] <= len(q)
        assert exc.details["field"] == "q" and exc.details["expected"]
        return
    assert parse(to_string(node)) == node


@given(st.text(alphabet='ab :*"()-\\ANDORT', max_size=30))
@settings(max_examples=500)
def test_query_syntax_alphabet_fuzz(q: str) -> None:
    try:
        node = parse(q)
    except QuerySyntaxError:
        return
    assert parse(to_string(node)) == node


@pytest.mark.parametrize(
    ("q", "tree"),
    [
        ("database", Match(None, "database")),
        ("database AND error", And((Match(None, "database"), Match(None, "error")))),
        ("database error", And((Match(None, "database"), Match(None, "error")))),
        ("level:ERROR AND message:database", And((Match("level", "ERROR"), Match("message", "database")))),
        ('"connection failed"', Match(None, "connection failed", P)),
        ('message:"connection failed"', Match("message", "connection failed", P)),
        ("labels.component:database", Match("labels.component", "database")),
        ("http.status:500", Match("http.status", "500")),
        ("data*", Match(None, "data", X)),
        ("service:user*", Match("service", "user", X)),
        ("a OR b c", Or((Match(None, "a"), And((Match(None, "b"), Match(None, "c")))))),
        ("(a OR b) c", And((Or((Match(None, "a"), Match(None, "b"))), Match(None, "c")))),
        ("NOT a b", And((Not(Match(None, "a")), Match(None, "b")))),
        ("-a", Not(Match(None, "a"))),
        ('-"a b"', Not(Match(None, "a b", P))),
        ("-(a OR b)", Not(Or((Match(None, "a"), Match(None, "b"))))),
        ("a-b", Match(None, "a-b")),
        ("a -", And((Match(None, "a"), Match(None, "-")))),
        ("and or not", And((Match(None, "and"), Match(None, "or"), Match(None, "not")))),
        ("\\AND", Match(None, "AND")),
        ("url:http://x:1", Match("url", "http://x:1")),
        ("10:30", Match(None, "10:30")),
        ("a\\:b", Match(None, "a:b")),
        ("a\\*", Match(None, "a*")),
        ('trace_id:""', Match("trace_id", "", P)),
        ('"say \\"hi\\""', Match(None, 'say "hi"', P)),
        ("level:AND", Match("level", "AND")),
        ("a AND (b AND c)", And((Match(None, "a"), And((Match(None, "b"), Match(None, "c")))))),
    ],
)
def test_parse_examples(q: str, tree: Node) -> None:
    assert parse(q) == tree
    assert parse(to_string(tree)) == tree


def test_canonical_spelling() -> None:
    assert to_string(parse("a b OR c -d")) == "(a AND b) OR (c AND NOT d)"
    assert to_string(parse("level:ERROR message:database")) == "level:ERROR AND message:database"
    assert to_string(Match(None, "-x")) == "\\-x"
    assert to_string(Match(None, "OR")) == "\\OR"


# -- syntax errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "position", "expected"),
    [
        ("", 0, "a term"),
        ("   ", 3, "a term"),
        ("a AND", 5, "a term"),
        ("AND a", 0, "a term"),
        ("a OR OR b", 5, "a term"),
        ("(a", 2, "')'"),
        ("(a b", 4, "')'"),
        ("a)", 1, "end of query"),
        ("()", 1, "a term"),
        ('x "abc', 2, "closing '\"'"),
        ("level:", 6, "a value after 'level:'"),
        ("level: x", 6, "a value after 'level:'"),
        ("labels:x", 0, "labels.<key>"),
        ("labels.:x", 0, "labels.<key>"),
        ("a*b", 1, "'*' only at the end"),
        ("foo bar*baz*", 7, "'*' only at the end"),
        ("*", 0, "a term before '*'"),
        ("x:*", 2, "a term before '*'"),
        ("a\\", 1, "a character after '\\'"),
        ('"a\\', 2, "a character after '\\'"),
        ("NOT", 3, "a term"),
    ],
)
def test_syntax_errors_name_position_and_expectation(q: str, position: int, expected: str) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse(q)
    err = info.value
    assert isinstance(err, ValidationError) and err.status == 400 and err.code == "VALIDATION_ERROR"
    assert err.details["field"] == "q"
    assert err.details["position"] == position, err.message
    assert expected in err.details["expected"]
    assert f"position {position}" in err.message


def test_error_field_can_be_renamed_for_alert_rules() -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse("(", field="conditions.log_query")
    assert info.value.details["field"] == "conditions.log_query"


def test_limits() -> None:
    parse("(" * MAX_DEPTH + "a" + ")" * MAX_DEPTH)
    with pytest.raises(QuerySyntaxError, match="nesting"):
        parse("(" * (MAX_DEPTH + 1) + "a" + ")" * (MAX_DEPTH + 1))
    with pytest.raises(QuerySyntaxError, match="nesting"):
        parse("NOT " * (MAX_DEPTH + 1) + "a")
    parse(" ".join(["a"] * MAX_TERMS))
    with pytest.raises(QuerySyntaxError, match="terms"):
        parse(" ".join(["a"] * (MAX_TERMS + 1)))
    with pytest.raises(QuerySyntaxError, match="characters"):
        parse("a" * 10_000)


def test_nodes_reject_what_cannot_be_printed() -> None:
    with pytest.raises(ValueError):
        Match(None, "", Kind.TERM)
    with pytest.raises(ValueError):
        Match("1bad", "x")
    with pytest.raises(ValueError):
        Match("labels", "x")


# -- tokens and semantics --------------------------------------------------------------------


@given(st.text(alphabet=st.sampled_from(list("aZ9_.-é ٣\n:/")), max_size=40) | st.text(max_size=40))
def test_the_possessive_tokenizer_finds_the_plain_patterns_tokens(text: str) -> None:
    import re

    assert tokenize(text) == re.findall(r"\w+(?:[.\-]\w+)*", text.lower())


def test_tokenizer_keeps_identifiers_and_dotted_names() -> None:
    text = "User user_12345 ran db.query on 10.0.0.1 (v1.2.3) for user-api: Connection failed. e.g. a--b"
    assert tokenize(text) == ["user", "user_12345", "ran", "db.query", "on", "10.0.0.1", "v1.2.3", "for",
                              "user-api", "connection", "failed", "e.g", "a", "b"]  # fmt: skip
    assert index_text("Database.connect() 데이터베이스 오류") == "database.connect 데이터베이스 오류"


def rec(message: str = "", **kw: object) -> LogRecord:
    kw.setdefault("level", "INFO")
    return LogRecord(ts=1, message=message, **kw)  # type: ignore[arg-type]


SEED = LogRecord(
    ts=1,
    level="ERROR",
    message="Database connection failed",
    service="user-api",
    trace_id="abc123def456",
    span_id="789ghi012jkl",
    labels={"component": "database", "operation": "connect"},
    stack_trace="Error: Connection timeout\n  at Database.connect()\n  at UserService.init()",
    user_id="user_12345",
    request_id="req_67890",
    attributes={
        "http.status": 500,
        "ratio": 0.5,
        "ok": False,
        "gone": None,
        "tags": ["a"],
        "region": "KR-Seoul",
    },
)


@pytest.mark.parametrize(
    ("q", "hit"),
    [
        ("database", True),
        ("DATABASE", True),
        ("database AND error", True),  # "error" is the level (and in the stack trace)
        ("level:ERROR AND message:database", True),
        ("level:error", True),
        ("level:err", True),  # aliases are normalised
        ("level:WARN", False),
        ("level:ERR*", True),
        ("service:USER-API", True),
        ("service:user", False),  # whole value
        ("service:user*", True),
        ("user-api", True),  # bare terms see service
        ("user", False),  # ... as one token
        ('"connection failed"', True),
        ('"failed connection"', False),
        ('message:"connection failed"', True),
        ("message:timeout", False),  # only in the stack trace
        ("stack_trace:timeout", True),
        ("timeout", True),
        ("database.connect", True),
        ("connect", False),  # part of a compound token
        ("database.*", True),
        ("db.*", False),
        ("data*", True),
        ("user_12345", True),  # bare terms see the ids
        ("req_*", True),
        ("user_id:USER_12345", True),
        ("user_id:user", False),
        ("trace_id:abc*", True),
        ("labels.component:database", True),
        ("labels.component:DATA*", True),
        ("labels.component:data", False),
        ("labels.missing:x", False),
        ("http.status:500", True),
        ("http.status:500.0", True),
        ("http.status:5*", False),  # prefixes are for strings
        ("ratio:0.5", True),
        ("ratio:.5", False),
        ("ok:false", True),
        ("ok:0", False),
        ("gone:null", True),
        ("tags:a", False),
        ("region:kr-seoul", True),
        ("region:KR*", True),
        ("NOT nothere", True),
        ("NOT missing.attr:x", True),
        ("nothere OR database", True),
        ("!!!", False),
        ("NOT !!!", True),
        ('"Database.connect()"', True),  # the phrase's own tokens: database.connect
        ('"at database.connect at"', True),
        ('"connection timeout at database.connect"', True),  # within one field
        ('"failed error"', False),  # not across fields
        ("a€*", False),
    ],
)
def test_semantics_on_the_seed_record(q: str, hit: bool) -> None:
    assert matches(parse(q), SEED) is hit


def test_ascii_case_folding_only_for_whole_value_fields() -> None:
    assert matches(parse("service:ÄPI"), rec(service="ÄPI"))
    assert not matches(parse("service:äpi"), rec(service="ÄPI"))  # SQLite NOCASE folds ASCII only
    assert matches(parse("äpi"), rec(service="ÄPI"))  # words are lower-cased fully


def test_numbers_booleans_and_strings_in_attributes() -> None:
    r = rec(attributes={"n": 7, "s": "7", "b": True, "f": float("nan"), "big": 2**70})
    assert matches(parse("n:7"), r) and matches(parse("n:7.0"), r) and matches(parse("n:+7"), r)
    assert matches(parse("s:7"), r) and not matches(parse("s:7.0"), r)
    assert matches(parse("b:TRUE"), r) and not matches(parse("b:1"), r)
    assert matches(parse("f:null"), r)
    assert not matches(parse("n:seven"), r)


def test_sql_plan_puts_text_in_the_fts_expression() -> None:
    f = to_sql(parse("database AND error"))
    assert f.fts == '("database" AND "error")' and f.where == "1" and f.params == ()
    f = to_sql(parse("level:ERROR AND message:database"))
    assert f.fts == 'message : "database"' and f.where == "l.level = ?" and f.params == ("ERROR",)
    f = to_sql(parse("database -timeout"))
    assert f.fts == '("database" NOT ("timeout"))'
    f = to_sql(parse("NOT database"))
    assert f.fts is None and f.where.startswith("NOT l.ts IN")
    f = to_sql(parse("db.* OR level:warn"))
    assert f.fts is None and f.params == ('"db." *', "WARN")
    assert to_sql(None).where == "1"
    f = to_sql(parse("trace_id:ABC123def456"))  # ids: the index finds candidates, SQL decides
    assert f.fts == 'meta : "abc123def456"' and f.where == "l.trace_id = ?"
    assert to_sql(parse("trace_id:abc*")).fts is None


def test_meta_column_keeps_fields_apart() -> None:
    meta = meta_text("ERROR", "user-api", "", "", "user_12345", "")
    assert meta == "error . user-api .  .  . user_12345 . "
    assert not matches(parse('"error user-api"'), SEED)  # a phrase never spans two fields
    assert not matches(parse(".*"), SEED) and not matches(Match(None, "-", X), SEED)


# The characters where the two tokenizers could disagree, among ordinary ones.
_TRICKY = st.text(st.sampled_from(list("ab_Z09 .-..--:/()'\"\t\n,;!?é€Ä한_")), max_size=40)


@given(st.one_of(_TRICKY, st.text(max_size=40)))
@settings(max_examples=400)
def test_fts5_sees_our_tokens_in_fts_text(text: str) -> None:
    """What the store gives FTS5 (its own ascii tokenizer, as the log store configures it) holds
    exactly tokenize()'s tokens, in order: read back from the index with fts5vocab."""
    import sqlite3

    from airisd.logquery import fts_text, index_text

    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(x, content='', columnsize=0, tokenize=\"ascii tokenchars '._-'\")")
    conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance')")
    given_text = fts_text(text)
    conn.execute("INSERT INTO t(rowid, x) VALUES (1, ?)", (given_text,))
    indexed = [term for term, _ in conn.execute("SELECT term, \"offset\" FROM v ORDER BY \"offset\"")]
    assert indexed == tokenize(text), (text, given_text)
    assert given_text == text or given_text == index_text(text)

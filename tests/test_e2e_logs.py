"""The log role end to end: `airisd run` as a subprocess, the seed's curls and the query language
over a real socket, bad input, and `kill -9` durability."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airisd import logquery
from airisd.logparse import record_from_json
from tests.e2e_helpers import AirisProcess

pytestmark = pytest.mark.e2e

ENVELOPE_KEYS = {"success", "data", "message", "timestamp", "request_id"}
# The seed's examples are from 2024, older than the default 30-day retention, which runs at start-up
# and could delete them mid-test: these daemons keep everything.
KEEP_ALL = ["--set", "outputs.sqlite.retention_days=0"]


def envelope_ok(resp: httpx.Response, status: int = 200) -> Any:
    """The seed's success envelope; returns its data."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == ENVELOPE_KEYS and body["success"] is True, body
    assert body["request_id"].startswith("req_") and body["timestamp"].endswith("Z")
    return body["data"]


def envelope_error(resp: httpx.Response, status: int, code: str = "VALIDATION_ERROR") -> dict[str, Any]:
    """The seed's error envelope; returns error.details."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"success", "error", "timestamp", "request_id"} and body["success"] is False, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return dict(body["error"]["details"])


@pytest.fixture(scope="module")
def airis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirisProcess]:
    proc = AirisProcess(tmp_path_factory.mktemp("logs") / "data", role="log", extra_args=KEEP_ALL).start()
    yield proc
    assert "Traceback" not in proc.log()
    proc.stop()


SEED_RECORD = {
    "timestamp": "2024-01-15T10:30:00Z",
    "level": "ERROR",
    "message": "Database connection failed",
    "service": "user-api",
    "trace_id": "abc123def456",
    "span_id": "789ghi012jkl",
    "labels": {"component": "database", "operation": "connect"},
    "stack_trace": "Error: Connection timeout\n  at Database.connect()\n  at UserService.init()",
    "user_id": "user_12345",
    "request_id": "req_67890",
}


def test_seed_log_curls(tmp_path: Path) -> None:
    airis = AirisProcess(tmp_path / "data", role="log", extra_args=KEEP_ALL).start()
    try:
        _seed_log_curls(airis)
        assert "Traceback" not in airis.log()
    finally:
        airis.stop()


def _seed_log_curls(airis: AirisProcess) -> None:
    c = airis.client("log")
    assert envelope_ok(c.post("/logs", json=SEED_RECORD), 201) == {"accepted": 1}
    # curl -d sends application/x-www-form-urlencoded unless told; the seed says text/plain.
    plain = "2024-01-15 10:30:00 ERROR [user-api] Database connection failed"
    assert envelope_ok(c.post("/logs/plain", content=plain, headers={"Content-Type": "text/plain"}), 201) == {
        "accepted": 1
    }
    assert envelope_ok(
        c.post(
            "/logs/plain",
            content=plain.replace("10:30:00", "10:30:01"),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ),
        201,
    ) == {"accepted": 1}
    batch = {
        "logs": [
            {"message": "cache warmed", "level": "info", "service": "user-api"},
            {
                "message": "disk almost full",
                "level": "warning",
                "service": "node-agent",
                "timestamp": "2024-01-15T10:45:00Z",
            },
        ]
    }
    assert envelope_ok(c.post("/logs/batch", json=batch), 201) == {"accepted": 2}

    window = {"from": "2024-01-15T10:00:00Z", "to": "2024-01-15T11:00:00Z"}
    # 키워드 검색
    data = envelope_ok(c.get("/logs/search", params={"q": "database", **window}))
    assert data["query"] == "database" and data["count"] == 3 and data["limit"] == 100
    structured = next(i for i in data["items"] if i.get("request_id") == "req_67890")
    assert structured == {**SEED_RECORD, "timestamp": "2024-01-15T10:30:00.000Z"}
    plain_item = data["items"][0]  # newest first: the 10:30:01 line
    assert plain_item == {
        "timestamp": "2024-01-15T10:30:01.000Z",
        "level": "ERROR",
        "message": "Database connection failed",
        "service": "user-api",
        "labels": {},
    }
    # 로그 레벨 필터링
    data = envelope_ok(c.get("/logs/search", params={"level": "ERROR", **window}))
    assert data["count"] == 3 and {i["level"] for i in data["items"]} == {"ERROR"}
    data = envelope_ok(c.get("/logs/search", params={"level": "warn", **window}))
    assert [i["message"] for i in data["items"]] == ["disk almost full"]
    # 서비스별 로그 조회: no time range means all time; the batch's first record is "now"
    data = envelope_ok(c.get("/logs/search", params={"service": "user-api", "limit": "100"}))
    assert data["count"] == 4 and data["items"][0]["message"] == "cache warmed"
    # 복합 검색: database AND error, the level word counts as text
    data = envelope_ok(c.get("/logs/search?q=database%20AND%20error&service=user-api&level=ERROR"))
    assert data["query"] == "database AND error" and data["count"] == 3

    # 페이징, 정렬, 복합 필터링 (API 사용 가이드 3)
    page = envelope_ok(c.get("/logs", params={"page": "1", "size": "50"}))
    assert (page["total"], page["page"], page["size"], page["sort"]) == (5, 1, 50, "timestamp:desc")
    times = [i["timestamp"] for i in page["items"]]
    assert times == sorted(times, reverse=True) and len(times) == 5
    asc = envelope_ok(c.get("/logs", params={"sort": "timestamp:asc"}))
    assert [i["timestamp"] for i in asc["items"]] == sorted(times)
    desc = envelope_ok(c.get("/logs", params={"sort": "timestamp:desc"}))
    assert [i["timestamp"] for i in desc["items"]] == times
    combo = envelope_ok(
        c.get(
            "/logs",
            params={"level": "ERROR", "service": "user-api", "from": "2024-01-15T10:00:00Z", "limit": "100"},
        )
    )
    assert combo["total"] == 3 and combo["size"] == 100
    assert {i["level"] for i in combo["items"]} == {"ERROR"}


# -- the query language over HTTP, on a small known data set ----------------------------------------

DATA_SET: list[dict[str, Any]] = [
    {
        "request_id": "r1",
        "timestamp": "2024-03-01T10:00:01Z",
        "level": "ERROR",
        "service": "user-api",
        "message": "Database connection failed",
        "labels": {"component": "database"},
        "http": {"status": 500},
    },
    {
        "request_id": "r2",
        "timestamp": "2024-03-01T10:00:02Z",
        "level": "WARN",
        "service": "user-api",
        "message": "Slow query on database replica",
        "labels": {"component": "database"},
        "http": {"status": 200},
    },
    {
        "request_id": "r3",
        "timestamp": "2024-03-01T10:00:03Z",
        "level": "INFO",
        "service": "order-api",
        "message": "Order created for user_12345",
        "labels": {"component": "http"},
        "region": "eu-west",
    },
    {
        "request_id": "r4",
        "timestamp": "2024-03-01T10:00:04Z",
        "level": "ERROR",
        "service": "order-api",
        "message": "Payment gateway timeout",
        "labels": {"component": "payments"},
        "retry": True,
    },
    {
        "request_id": "r5",
        "timestamp": "2024-03-01T10:00:05Z",
        "level": "DEBUG",
        "service": "order-api",
        "message": "connection pool failed over to db.replica",
        "labels": {"component": "database"},
    },
    {
        "request_id": "r6",
        "timestamp": "2024-03-01T10:00:06Z",
        "level": "INFO",
        "service": "user-api",
        "message": "Failed connection to cache",
        "labels": {"component": "cache"},
        "region": "us-east",
    },
    {
        "request_id": "r7",
        "timestamp": "2024-03-01T10:00:07Z",
        "level": "ERROR",
        "service": "auth",
        "message": "Datastore unavailable: datacenter east",
        "stack_trace": "at Database.connect()",
    },
    {
        "request_id": "r8",
        "timestamp": "2024-03-01T10:00:08Z",
        "level": "INFO",
        "service": "auth",
        "message": "User logged in",
        "labels": {"component": "http"},
        "http": {"status": 200},
    },
]

# (q, extra params, the request ids expected, newest first). Worked out by hand from the rules in
# docs/query-language.md, not by running the evaluator.
SEARCH_CASES: list[tuple[str, dict[str, str], list[str]]] = [
    ("database", {}, ["r2", "r1"]),
    ("DATABASE", {}, ["r2", "r1"]),  # case-insensitive
    ("database AND error", {}, ["r1"]),  # the level word is searchable text
    ("database error", {}, ["r1"]),  # a space is AND
    ("database OR gateway", {}, ["r4", "r2", "r1"]),
    ("connection AND NOT database", {}, ["r6", "r5"]),
    ("connection -database", {}, ["r6", "r5"]),
    ("NOT level:INFO AND service:auth", {}, ["r7"]),
    ("database OR payment AND timeout", {}, ["r4", "r2", "r1"]),  # AND binds tighter than OR
    ("(database OR payment) AND error", {}, ["r4", "r1"]),
    ('"connection failed"', {}, ["r1"]),  # a phrase: words next to each other, in order
    ('"failed connection"', {}, ["r6"]),
    ('message:"pool failed over"', {}, ["r5"]),
    ("data*", {}, ["r7", "r2", "r1"]),  # prefix: datastore, datacenter, database; not db.replica
    ("database*", {}, ["r7", "r2", "r1"]),  # Database.connect() in r7's stack trace is one token
    ("database.connect", {}, ["r7"]),
    ("db.replica", {}, ["r5"]),
    ("user_12345", {}, ["r3"]),  # identifiers stay one word
    ("r4", {}, ["r4"]),  # a pasted request id
    ("level:ERROR", {}, ["r7", "r4", "r1"]),
    ("level:warning", {}, ["r2"]),  # level aliases
    ("service:user-api", {}, ["r6", "r2", "r1"]),
    ("service:USER-API", {}, ["r6", "r2", "r1"]),
    ("service:order*", {}, ["r5", "r4", "r3"]),
    ("message:database", {}, ["r2", "r1"]),
    ("labels.component:database", {}, ["r5", "r2", "r1"]),
    ("labels.component:database AND level:ERROR", {}, ["r1"]),
    ("NOT labels.component:database", {}, ["r8", "r7", "r6", "r4", "r3"]),
    ("http.status:500", {}, ["r1"]),  # a nested attribute, flattened
    ("http.status:200", {}, ["r8", "r2"]),
    ("region:eu-west", {}, ["r3"]),
    ("region:EU*", {}, ["r3"]),
    ("retry:true", {}, ["r4"]),
    ("nosuchword", {}, []),
    ("connection", {"service": "order-api"}, ["r5"]),
    ("connection", {"level": "info"}, ["r6"]),
    ("", {"level": "ERROR", "service": "auth"}, ["r7"]),
    ("failed", {"from": "2024-03-01T10:00:02Z", "to": "2024-03-01T10:00:05Z"}, ["r5"]),
    ("", {"from": "2024-03-01T10:00:07Z"}, ["r8", "r7"]),
    ("", {"to": "2024-03-01T10:00:01Z"}, ["r1"]),  # both bounds inclusive
    ("", {"limit": "3"}, ["r8", "r7", "r6"]),  # newest first, cut at limit
]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirisProcess]:
    proc = AirisProcess(tmp_path_factory.mktemp("logs") / "data", role="log", extra_args=KEEP_ALL).start()
    c = proc.client("log")
    assert envelope_ok(c.post("/logs/batch", json={"logs": DATA_SET}), 201) == {"accepted": len(DATA_SET)}
    yield proc
    assert "Traceback" not in proc.log()
    proc.stop()


@pytest.mark.parametrize(
    ("q", "params", "expected"), SEARCH_CASES, ids=[c[0] or str(c[1]) for c in SEARCH_CASES]
)
def test_search_semantics(loaded: AirisProcess, q: str, params: dict[str, str], expected: list[str]) -> None:
    data = envelope_ok(loaded.client("log").get("/logs/search", params={"q": q, **params}))
    assert [i["request_id"] for i in data["items"]] == expected
    assert data["count"] == len(expected)


def test_attributes_come_back_as_sent(loaded: AirisProcess) -> None:
    item = envelope_ok(loaded.client("log").get("/logs/search", params={"q": "r4"}))["items"][0]
    assert item["attributes"] == {"retry": True} and item["labels"] == {"component": "payments"}
    item = envelope_ok(loaded.client("log").get("/logs/search", params={"q": "r1"}))["items"][0]
    assert item["attributes"] == {"http.status": 500}


def _random_query(rng: random.Random, depth: int = 0) -> str:
    atoms = [
        "database",
        "connection",
        "failed",
        "error",
        "data*",
        "conn*",
        '"connection failed"',
        "level:INFO",
        "level:ERROR",
        "service:user-api",
        "service:auth",
        "labels.component:database",
        "http.status:200",
        "region:eu-west",
        "message:replica",
        "user_12345",
        "db.replica",
        "timeout",
    ]
    if depth >= 2 or rng.random() < 0.4:
        atom = rng.choice(atoms)
        return f"NOT {atom}" if rng.random() < 0.2 else atom
    op = rng.choice([" AND ", " OR ", " "])
    return f"({_random_query(rng, depth + 1)}{op}{_random_query(rng, depth + 1)})"


def test_search_agrees_with_the_in_memory_evaluator(loaded: AirisProcess) -> None:
    """Random queries over HTTP (SQL + FTS5) against logquery.matches over the same records."""
    records = [(d["request_id"], record_from_json(d, received_ns=0)) for d in DATA_SET]
    rng = random.Random(4242)
    c = loaded.client("log")
    for _ in range(60):
        q = _random_query(rng)
        node = logquery.parse(q)
        want = [rid for rid, r in sorted(records, key=lambda x: -x[1].ts) if logquery.matches(node, r)]
        got = [i["request_id"] for i in envelope_ok(c.get("/logs/search", params={"q": q}))["items"]]
        assert got == want, q


def test_listing_pages_and_sorts(loaded: AirisProcess) -> None:
    c = loaded.client("log")
    seen: list[str] = []
    for page in (1, 2, 3):
        data = envelope_ok(c.get("/logs", params={"page": str(page), "size": "3"}))
        assert (data["total"], data["page"], data["size"]) == (8, page, 3)
        seen += [i["request_id"] for i in data["items"]]
    assert seen == [f"r{n}" for n in range(8, 0, -1)]
    data = envelope_ok(c.get("/logs", params={"page": "4", "size": "3"}))
    assert data["items"] == [] and data["total"] == 8
    data = envelope_ok(c.get("/logs", params={"page": "2", "size": "3", "sort": "timestamp:asc"}))
    assert [i["request_id"] for i in data["items"]] == ["r4", "r5", "r6"]
    data = envelope_ok(c.get("/logs", params={"level": "ERROR", "service": "order-api"}))
    assert data["total"] == 1 and data["items"][0]["request_id"] == "r4"
    data = envelope_ok(
        c.get(
            "/logs",
            params={"from": "2024-03-01T10:00:03Z", "to": "2024-03-01T10:00:04Z", "sort": "timestamp:asc"},
        )
    )
    assert [i["request_id"] for i in data["items"]] == ["r3", "r4"] and data["total"] == 2


# -- bad input ------------------------------------------------------------------------------------


def test_bad_input_gets_4xx_and_harms_nothing(airis: AirisProcess) -> None:
    c = airis.client("log")
    envelope_ok(
        c.post(
            "/logs", json={"message": "keep me", "service": "keeper", "timestamp": "2024-01-15T10:00:00Z"}
        ),
        201,
    )

    # query syntax errors name the position and what was expected
    details = envelope_error(c.get("/logs/search", params={"q": "(database OR"}), 400)
    assert details["field"] == "q" and details["position"] == 12 and details["expected"]
    details = envelope_error(c.get("/logs/search", params={"q": "database AND"}), 400)
    assert details["position"] == 12
    details = envelope_error(c.get("/logs/search", params={"q": 'message:"unclosed'}), 400)
    assert details["field"] == "q" and isinstance(details["position"], int)
    for q in ("da*ta", "level:", ")", "a OR OR b"):
        assert envelope_error(c.get("/logs/search", params={"q": q}), 400)["field"] == "q", q
    assert envelope_error(c.get("/logs/search", params={"q": "x" * 5000}), 400)["field"] == "q"

    # records
    assert envelope_error(c.post("/logs", json={"level": "ERROR", "service": "x"}), 400)["field"] == "message"
    assert envelope_error(c.post("/logs", json={"message": 42}), 400)["field"] == "message"
    assert (
        envelope_error(c.post("/logs", json={"message": "m", "timestamp": "yesterday"}), 400)["field"]
        == "timestamp"
    )
    assert envelope_error(c.post("/logs", json={"message": "m", "labels": {"a": {"b": 1}}}), 400)[
        "field"
    ].startswith("labels")
    assert envelope_error(c.post("/logs", json={"message": "x" * (65 * 1024)}), 400)["field"] == "message"
    assert (
        envelope_error(
            c.post("/logs", content=b"{not json", headers={"Content-Type": "application/json"}), 400
        )["field"]
        == "body"
    )
    assert envelope_error(c.post("/logs", json=["a"]), 400)["field"] == "body"
    details = envelope_error(
        c.post(
            "/logs/batch",
            json={
                "logs": [
                    {"message": "ok", "service": "half"},
                    {"level": "INFO"},
                    {"message": "ok too"},
                    {"message": None},
                ]
            },
        ),
        400,
    )
    assert details["index"] == 1 and details["field"] == "message"
    assert [e["index"] for e in details["errors"]] == [1, 3]
    envelope_error(c.post("/logs/batch", json={"logs": []}), 400)
    envelope_error(c.post("/logs/batch", json={"records": [{"message": "x"}]}), 400)

    # plain text: an over-long line is refused naming its line; invalid UTF-8 is replaced and stored
    body = "2024-01-15 10:00:01 INFO [plain] fine\n" + "y" * (70 * 1024) + "\n"
    details = envelope_error(c.post("/logs/plain", content=body, headers={"Content-Type": "text/plain"}), 400)
    assert details == {"field": "body", "line": 2}
    raw = b"2024-01-15 10:00:02 WARN [utf-svc] bad byte \xff\xfe here"
    assert envelope_ok(c.post("/logs/plain", content=raw, headers={"Content-Type": "text/plain"}), 201) == {
        "accepted": 1
    }
    item = envelope_ok(c.get("/logs/search", params={"service": "utf-svc"}))["items"][0]
    assert item["message"] == "bad byte \ufffd\ufffd here" and item["level"] == "WARN"
    envelope_error(c.post("/logs/plain", content=b"\n\n  \n", headers={"Content-Type": "text/plain"}), 400)
    envelope_error(
        c.post("/logs/plain", content=b"x", headers={"Content-Type": "application/json"}),
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    )

    # oversized bodies, declared or streamed, plain or gzip-inflated
    big = b"z" * (11 * 1024 * 1024)
    envelope_error(
        c.post("/logs/plain", content=big, headers={"Content-Type": "text/plain"}), 413, "PAYLOAD_TOO_LARGE"
    )
    envelope_error(
        c.post("/logs/plain", content=iter([big]), headers={"Content-Type": "text/plain"}),
        413,
        "PAYLOAD_TOO_LARGE",
    )
    import gzip

    envelope_error(
        c.post(
            "/logs/plain",
            content=gzip.compress(big),
            headers={"Content-Type": "text/plain", "Content-Encoding": "gzip"},
        ),
        413,
        "PAYLOAD_TOO_LARGE",
    )

    # absurd or malformed query parameters
    for params, field in [
        ({"size": "1000000"}, "size"),
        ({"size": "0"}, "size"),
        ({"page": "0"}, "page"),
        ({"page": "-1"}, "page"),
        ({"size": "ten"}, "size"),
        ({"sort": "level:asc"}, "sort"),
        ({"level": "LOUD"}, "level"),
        ({"from": "soon"}, "from"),
        ({"from": "2024-02-01T00:00:00Z", "to": "2024-01-01T00:00:00Z"}, "from"),
        ({"bogus": "1"}, "bogus"),
    ]:
        assert envelope_error(c.get("/logs", params=params), 400)["field"] == field, params
    for params, field in [
        ({"limit": "0"}, "limit"),
        ({"limit": "99999999"}, "limit"),
        ({"level": "LOUD"}, "level"),
        ({"to": "never"}, "to"),
        ({"page": "1"}, "page"),
    ]:
        assert envelope_error(c.get("/logs/search", params=params), 400)["field"] == field, params
    envelope_error(c.delete("/logs"), 405, "METHOD_NOT_ALLOWED")

    # nothing already stored was harmed, and the half-bad batch stored nothing
    data = envelope_ok(c.get("/logs", params={"service": "keeper"}))
    assert data["total"] == 1 and data["items"][0]["message"] == "keep me"
    assert envelope_ok(c.get("/logs", params={"service": "half"}))["total"] == 0
    assert (
        envelope_ok(c.get("/logs", params={"from": "2024-01-15T00:00:00Z", "to": "2024-01-16T00:00:00Z"}))[
            "total"
        ]
        == 2
    )
    assert "Traceback" not in airis.log()


def test_secrets_are_masked_before_storage(airis: AirisProcess) -> None:
    """The default config runs processors.redact on logs."""
    c = airis.client("log")
    envelope_ok(
        c.post(
            "/logs",
            json={
                "message": "login alice@example.com password=hunter2 card 4111 1111 1111 1111 "
                "order 1234567890123",
                "service": "redact-e2e",
                "stack_trace": "GET https://bob:s3cret@api.example.com/ Authorization: Bearer "
                "eyJhbGciOiJIUzI1NiJ9.e30.abcdefgh",
            },
        ),
        201,
    )
    item = envelope_ok(c.get("/logs/search", params={"service": "redact-e2e"}))["items"][0]
    assert item["message"] == "login [EMAIL] password=[REDACTED] card [CARD] order 1234567890123"
    assert "s3cret" not in item["stack_trace"] and "eyJhbGci" not in item["stack_trace"]
    assert envelope_ok(c.get("/logs/search", params={"q": "hunter2"}))["count"] == 0


def assert_4xx_envelope(resp: httpx.Response) -> None:
    """Refused input: a 4xx in the seed's error envelope, never a 5xx."""
    assert 400 <= resp.status_code < 500, resp.text
    assert resp.json()["success"] is False


QUERY_CHARS = st.text(alphabet='abc:*"()\\- ANDORT.', max_size=24) | st.text(max_size=24)


@settings(max_examples=30)
@given(q=QUERY_CHARS)
def test_any_query_is_answered_or_refused_with_a_position(loaded: AirisProcess, q: str) -> None:
    resp = loaded.client("log").get("/logs/search", params={"q": q})
    if resp.status_code == 200:
        assert envelope_ok(resp)["count"] >= 0
    else:
        details = envelope_error(resp, 400)
        assert details["field"] == "q" and isinstance(details.get("position"), int), details


@settings(max_examples=30)
@given(body=st.binary(max_size=300), path=st.sampled_from(["/logs", "/logs/batch", "/logs/plain"]))
def test_no_body_gets_a_5xx(airis: AirisProcess, body: bytes, path: str) -> None:
    ctype = "text/plain" if path.endswith("plain") else "application/json"
    resp = airis.client("log").post(path, content=body, headers={"Content-Type": ctype})
    if resp.status_code != 201:
        assert_4xx_envelope(resp)


# -- durability -----------------------------------------------------------------------------------


def test_kill_9_right_after_ack_loses_no_log(tmp_path: Path) -> None:
    proc = AirisProcess(tmp_path / "data", role="log").start()
    sent = 0
    t0 = time.time_ns() // 1_000_000 - 3_600_000  # ms, an hour ago: inside the default retention
    try:
        c = proc.client("log")
        for i in range(20):
            batch = [
                {
                    "message": f"durable record {i}-{j} token{i * 100 + j}",
                    "service": "durable",
                    "level": "INFO",
                    "timestamp": t0 + i * 100 + j,
                }
                for j in range(100)
            ]
            envelope_ok(c.post("/logs/batch", json={"logs": batch}), 201)
            sent += len(batch)
        minute = time.strftime("%Y-%m-%d %H:%M", time.gmtime(t0 / 1000))
        lines = "\n".join(f"{minute}:{s:02d} WARN [durable] plain line {s}" for s in range(10))
        envelope_ok(c.post("/logs/plain", content=lines, headers={"Content-Type": "text/plain"}), 201)
        sent += 10
        envelope_ok(
            c.post("/logs", json={"message": "the very last one", "service": "durable", "level": "ERROR"}),
            201,
        )
        sent += 1
        proc.kill9()
    finally:
        proc.stop()
    again = AirisProcess(tmp_path / "data", role="log").start()
    try:
        c = again.client("log")
        assert envelope_ok(c.get("/logs", params={"service": "durable", "size": "1"}))["total"] == sent
        assert envelope_ok(c.get("/logs/search", params={"q": '"very last"'}))["count"] == 1
        assert (
            envelope_ok(c.get("/logs/search", params={"q": "token1999"}))["items"][0]["message"]
            == "durable record 19-99 token1999"
        )
        assert envelope_ok(c.get("/logs/search", params={"level": "WARN"}))["count"] == 10
        assert "Traceback" not in again.log()
    finally:
        again.stop()

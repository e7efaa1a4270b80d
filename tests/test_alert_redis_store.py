"""The Redis alert store against a real redis-server: what the SQLite store's tests do not reach
(retention, paging with filters, atomic names, lost connections, configuration), and several
replicas on one Redis sending each notification exactly once.

The SQLite store's own behaviour tests are re-run over Redis by test_alert_redis_engine.py and
test_alert_redis_service.py; the fixtures they share are here."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

from airisd.alerting.config import AlertingConfig, alerting_config
from airisd.alerting.engine import AlertEngine
from airisd.alerting.redis_store import AlertCluster, RedisAlertStore, open_store, redis_url
from airisd.alerting.rules import Channel, Silence
from airisd.alerting.service import AlertService
from airisd.alerting.state import AlertState, HistoryEntry, NlogEntry
from airisd.alerting.store import AlertStore
from airisd.errors import ConfigError, NotFound, TransientError, ValidationError
from tests.conftest import FakeClock, make_ctx
from tests.servers import redis_server
from tests.test_alert_engine import CaptureChannel, FakeMetrics, Rig, add_channel, add_rule

S = 1_000_000_000
_prefixes = itertools.count()


@pytest.fixture(scope="session")
def redis_base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real redis-server for the session; each test uses its own key prefix."""
    server = redis_server(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield f"redis://127.0.0.1:{server.port}/0"
    finally:
        server.stop(kill=True)


def fresh_prefix() -> str:
    return f"test{next(_prefixes)}-{random.randrange(1 << 30)}:"


@pytest.fixture
def store(redis_base_url: str) -> Iterator[RedisAlertStore]:
    s = RedisAlertStore(redis_base_url, key_prefix=fresh_prefix())
    s.open()
    yield s
    s.close()


@pytest.fixture
def over_redis(redis_base_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """make_rig (tests/test_alert_engine.py) builds its engine on Redis, with the replica
    coordination on, one key prefix per data directory (so a restart finds its data)."""
    import tests.test_alert_engine as engine_tests

    prefixes: dict[Path, str] = {}

    def store_for(data_dir: Path) -> RedisAlertStore:
        prefix = prefixes.setdefault(Path(data_dir), fresh_prefix())
        return RedisAlertStore(redis_base_url, key_prefix=prefix)

    class ClusteredEngine(AlertEngine):
        def __init__(self, store: Any, **kwargs: Any) -> None:
            super().__init__(store, cluster=AlertCluster(store), **kwargs)

    monkeypatch.setattr(engine_tests, "AlertStore", store_for)
    monkeypatch.setattr(engine_tests, "AlertEngine", ClusteredEngine)


# -- the store ------------------------------------------------------------------------------------

def channel(name: str) -> Channel:
    return Channel(name=name, type="webhook", config={"url": "http://127.0.0.1:9/x"})


def test_channel_names_are_unique_and_follow_renames(store: RedisAlertStore) -> None:
    a = store.create_channel(channel("ops"), now_ns=1)
    with pytest.raises(ValidationError, match="'ops' exists already"):
        store.create_channel(channel("ops"), now_ns=2)
    renamed = store.replace_channel(a.id, channel("oncall"), now_ns=3)
    assert (renamed.created_ns, renamed.updated_ns) == (1, 3)
    assert store.channel_names() == {"oncall"}
    assert store.get_channel_by_name("ops") is None
    found = store.get_channel_by_name("oncall")
    assert found is not None and found.id == a.id
    b = store.create_channel(channel("ops"), now_ns=4)  # the old name is free again
    with pytest.raises(ValidationError):
        store.replace_channel(b.id, channel("oncall"), now_ns=5)
    store.delete_channel(a.id)
    assert store.channel_names() == {"ops"} and [c.id for c in store.list_channels()] == [b.id]
    with pytest.raises(NotFound):
        store.delete_channel(a.id)


def test_records_list_in_insertion_order(store: RedisAlertStore) -> None:
    made = [store.create_silence(Silence(rule_id=f"r{i}", starts_ns=0, ends_ns=10**12), now_ns=i) for i in range(30)]
    assert [s.id for s in store.list_silences()] == [s.id for s in made]
    assert len({s.id for s in made}) == 30 and all(s.id.startswith("sil_") for s in made)


def test_prune_drops_history_strictly_older_than_the_cutoff(store: RedisAlertStore) -> None:
    base = 1_790_000_000 * S  # ns above 2**53: the exact comparison is made on the records
    store.save_round(history=[HistoryEntry(ts_ns=base + d, kind="firing", group_key="g", rule_id="r")
                              for d in (-1000, -1, 0, 1, 1000)])
    store.create_silence(Silence(starts_ns=0, ends_ns=base - 1), now_ns=0)
    kept = store.create_silence(Silence(starts_ns=0, ends_ns=base), now_ns=0)
    assert store.prune(history_before_ns=base, silences_before_ns=base) == 3
    left, _ = store.list_history(limit=100)
    assert sorted(e.ts_ns - base for e in left) == [0, 1, 1000]
    by_rule, _ = store.list_history(rule_id="r", limit=100)
    assert len(by_rule) == 3
    assert [s.id for s in store.list_silences()] == [kept.id]
    assert store.prune(history_before_ns=base, silences_before_ns=base) == 0


def test_history_pages_filtered_by_kind_across_many_records(store: RedisAlertStore) -> None:
    kinds = ["firing", "resolved", "notification"]
    store.save_round(history=[HistoryEntry(ts_ns=i, kind=kinds[i % 3], group_key="g",  # type: ignore[arg-type]
                                           rule_id=f"r{i % 2}") for i in range(1000)])
    seen: list[int] = []
    before = None
    while True:
        page, before = store.list_history(limit=70, kind="notification", rule_id="r0", before_id=before)
        seen += [e.id for e in page]
        assert all(e.kind == "notification" and e.rule_id == "r0" for e in page)
        if before is None:
            break
    expected = [i + 1 for i in range(1000) if i % 3 == 2 and i % 2 == 0]
    assert seen == sorted(expected, reverse=True)


def test_save_round_and_forget_group(store: RedisAlertStore) -> None:
    def st(group: str, fp: str) -> AlertState:
        return AlertState(group_key=group, fingerprint=fp, labels={"fp": fp}, state="firing", active_ns=1)

    store.save_round(
        upsert=[st("rule:a", "1"), st("rule:a", "2"), st("rule:ab", "1")],
        nlog=[NlogEntry(group_key="rule:a", channel="ops", firing=["1"], ts_ns=5)],
    )
    store.save_round(delete=[("rule:a", "2")])
    assert sorted(s.key for s in store.load_states()) == [("rule:a", "1"), ("rule:ab", "1")]
    store.forget_group("rule:a")  # not rule:ab, whose name starts the same
    assert [s.key for s in store.load_states()] == [("rule:ab", "1")] and store.load_nlog() == []


def test_a_lost_connection_is_a_transient_error(tmp_path: Path) -> None:
    server = redis_server(tmp_path)
    server.start()
    s = RedisAlertStore(f"redis://127.0.0.1:{server.port}/0", key_prefix="x:", timeout_secs=1)
    try:
        s.create_rule(_rule(), now_ns=1)
        server.stop(kill=True)
        with pytest.raises(TransientError, match=f"127.0.0.1:{server.port}") as err:
            s.list_rules()
        assert err.value.status == 503  # HTTP clients are told to come back (Retry-After)
        server.start()
        assert s.list_rules() == []  # --save '': a restarted server is empty; the client reconnects
    finally:
        s.close()
        server.stop(kill=True)


def _rule() -> Any:
    from airisd.alerting.rules import rule_from_json

    return rule_from_json(
        {"name": "cpu", "conditions": {"metric": "cpu", "operator": "gt", "threshold": 1}, "channels": []},
        channel_names=set(),
    )


# -- configuration --------------------------------------------------------------------------------

def test_config_chooses_the_store(tmp_path: Path) -> None:
    sqlite, none = open_store(alerting_config({}), tmp_path)
    assert isinstance(sqlite, AlertStore) and none is None
    cfg = alerting_config({"store": "redis", "redis_host": "10.0.0.5", "redis_port": "6380",
                           "redis_password": "p@ss", "redis_db": 2, "redis_key_prefix": "prod:"})
    store, cluster = open_store(cfg, tmp_path)
    assert isinstance(store, RedisAlertStore) and cluster is not None
    assert store.url == "redis://:p%40ss@10.0.0.5:6380/2" and store.prefix == "prod:"
    assert redis_url(url="rediss://h:1/0", host="ignored") == "rediss://h:1/0"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"store": "memcached"}, "alerting.store: must be sqlite or redis, got 'memcached'"),
        ({"redis_url": "http://:secret@h:1"}, "alerting.redis_url: must start with redis://"),
        ({"redis_port": 0}, "alerting.redis_port: must be a TCP port, got 0"),
        ({"store": "redis", "dedup_lease_secs": 10}, "alerting.dedup_lease_secs: must cover a send's retries"),
        ({"dedup_ttl_secs": 0}, "alerting.dedup_ttl_secs: must be positive, got 0"),
    ],
)
def test_bad_config_names_the_option(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as err:
        alerting_config(section)
    assert "secret" not in str(err.value)


# -- replicas -------------------------------------------------------------------------------------

class SlowCapture(CaptureChannel):
    """Takes a while to send, so the other replica plans the same notification meanwhile."""

    async def send(self, notification: Any) -> None:
        await anyio.sleep(0.05)
        await super().send(notification)


def replica(url: str, prefix: str, clock: FakeClock, metrics: FakeMetrics, tmp_path: Path, n: int) -> Rig:
    store = RedisAlertStore(url, key_prefix=prefix)
    engine = AlertEngine(
        store,
        cluster=AlertCluster(store),
        channel_types={"capture": SlowCapture},
        config=AlertingConfig(repeat_interval_secs=3600.0),
        ctx=make_ctx(tmp_path / f"r{n}", clock=clock),
        metrics=metrics,
        rng=random.Random(n),
    )
    return Rig(engine, AlertService(engine), clock, metrics, FakeMetrics(), sent=CaptureChannel.sent)  # type: ignore[arg-type]


@pytest.mark.services
@pytest.mark.anyio
async def test_two_replicas_send_each_transition_exactly_once(
    redis_base_url: str, tmp_path: Path, fake_clock: FakeClock
) -> None:
    CaptureChannel.sent, CaptureChannel.failures = [], []
    prefix, metrics = fresh_prefix(), FakeMetrics()
    a = replica(redis_base_url, prefix, fake_clock, metrics, tmp_path, 1)
    b = replica(redis_base_url, prefix, fake_clock, metrics, tmp_path, 2)
    await add_channel(a, "ops")
    await add_rule(b, duration="0s")  # created through B, evaluated by both

    async def both_rounds(advance: float) -> None:
        fake_clock.advance(advance)
        async with anyio.create_task_group() as tg:  # at the same time: the claims race
            tg.start_soon(a.engine.evaluate_once)
            tg.start_soon(b.engine.evaluate_once)

    try:
        metrics.values["cpu.usage"] = 95
        for _ in range(3):
            await both_rounds(15)
        fired = CaptureChannel.sent[:]
        assert [n.status for n in fired] == ["firing"]
        metrics.values["cpu.usage"] = 10
        for _ in range(3):
            await both_rounds(15)
        metrics.values["cpu.usage"] = 99  # fires again: a new transition, a new notification
        for _ in range(3):
            await both_rounds(15)
        await both_rounds(3600)  # one repeat, not two
        assert [n.status for n in CaptureChannel.sent] == ["firing", "resolved", "firing", "firing"]
        history, _ = a.engine.store.list_history(kind="notification")
        assert len(history) == 4  # one entry per notification, whichever replica sent it
        assert [x.state for x in a.engine.active_alerts()] == [x.state for x in b.engine.active_alerts()]
        skipped = sum(r.engine.ctx.metrics.counter("alert_notifications_total", "", ("channel", "result")).get(
            "ops", "peer") for r in (a, b))
        assert skipped >= 1  # a replica found a notification sent by the other and did not send it
    finally:
        await a.engine.shutdown()
        await b.engine.shutdown()


@pytest.mark.services
def test_a_claim_is_taken_once_and_freed_by_expiry_or_failure(redis_base_url: str) -> None:
    prefix = fresh_prefix()
    one, two = RedisAlertStore(redis_base_url, key_prefix=prefix), RedisAlertStore(redis_base_url, key_prefix=prefix)
    a, b = AlertCluster(one, lease_secs=0.3), AlertCluster(two, lease_secs=0.3)
    try:
        assert a.claim("k1") == "won" and b.claim("k1") == "busy"
        a.settle("k1", sent=True)
        assert b.claim("k1") == "sent"
        assert a.claim("k2") == "won"
        a.settle("k2", sent=False)  # failed for now: anyone may retry
        assert b.claim("k2") == "won"
        b.settle("k1", sent=False)  # not b's claim: nothing changes
        assert a.claim("k1") == "sent"
        assert a.claim("k3") == "won"  # and then a dies while sending
        client = redis.Redis.from_url(redis_base_url)
        try:
            ttl = client.pttl(f"{prefix}dedup:k3")
        finally:
            client.close()
        assert 0 < ttl <= 300
        import time

        time.sleep(0.35)
        assert b.claim("k3") == "won"
        assert a.try_lock() and not b.try_lock()
        a.unlock()
        assert b.try_lock()
        b.unlock()
    finally:
        one.close()
        two.close()

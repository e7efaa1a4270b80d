"""The evaluator's state machine and notification rules, on a fake clock with fake sources and a
channel plugin that records what it is asked to send. No real sleeps."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import anyio
import anyio.lowlevel
import pytest

from airisd.alerting.config import AlertingConfig, RouteConfig
from airisd.alerting.engine import AlertEngine
from airisd.alerting.notification import Notification
from airisd.alerting.service import AlertService
from airisd.alerting.store import AlertStore
from airisd.errors import PermanentError, TransientError, ValidationError
from airisd.plugin import AlertChannel, PluginConfig
from tests.conftest import FakeClock, make_ctx

S = 1_000_000_000


class FakeMetrics:
    """metric -> value (None: no data); ``groups`` for group_by rules."""

    def __init__(self) -> None:
        self.values: dict[str, float | None] = {}
        self.groups: dict[str, list[tuple[dict[str, str], float]]] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.fail: Exception | None = None
        self.in_flight = 0
        self.max_in_flight = 0

    async def aggregate(
        self, metric: str, labels: dict[str, str], from_ns: int, to_ns: int, aggregation: str
    ) -> float | None:
        self.calls.append((metric, labels, from_ns, to_ns, aggregation))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await anyio.lowlevel.checkpoint()
            if self.fail is not None:
                raise self.fail
            return self.values.get(metric)
        finally:
            self.in_flight -= 1

    async def aggregate_by(
        self,
        metric: str,
        labels: dict[str, str],
        from_ns: int,
        to_ns: int,
        aggregation: str,
        group_by: list[str],
    ) -> list[tuple[dict[str, str], float]]:
        return list(self.groups.get(metric, []))


class FakeLogs:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.calls: list[tuple[str, int, int]] = []

    async def count(self, query: str, from_ns: int, to_ns: int) -> int:
        self.calls.append((query, from_ns, to_ns))
        return self.counts.get(query, 0)


class CaptureConfig(PluginConfig):
    send_resolved: bool = True


class CaptureChannel(AlertChannel):
    """Records notifications; ``failures`` are raised, one per send, before anything is recorded."""

    name: ClassVar[str] = "capture"
    Config: ClassVar[type[PluginConfig]] = CaptureConfig
    sent: ClassVar[list[Notification]] = []
    failures: ClassVar[list[Exception]] = []

    async def send(self, notification: Notification) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(notification)


@dataclass
class Rig:
    engine: AlertEngine
    service: AlertService
    clock: FakeClock
    metrics: FakeMetrics
    logs: FakeLogs
    sent: list[Notification] = field(default_factory=list)

    async def round(self, advance_secs: float = 0.0) -> Any:
        self.clock.advance(advance_secs)
        return await self.engine.evaluate_once()

    def take(self) -> list[Notification]:
        out = list(self.sent)
        self.sent.clear()
        return out


def make_rig(
    data_dir: Path,
    clock: FakeClock,
    metrics: FakeMetrics | None = None,
    logs: FakeLogs | None = None,
    **config: Any,
) -> Rig:
    CaptureChannel.sent = []
    CaptureChannel.failures = []
    metrics = metrics or FakeMetrics()
    logs = logs or FakeLogs()
    engine = AlertEngine(
        AlertStore(data_dir),
        channel_types={"capture": CaptureChannel},
        config=AlertingConfig(**{"repeat_interval_secs": 3600.0, **config}),
        ctx=make_ctx(data_dir, clock=clock),
        metrics=metrics,
        logs=logs,
        rng=random.Random(7),
    )
    return Rig(engine, AlertService(engine), clock, metrics, logs, sent=CaptureChannel.sent)


async def add_channel(rig: Rig, name: str, **config: Any) -> dict[str, Any]:
    return await rig.service.create_channel({"name": name, "type": "capture", "config": config})


async def add_rule(rig: Rig, channels: list[str] | None = None, **conditions: Any) -> dict[str, Any]:
    cond = {"metric": "cpu.usage", "operator": "gt", "threshold": 80, "duration": "2m", **conditions}
    return await rig.service.create_rule(
        {
            "name": "High CPU Usage",
            "description": "Alert when CPU usage exceeds 80%",
            "conditions": cond,
            "severity": "warning",
            "channels": ["ops"] if channels is None else channels,
            "labels": {"team": "infrastructure"},
        }
    )


@pytest.fixture
async def rig(tmp_path: Path, fake_clock: FakeClock) -> Any:
    r = make_rig(tmp_path, fake_clock)
    await add_channel(r, "ops")
    yield r
    await r.engine.shutdown()


pytestmark = pytest.mark.anyio


def states(rig: Rig) -> list[str]:
    return [a.state for a in rig.engine.active_alerts()]


async def test_pending_then_firing_once_the_condition_held_for_duration(rig: Rig) -> None:
    rule = await add_rule(rig)
    rig.metrics.values["cpu.usage"] = 95
    first = await rig.round()
    assert [(t.from_state, t.to_state) for t in first.transitions] == [("inactive", "pending")]
    assert states(rig) == ["pending"] and not rig.take()
    # the value is the aggregation over the last window (1m by default)
    metric, labels, from_ns, to_ns, aggregation = rig.metrics.calls[-1]
    assert (metric, labels, to_ns - from_ns, aggregation) == ("cpu.usage", {}, 60 * S, "avg")
    await rig.round(60)
    assert states(rig) == ["pending"] and not rig.take()
    fired = await rig.round(60)
    assert [(t.from_state, t.to_state) for t in fired.transitions] == [("pending", "firing")]
    assert states(rig) == ["firing"]
    [n] = rig.take()
    assert n.status == "firing" and n.receiver == "ops" and n.rule.id == rule["id"]
    [alert] = n.alerts
    assert alert.value == 95 and alert.labels == {
        "team": "infrastructure",
        "alertname": "High CPU Usage",
        "severity": "warning",
    }
    ctx = n.context()
    assert ctx["RuleName"] == "High CPU Usage" and ctx["Value"] == 95 and ctx["Threshold"] == 80
    assert ctx["Timestamp"] == "2024-01-15T10:32:00.000Z"
    assert (await rig.service.get_rule(rule["id"]))["state"] == "firing"


async def test_zero_duration_fires_at_the_first_evaluation(rig: Rig) -> None:
    await add_rule(rig, duration="0s")
    rig.metrics.values["cpu.usage"] = 81
    await rig.round()
    assert states(rig) == ["firing"] and len(rig.take()) == 1


async def test_pending_goes_back_to_inactive_without_a_notification(rig: Rig) -> None:
    await add_rule(rig)
    rig.metrics.values["cpu.usage"] = 95
    await rig.round()
    rig.metrics.values["cpu.usage"] = 50
    result = await rig.round(60)
    assert [(t.from_state, t.to_state) for t in result.transitions] == [("pending", "inactive")]
    rig.metrics.values["cpu.usage"] = 95
    await rig.round(60)
    await rig.round(60)  # a new pending period starts: 60 s is not enough
    assert states(rig) == ["pending"] and not rig.take()


async def test_resolved_notification_then_the_alert_is_gone(rig: Rig) -> None:
    await add_rule(rig, duration="0s")
    rig.metrics.values["cpu.usage"] = 95
    await rig.round()
    rig.take()
    rig.metrics.values["cpu.usage"] = 10
    result = await rig.round(15)
    assert [(t.from_state, t.to_state) for t in result.transitions] == [("firing", "resolved")]
    [n] = rig.take()
    assert n.status == "resolved" and n.alerts[0].status == "resolved" and n.alerts[0].value == 95
    assert n.context()["Timestamp"] == "2024-01-15T10:30:15.000Z"
    assert rig.engine.active_alerts() == [] and rig.engine.states == {}
    await rig.round(15)
    assert not rig.take()
    history = await rig.service.list_history()
    kinds = [(e["kind"], e.get("status")) for e in history["items"]]
    assert kinds == [
        ("notification", "resolved"),
        ("resolved", None),
        ("notification", "firing"),
        ("firing", None),
    ]


async def test_no_data_counts_as_not_holding(rig: Rig) -> None:
    await add_rule(rig, duration="0s")
    rig.metrics.values["cpu.usage"] = 95
    await rig.round()
    rig.metrics.values["cpu.usage"] = None
    await rig.round(15)
    assert [n.status for n in rig.take()] == ["firing", "resolved"]


async def test_repeat_interval_for_alerts_still_firing(rig: Rig) -> None:
    await add_rule(rig, duration="0s")
    rig.metrics.values["cpu.usage"] = 95
    await rig.round()
    assert len(rig.take()) == 1
    for _ in range(239):  # 239 * 15 s < 3600 s
        await rig.round(15)
    assert not rig.take()
    await rig.round(15)
    [again] = rig.take()
    assert again.status == "firing"


async def test_silence_by_rule_suppresses_notifications_but_not_state(rig: Rig) -> None:
    rule = await add_rule(rig, duration="0s")
    silence = await rig.service.create_silence({"rule_id": rule["id"], "duration": "10m"})
    assert silence["active"] is True and silence["rule_id"] == rule["id"]
    rig.metrics.values["cpu.usage"] = 95
    await rig.round()
    assert states(rig) == ["firing"] and not rig.take()
    [alert] = await rig.service.list_alerts()
    assert alert["silenced"] is True and alert["silenced_by"] == [silence["id"]]
    await rig.round(600)  # the silence has ended: the channel hears of it now
    [n] = rig.take()
    assert n.status == "firing"


async def test_silence_by_labels_and_expiry_of_a_resolved_alert(rig: Rig) -> None:
    await add_rule(rig, duration="0s")
    await rig.service.create_silence({"matchers": {"team": "infrastructure"}, "duration": "1h"})
    rig.metrics.values["cpu.usage"] = 95
    await rig.round()
    rig.metrics.values["cpu.usage"] = 1
    await rig.round(15)
    assert not rig.take()  # never told it fired, so nothing to resolve
    assert rig.engine.states == {}


async def test_alerts_of_one_rule_are_grouped_per_channel(rig: Rig) -> None:
    await add_channel(rig, "oncall")
    await add_rule(rig, channels=["ops", "oncall"], duration="0s", group_by=["host"])
    rig.metrics.groups["cpu.usage"] = [({"host": h}, 90.0 + i) for i, h in enumerate(["a", "b", "c"])]
    await rig.round()
    sent = rig.take()
    assert sorted(n.receiver for n in sent) == ["oncall", "ops"]
    for n in sent:
        assert n.status == "firing" and sorted(a.labels["host"] for a in n.alerts) == ["a", "b", "c"]
        assert n.common_labels["alertname"] == "High CPU Usage" and "host" not in n.common_labels
    # one group recovers: each channel gets one notification with it resolved and the others firing
    rig.metrics.groups["cpu.usage"] = [({"host": "a"}, 90.0), ({"host": "c"}, 92.0)]
    await rig.round(15)
    sent = rig.take()
    assert len(sent) == 2
    for n in sent:
        assert n.status == "firing"
        assert sorted((a.labels["host"], a.status) for a in n.alerts) == [
            ("a", "firing"),
            ("b", "resolved"),
            ("c", "firing"),
        ]
    # the same set again: nothing new to say
    await rig.round(15)
    assert not rig.take()


async def test_restart_resumes_without_renotifying(tmp_path: Path, fake_clock: FakeClock) -> None:
    first = make_rig(tmp_path, fake_clock)
    await add_channel(first, "ops")
    await add_rule(first, duration="0s")
    first.metrics.values["cpu.usage"] = 95
    await first.round()
    assert len(first.take()) == 1
    await first.engine.shutdown()

    second = make_rig(tmp_path, fake_clock)
    second.metrics.values["cpu.usage"] = 95
    await second.round(15)
    assert not second.take()
    assert [a.state for a in second.engine.active_alerts()] == ["firing"]
    second.metrics.values["cpu.usage"] = 10
    await second.round(15)
    [n] = second.take()
    assert n.status == "resolved"
    await second.engine.shutdown()


async def test_pending_survives_a_restart(tmp_path: Path, fake_clock: FakeClock) -> None:
    first = make_rig(tmp_path, fake_clock)
    await add_channel(first, "ops")
    await add_rule(first)
    first.metrics.values["cpu.usage"] = 95
    await first.round()
    await first.engine.shutdown()
    second = make_rig(tmp_path, fake_clock)
    second.metrics.values["cpu.usage"] = 95
    await second.round(120)
    assert [n.status for n in second.take()] == ["firing"]
    await second.engine.shutdown()


async def test_transient_failures_are_retried_with_backoff(rig: Rig) -> None:
    await add_rule(rig, duration="0s")
    CaptureChannel.failures.extend([TransientError("smtp down"), RuntimeError("socket reset")])
    rig.metrics.values["cpu.usage"] = 95
    before = rig.clock.mono
    result = await rig.round()
    [entry] = result.notifications
    assert entry.ok and entry.attempts == 3 and len(rig.take()) == 1
    assert rig.clock.mono - before <= 1 + 2  # full jitter under 1 s, then under 2 s


async def test_permanent_failure_is_recorded_and_not_retried(rig: Rig) -> None:
    await add_rule(rig, duration="0s")
    CaptureChannel.failures.append(PermanentError("550 mailbox unavailable"))
    rig.metrics.values["cpu.usage"] = 95
    result = await rig.round()
    [entry] = result.notifications
    assert not entry.ok and entry.attempts == 1 and "550" in entry.error
    await rig.round(15)
    assert not rig.take()
    history = await rig.service.list_history(kind="notification")
    [item] = history["items"]
    assert item["ok"] is False and item["error"] == "550 mailbox unavailable" and item["channel"] == "ops"


async def test_exhausted_transient_failure_is_retried_next_round(rig: Rig) -> None:
    await add_rule(rig, duration="0s")
    CaptureChannel.failures.extend([TransientError("timeout")] * 5)
    rig.metrics.values["cpu.usage"] = 95
    result = await rig.round()
    assert [(e.ok, e.attempts) for e in result.notifications] == [(False, 5)]
    result = await rig.round(15)
    assert [(e.ok, e.attempts) for e in result.notifications] == [(True, 1)]
    assert len(rig.take()) == 1


async def test_a_failing_query_leaves_the_alerts_as_they_were(rig: Rig) -> None:
    rule = await add_rule(rig, duration="0s")
    rig.metrics.values["cpu.usage"] = 95
    await rig.round()
    rig.metrics.fail = ConnectionError("metrics role unreachable")
    result = await rig.round(15)
    assert result.errors == {rule["id"]: "metrics role unreachable"}
    assert states(rig) == ["firing"]
    out = await rig.service.get_rule(rule["id"])
    assert out["last_evaluation"]["error"] == "metrics role unreachable"


async def test_log_rule_fires_when_count_is_reached(rig: Rig) -> None:
    query = "level:ERROR AND message:database"
    await rig.service.create_rule(
        {
            "name": "Database Errors",
            "description": "Alert on database connection errors",
            "conditions": {"log_query": query, "count": 3, "duration": "1m"},
            "severity": "critical",
            "channels": ["ops"],
        }
    )
    rig.logs.counts[query] = 2
    await rig.round()
    assert states(rig) == [] and not rig.take()
    q, from_ns, to_ns = rig.logs.calls[-1]
    assert (q, to_ns - from_ns) == (query, 60 * S)
    rig.logs.counts[query] = 4
    await rig.round(15)
    [n] = rig.take()
    assert n.status == "firing" and n.alerts[0].value == 4
    ctx = n.context()
    assert (ctx["Count"], ctx["Threshold"], ctx["Query"], ctx["Severity"]) == (3, 3, query, "critical")
    rig.logs.counts[query] = 0
    await rig.round(15)
    assert [n.status for n in rig.take()] == ["resolved"]


async def test_disabling_a_rule_drops_its_alerts(rig: Rig) -> None:
    rule = await add_rule(rig, duration="0s")
    rig.metrics.values["cpu.usage"] = 95
    await rig.round()
    rig.take()
    out = await rig.service.set_rule_enabled(rule["id"], False)
    assert out["enabled"] is False
    await rig.round(15)
    assert rig.engine.active_alerts() == [] and not rig.take()


async def test_send_resolved_false_skips_resolved_notifications(rig: Rig) -> None:
    await add_channel(rig, "quiet", send_resolved=False)
    await add_rule(rig, channels=["quiet"], duration="0s")
    rig.metrics.values["cpu.usage"] = 95
    await rig.round()
    rig.metrics.values["cpu.usage"] = 1
    await rig.round(15)
    assert [n.status for n in rig.take()] == ["firing"]
    assert rig.engine.states == {}


async def test_rule_queries_run_concurrently_but_bounded(tmp_path: Path, fake_clock: FakeClock) -> None:
    r = make_rig(tmp_path, fake_clock, max_concurrent_queries=4)
    await add_channel(r, "ops")
    for _ in range(20):
        await add_rule(r)
    r.metrics.values["cpu.usage"] = 1
    result = await r.round()
    assert result.rules == 20 and len(r.metrics.calls) == 20
    assert 1 < r.metrics.max_in_flight <= 4
    await r.engine.shutdown()


async def test_window_is_never_shorter_than_the_evaluation_interval(
    tmp_path: Path, fake_clock: FakeClock
) -> None:
    r = make_rig(tmp_path, fake_clock, evaluation_interval_secs=120)
    await add_channel(r, "ops")
    await add_rule(r, window="30s", aggregation="max", labels={"host": "web-01"})
    await r.round()
    _, labels, from_ns, to_ns, aggregation = r.metrics.calls[-1]
    assert (labels, to_ns - from_ns, aggregation) == ({"host": "web-01"}, 120 * S, "max")
    await r.engine.shutdown()


async def test_run_loop_evaluates_every_interval(tmp_path: Path, fake_clock: FakeClock) -> None:
    r = make_rig(tmp_path, fake_clock, evaluation_interval_secs=1)
    await add_channel(r, "ops")
    await add_rule(r, duration="2s")
    r.metrics.values["cpu.usage"] = 95
    async with anyio.create_task_group() as tg:
        await tg.start(r.engine.run)
        with anyio.fail_after(5):
            while not r.sent:
                await anyio.lowlevel.checkpoint()
        tg.cancel_scope.cancel()
    assert [n.status for n in r.take()] == ["firing"]
    await r.engine.shutdown()


# -- alerts pushed to /api/v2/alerts ------------------------------------------------------------


@pytest.fixture
async def am(tmp_path: Path, fake_clock: FakeClock) -> Any:
    r = make_rig(
        tmp_path,
        fake_clock,
        resolve_timeout_secs=300,
        routes=[
            RouteConfig(match={"team": "db"}, channels=["db"]),
            RouteConfig(match_re={"severity": "crit.*"}, channels=["ops"], group_by=["alertname", "cluster"]),
        ],
        default_channels=["ops"],
    )
    await add_channel(r, "ops")
    await add_channel(r, "db")
    yield r
    await r.engine.shutdown()


def pushed(instance: str, **extra: Any) -> dict[str, Any]:
    return {
        "labels": {"alertname": "PostgresDown", "team": "db", "instance": instance, "severity": "critical"},
        "annotations": {"summary": f"postgres on {instance} is down"},
        "startsAt": "2024-01-15T10:29:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=pg_up",
        **extra,
    }


async def test_pushed_alerts_are_routed_grouped_and_resolved(am: Rig) -> None:
    assert await am.service.receive_external_alerts([pushed("pg1"), pushed("pg2")]) == {"accepted": 2}
    await am.round()
    [n] = am.take()
    assert n.receiver == "db" and n.status == "firing" and len(n.alerts) == 2
    assert n.group_labels == {"alertname": "PostgresDown"}
    ctx = n.context()
    assert (ctx["RuleName"], ctx["Severity"], ctx["Description"]) == (
        "PostgresDown",
        "critical",
        "postgres on pg1 is down",
    )
    assert n.alerts[0].generator_url.startswith("http://prometheus:9090/")
    # the ruler says pg1 recovered
    await am.service.receive_external_alerts([pushed("pg1", endsAt="2024-01-15T10:30:00Z")])
    await am.round(15)
    [n] = am.take()
    assert sorted((a.labels["instance"], a.status) for a in n.alerts) == [
        ("pg1", "resolved"),
        ("pg2", "firing"),
    ]
    # pg2 is not re-sent: it resolves after resolve_timeout
    await am.round(300)
    [n] = am.take()
    assert n.status == "resolved" and [a.labels["instance"] for a in n.alerts] == ["pg2"]


async def test_pushed_alerts_without_a_matching_route_go_to_the_default(am: Rig) -> None:
    other = {"labels": {"alertname": "DiskFull", "team": "web"}}
    critical = {"labels": {"alertname": "NodeDown", "severity": "critical", "cluster": "eu"}}
    await am.service.receive_external_alerts([other, critical])
    await am.round()
    sent = sorted(am.take(), key=lambda n: n.alerts[0].labels["alertname"])
    assert [(n.receiver, n.group_labels) for n in sent] == [
        ("ops", {"alertname": "DiskFull"}),
        ("ops", {"alertname": "NodeDown", "cluster": "eu"}),
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"labels": {}}, "body"),
        ([{"labels": {}}], "[0].labels"),
        ([{"annotations": {"a": "b"}}], "[0].labels"),
        ([{"labels": {"a": 1}}], "[0].labels.a"),
        ([{"labels": {"bad-name": "x"}}], "[0].labels.bad-name"),
        ([{"labels": {"a": "b"}, "startsAt": "yesterday"}], "[0].startsAt"),
        (
            [{"labels": {"a": "b"}, "startsAt": "2024-01-15T10:00:00Z", "endsAt": "2024-01-15T09:00:00Z"}],
            "[0].endsAt",
        ),
        ([{"labels": {"a": "b"}, "generatorURL": 5}], "[0].generatorURL"),
        ([{"labels": {"a": "b"}, "status": "firing"}], "[0].status"),
        ([{"labels": {"a": "b"}}, "x"], "[1]"),
    ],
)
async def test_bad_pushed_alerts_are_rejected_naming_the_field(am: Rig, body: Any, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        await am.service.receive_external_alerts(body)
    assert info.value.details["field"] == field
    assert am.engine.states == {}


async def test_moving_a_rule_to_another_channel(rig: Rig) -> None:
    await add_channel(rig, "oncall")
    rule = await add_rule(rig, duration="0s")
    rig.metrics.values["cpu.usage"] = 95
    await rig.round()
    assert [n.receiver for n in rig.take()] == ["ops"]
    await rig.service.patch_rule(rule["id"], {"channels": ["oncall"]})
    await rig.round(15)
    assert [(n.receiver, n.status) for n in rig.take()] == [("oncall", "firing")]
    rig.metrics.values["cpu.usage"] = 1
    await rig.round(15)
    assert [(n.receiver, n.status) for n in rig.take()] == [("oncall", "resolved")]
    assert rig.engine.states == {}
    assert [(k[1], e.firing) for k, e in rig.engine.nlog.items()] == [("oncall", [])]  # ops forgotten


async def test_quiet_log_updates_survive_a_restart(tmp_path: Path, fake_clock: FakeClock) -> None:
    first = make_rig(tmp_path, fake_clock)
    await add_channel(first, "quiet", send_resolved=False)
    await add_rule(first, channels=["quiet"], duration="0s")
    first.metrics.values["cpu.usage"] = 95
    await first.round()
    first.metrics.values["cpu.usage"] = 1
    await first.round(15)
    await first.engine.shutdown()
    second = make_rig(tmp_path, fake_clock)
    second.metrics.values["cpu.usage"] = 95
    await second.round(15)  # fires again: news to the channel, though it never heard it resolved
    assert [n.status for n in second.take()] == ["firing"]
    await second.engine.shutdown()

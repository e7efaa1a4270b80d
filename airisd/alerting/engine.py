"""The evaluator: rules in, alert states and notifications out.

One round (``evaluate_once``), every ``evaluation_interval_secs``:

1. Each enabled rule is queried, at most ``max_concurrent_queries`` at a time.
   Metric rule: value = ``aggregation`` of the samples in the last ``window`` (default 1m, never
   shorter than the evaluation interval), one value per ``group_by`` group. No samples: the
   condition does not hold. The alert goes pending when the condition first holds and fires once
   it has held at every evaluation for ``duration`` (``0s``: at once).
   Log rule: value = number of records matching ``log_query`` in the last ``duration``; it fires
   at once when value >= ``count``.
   A query that fails or times out leaves that rule's alerts as they were (recorded per rule).
2. State changes are saved (one transaction).
3. Per group (one rule, or one route's pushed alerts with the same group labels) and channel,
   a notification is sent when an alert joined the firing set, when an alert the channel was told
   about stopped firing (``resolved``), or when ``repeat_interval_secs`` passed while alerts still
   fire. Silenced alerts are left out of notifications (their state still changes).
4. Results go to the notification log and history (one transaction): a restart resumes from the
   log and never re-sends what was delivered. A crash between a send and that commit re-sends it
   once (at least once, never lost).

Replicas (``cluster``, with the Redis store): several engines share one store. Each round's state
section (steps 2-3) runs under the cluster's lock, starting from the store's state, so the
replicas run one state machine; each notification is claimed by a dedup key before it is sent,
and a replica that finds it claimed skips it (see airisd.alerting.redis_store.AlertCluster).
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import anyio
from anyio.abc import TaskStatus

from airisd.alerting.config import AlertingConfig
from airisd.alerting.delivery import SendResult, send_with_retry
from airisd.alerting.external import group_of, parse_external_alerts, route_alert
from airisd.alerting.notification import AlertInfo, Notification, RuleInfo, Status, fingerprint
from airisd.alerting.rules import Channel, LogCondition, MetricCondition, Rule, Silence, channel_config
from airisd.alerting.sources import GroupedMetricSource, LogSource, MetricSource
from airisd.alerting.state import AlertState, HistoryEntry, NlogEntry
from airisd.errors import TransientError
from airisd.plugin import AlertChannel, Clock, PluginContext
from airisd.timeparse import NS_PER_S, format_ts, parse_duration

if TYPE_CHECKING:
    from airisd.alerting.redis_store import AlertCluster, AlertStoreProtocol

log = logging.getLogger("airisd.alerting")


@dataclass(frozen=True)
class Transition:
    group_key: str
    rule_id: str
    fingerprint: str
    labels: dict[str, str]
    from_state: str  # inactive, pending, firing or resolved
    to_state: str
    value: float | None
    ts_ns: int


@dataclass
class RoundResult:
    ts_ns: int
    rules: int = 0
    transitions: list[Transition] = field(default_factory=list)
    notifications: list[HistoryEntry] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # rule id -> why it was not evaluated
    seconds: float = 0.0


@dataclass
class RuleHealth:
    last_evaluated_ns: int = 0
    value: float | None = None
    error: str = ""
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "last_evaluated_at": format_ts(self.last_evaluated_ns) if self.last_evaluated_ns else None,
            "value": self.value,
            "error": self.error or None,
            "seconds": round(self.seconds, 6),
        }


@dataclass
class _Planned:
    channel_name: str
    channel: Channel | None
    notification: Notification
    firing: list[str]
    rule_id: str
    rule_name: str
    seq: int = 0  # when the channel was last told about this group (0: never): tells repeats apart


class AlertEngine:
    def __init__(
        self,
        store: AlertStoreProtocol,
        *,
        channel_types: Mapping[str, type[AlertChannel]],
        config: AlertingConfig,
        ctx: PluginContext,
        metrics: MetricSource | None = None,
        logs: LogSource | None = None,
        rng: random.Random | None = None,
        cluster: AlertCluster | None = None,
    ) -> None:
        self.store = store
        self.cluster = cluster  # set when replicas share the store
        self.channel_types = channel_types
        self.config = config
        self.ctx = ctx
        self.clock: Clock = ctx.clock
        self.metrics = metrics
        self.logs = logs
        self.rng = rng or random.Random()
        self.states: dict[tuple[str, str], AlertState] = {}
        self.nlog: dict[tuple[str, str], NlogEntry] = {}
        self.health: dict[str, RuleHealth] = {}
        self._plugins: dict[str, tuple[int, AlertChannel]] = {}  # channel id -> (updated_ns, plugin)
        self._configs: dict[str, tuple[int, Any]] = {}  # channel id -> (updated_ns, Config)
        self._nlog_dirty: dict[tuple[str, str], NlogEntry | None] = {}  # None: delete
        self._lock = anyio.Lock()  # guards states and nlog
        self._round_lock = anyio.Lock()  # one round at a time
        self._started = False
        reg = getattr(ctx, "metrics", None)
        self._m_rounds = self._m_sent = self._m_errors = None
        if reg is not None:
            self._m_rounds = reg.counter("alert_evaluations_total", "Evaluation rounds run")
            self._m_sent = reg.counter(
                "alert_notifications_total", "Notifications by channel and result", ("channel", "result")
            )
            self._m_errors = reg.counter("alert_rule_errors_total", "Rule evaluations that failed")

    @asynccontextmanager
    async def _shared(self) -> AsyncIterator[None]:
        """With replicas: hold the cluster's state lock and start from the store's state (what
        another replica changed since). Without: nothing (this process owns the state)."""
        if self.cluster is None:
            yield
            return
        while not self.cluster.try_lock():  # noqa: ASYNC110 (a lock in Redis: nothing to wait on locally)
            await anyio.sleep(0.02)  # a peer's state section takes milliseconds
        try:
            old = self.states
            self.states = {s.key: s for s in self.store.load_states()}
            for key, st in self.states.items():
                if key in old:
                    st.silenced_by = old[key].silenced_by  # computed per round, not saved each time
            self.nlog = {(e.group_key, e.channel): e for e in self.store.load_nlog()}
            for key, entry in self._nlog_dirty.items():  # ours, not saved yet
                if entry is None:
                    self.nlog.pop(key, None)
                else:
                    self.nlog[key] = entry
            yield
        finally:
            self.cluster.unlock()

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the store and resume the state and notification log of the last run."""
        self.store.open()
        self.states = {s.key: s for s in self.store.load_states()}
        self.nlog = {(e.group_key, e.channel): e for e in self.store.load_nlog()}
        self._started = True

    async def shutdown(self) -> None:
        """Shut the channel plugins down and close the store. Safe without start(), safe twice."""
        plugins, self._plugins = list(self._plugins.values()), {}
        for _, plugin in plugins:
            try:
                await plugin.shutdown()
            except Exception as exc:
                log.warning("alert channel %s: shutdown failed: %s", plugin.name, exc)
        self.store.close()
        self._started = False

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Evaluate every ``evaluation_interval_secs`` until cancelled."""
        if not self._started:
            await self.start()
        task_status.started()
        interval = self.config.evaluation_interval_secs
        next_prune = 0.0
        while True:
            began = self.clock.monotonic()
            try:
                await self.evaluate_once()
                if began >= next_prune:
                    self.prune()
                    next_prune = began + 3600
            except Exception:
                log.exception("alert evaluation round failed")
            await self.clock.sleep(max(0.0, interval - (self.clock.monotonic() - began)))

    def prune(self) -> int:
        now = self.clock.time_ns()
        keep_ns = int(self.config.history_retention_days * 86400 * NS_PER_S)
        return self.store.prune(history_before_ns=now - keep_ns, silences_before_ns=now - keep_ns)

    # -- evaluation --------------------------------------------------------------------------
    async def evaluate_once(self) -> RoundResult:
        async with self._round_lock:
            if not self._started:
                await self.start()
            began = self.clock.monotonic()
            now = self.clock.time_ns()
            result = RoundResult(ts_ns=now)
            rules = self.store.list_rules(enabled=True)
            result.rules = len(rules)
            observations: dict[str, list[tuple[dict[str, str], float]]] = {}
            limiter = anyio.CapacityLimiter(self.config.max_concurrent_queries)

            async def observe(rule: Rule) -> None:
                async with limiter:
                    t0 = self.clock.monotonic()
                    health = self.health.setdefault(rule.id, RuleHealth())
                    try:
                        with anyio.fail_after(self.config.query_timeout_secs):
                            observed = await self._observe(rule, now)
                        observations[rule.id] = [(g, v) for g, v in observed if _holds(rule, v)]
                        health.error = ""
                        health.value = observed[0][1] if len(observed) == 1 else None
                    except Exception as exc:
                        why = "query timed out" if isinstance(exc, TimeoutError) else str(exc) or repr(exc)
                        health.error = result.errors[rule.id] = why
                        if self._m_errors:
                            self._m_errors.inc()
                    health.last_evaluated_ns = now
                    health.seconds = self.clock.monotonic() - t0

            async with anyio.create_task_group() as tg:
                for rule in rules:
                    tg.start_soon(observe, rule)

            async with self._lock, self._shared():
                changed: set[tuple[str, str]] = set()
                deleted: set[tuple[str, str]] = set()
                history: list[HistoryEntry] = []
                by_id = {r.id: r for r in rules}
                by_group: dict[str, list[tuple[str, str]]] = {}
                for key in self.states:
                    by_group.setdefault(key[0], []).append(key)
                for rule in rules:
                    if rule.id in observations:
                        existing = by_group.get(f"rule:{rule.id}", [])
                        self._apply_rule(
                            rule, observations[rule.id], existing, now, result, changed, deleted, history
                        )
                self._expire_external(now, result, changed, history)
                self._drop_orphans(by_id, deleted)
                self.store.save_round(
                    upsert=[self.states[k] for k in changed if k in self.states],
                    delete=deleted,
                    history=history,
                )
                planned = self._plan(now, by_id, self.store.list_silences(active_at=now))
            await self._dispatch(planned, now, result)
            if self._m_rounds:
                self._m_rounds.inc()
            result.seconds = self.clock.monotonic() - began
            return result

    async def _observe(self, rule: Rule, now: int) -> list[tuple[dict[str, str], float]]:
        """The value of every group that has data now."""
        cond = rule.conditions
        if isinstance(cond, LogCondition):
            if self.logs is None:
                raise RuntimeError("no log source: the log role is not configured")
            count = await self.logs.count(cond.log_query, now - parse_duration(cond.duration), now)
            return [({}, float(count))]
        if self.metrics is None:
            raise RuntimeError("no metric source: the metrics role is not configured")
        window = max(parse_duration(cond.window), int(self.config.evaluation_interval_secs * NS_PER_S))
        if cond.group_by:
            if not isinstance(self.metrics, GroupedMetricSource):
                raise RuntimeError("group_by needs a metric source that can group (aggregate_by)")
            return await self.metrics.aggregate_by(
                cond.metric, dict(cond.labels), now - window, now, cond.aggregation, list(cond.group_by)
            )
        value = await self.metrics.aggregate(
            cond.metric, dict(cond.labels), now - window, now, cond.aggregation
        )
        return [] if value is None else [({}, value)]

    def _apply_rule(
        self,
        rule: Rule,
        holding: list[tuple[dict[str, str], float]],
        existing: list[tuple[str, str]],  # the rule's alert keys at the start of the round
        now: int,
        result: RoundResult,
        changed: set[tuple[str, str]],
        deleted: set[tuple[str, str]],
        history: list[HistoryEntry],
    ) -> None:
        cond = rule.conditions
        group = f"rule:{rule.id}"
        hold_ns = parse_duration(cond.duration) if isinstance(cond, MetricCondition) else 0
        base = dict(cond.labels) if isinstance(cond, MetricCondition) else {}
        seen: set[str] = set()

        def move(st: AlertState, to: Literal["inactive", "pending", "firing", "resolved"], prev: str) -> None:
            result.transitions.append(
                Transition(group, rule.id, st.fingerprint, st.labels, prev, to, st.value, now)
            )
            if to == "firing" or to == "resolved":
                history.append(_state_entry(st, to, now))

        for group_labels, value in holding:
            labels = {
                **base,
                **group_labels,
                **rule.labels,
                "alertname": rule.name,
                "severity": rule.severity,
            }
            fp = fingerprint(labels)
            key = (group, fp)
            seen.add(fp)
            st = self.states.get(key)
            if st is None or st.state == "resolved":
                prev = st.state if st else "inactive"
                st = AlertState(
                    group_key=group,
                    fingerprint=fp,
                    rule_id=rule.id,
                    labels=labels,
                    group_labels=group_labels,
                    state="pending",
                    active_ns=now,
                    value=value,
                )
                self.states[key] = st
                deleted.discard(key)
                move(st, "pending", prev)
            st.value = value
            st.annotations = dict(rule.annotations)
            if st.state == "pending" and now - st.active_ns >= hold_ns:
                st.state, st.fired_ns = "firing", now
                move(st, "firing", "pending")
            changed.add(key)
        for key in existing:
            st = self.states[key]
            if key[1] in seen:
                continue
            if st.state == "pending":
                del self.states[key]
                deleted.add(key)
                changed.discard(key)
                move(st, "inactive", "pending")
            elif st.state == "firing":
                st.state, st.resolved_ns = "resolved", now
                changed.add(key)
                move(st, "resolved", "firing")

    def _expire_external(
        self, now: int, result: RoundResult, changed: set[tuple[str, str]], history: list[HistoryEntry]
    ) -> None:
        for key, st in self.states.items():
            if not st.rule_id and st.state == "firing" and st.ends_ns and st.ends_ns <= now:
                st.state, st.resolved_ns = "resolved", st.ends_ns
                changed.add(key)
                result.transitions.append(
                    Transition(
                        st.group_key, "", st.fingerprint, st.labels, "firing", "resolved", st.value, now
                    )
                )
                history.append(_state_entry(st, "resolved", now))

    def _drop_orphans(self, rules: Mapping[str, Rule], deleted: set[tuple[str, str]]) -> None:
        """Alerts of rules deleted or disabled disappear without a notification."""
        for key, st in list(self.states.items()):
            if st.rule_id and st.rule_id not in rules:
                del self.states[key]
                deleted.add(key)
        for key in [k for k in self.nlog if k[0].startswith("rule:") and k[0][5:] not in rules]:
            del self.nlog[key]
            self.store.forget_group(key[0])

    # -- notifications -----------------------------------------------------------------------
    def _plan(self, now: int, rules: Mapping[str, Rule], silences: list[Silence]) -> list[_Planned]:
        groups: dict[str, list[AlertState]] = {}
        for st in self.states.values():
            groups.setdefault(st.group_key, []).append(st)
        channels = {c.name: c for c in self.store.list_channels()}
        repeat_ns = int(self.config.repeat_interval_secs * NS_PER_S)
        planned: list[_Planned] = []
        for group, states in groups.items():
            rule = rules.get(states[0].rule_id) if states[0].rule_id else None
            if states[0].rule_id and rule is None:
                continue
            for st in states:
                st.silenced_by = [s.id for s in silences if s.matches(st.rule_id, st.labels)]
            firing = [st for st in states if st.state == "firing" and not st.silenced_by]
            firing_fps = {st.fingerprint for st in firing}
            by_fp = {st.fingerprint: st for st in states}
            names = rule.channels if rule else sorted({c for st in states for c in st.channels})
            for key in [k for k in self.nlog if k[0] == group and k[1] not in names]:
                del self.nlog[key]  # a channel the group no longer uses
                self._nlog_dirty[key] = None
            for name in names:
                last = self.nlog.get((group, name))
                told = set(last.firing) if last else set()
                gone = told - firing_fps - {st.fingerprint for st in states if st.state == "firing"}
                channel = channels.get(name)
                if channel is not None and not channel.enabled:
                    continue
                send_resolved = self._send_resolved(channel)
                resolved = [by_fp[fp] for fp in sorted(gone) if fp in by_fp and by_fp[fp].state == "resolved"]
                new = firing_fps - told
                repeat = bool(firing) and last is not None and now - last.ts_ns >= repeat_ns
                alerts = [*firing, *(resolved if send_resolved else [])]
                if (new or repeat or (resolved and send_resolved)) and alerts:
                    planned.append(
                        _Planned(
                            channel_name=name,
                            channel=channel,
                            notification=self._notification(group, name, rule, alerts, now),
                            firing=sorted(firing_fps),
                            rule_id=rule.id if rule else "",
                            rule_name=rule.name if rule else "",
                            seq=last.ts_ns if last else 0,
                        )
                    )
                elif gone and last is not None:
                    # Nothing to say (send_resolved off, or the alert went back to pending):
                    # forget it quietly, keeping the repeat timer.
                    quiet = NlogEntry(
                        group_key=group, channel=name, firing=sorted(told - gone), ts_ns=last.ts_ns
                    )
                    self.nlog[(group, name)] = self._nlog_dirty[(group, name)] = quiet
        return planned

    def _send_resolved(self, channel: Channel | None) -> bool:
        if channel is None:
            return True
        try:
            return bool(getattr(self._config_of(channel), "send_resolved", True))
        except Exception:
            return True

    def _notification(
        self, group: str, receiver: str, rule: Rule | None, alerts: list[AlertState], now: int
    ) -> Notification:
        info = RuleInfo()
        if rule is not None:
            cond = rule.conditions
            info = RuleInfo(
                id=rule.id,
                name=rule.name,
                description=rule.description,
                severity=rule.severity,
                duration=cond.duration,
            )
            if isinstance(cond, MetricCondition):
                info.metric, info.operator, info.threshold = cond.metric, cond.operator, cond.threshold
                info.aggregation = cond.aggregation
            else:
                info.count, info.query, info.operator = cond.count, cond.log_query, "gte"
        items = [
            AlertInfo(
                fingerprint=st.fingerprint,
                status="firing" if st.state == "firing" else "resolved",
                labels=st.labels,
                annotations=st.annotations,
                starts_ns=st.fired_ns or st.active_ns,
                ends_ns=st.resolved_ns if st.state == "resolved" else 0,
                value=st.value,
                generator_url=st.generator_url,
            )
            for st in alerts
        ]
        status: Status = "firing" if any(a.status == "firing" for a in items) else "resolved"
        return Notification(
            group_key=group,
            status=status,
            receiver=receiver,
            rule=info,
            alerts=items,
            group_labels=alerts[0].group_labels if alerts else {},
            external_url=self.config.external_url,
            ts_ns=now,
        )

    async def _dispatch(self, planned: list[_Planned], now: int, result: RoundResult) -> None:
        outcomes: list[tuple[_Planned, SendResult]] = []
        by_peer: list[_Planned] = []  # replicas: delivered by another replica
        limiter = anyio.CapacityLimiter(self.config.max_concurrent_sends)

        async def one(p: _Planned) -> None:
            async with limiter:
                if self.cluster is None or p.channel is None:
                    outcomes.append((p, await self._deliver(p)))
                    return
                key = _claim_key(p)
                try:
                    claim = self.cluster.claim(key)
                except TransientError as exc:
                    log.warning("alert notification to %s: not sent, no dedup claim: %s", p.channel_name, exc)
                    return  # planned again next round
                if claim != "won":
                    if claim == "sent":
                        by_peer.append(p)
                    # "busy": a peer is sending it; the next round sees how that went
                    if self._m_sent:
                        self._m_sent.inc(1, p.channel_name, "peer")
                    return
                res = await self._deliver(p)
                try:
                    self.cluster.settle(key, sent=res.ok or res.permanent)
                except TransientError as exc:  # the claim expires on its own
                    log.warning("alert notification to %s: dedup claim not settled: %s", p.channel_name, exc)
                outcomes.append((p, res))

        async with anyio.create_task_group() as tg:
            for p in planned:
                tg.start_soon(one, p)
        async with self._lock, self._shared():
            for p in by_peer:
                e = NlogEntry(group_key=p.notification.group_key, channel=p.channel_name, firing=p.firing, ts_ns=now)
                self.nlog[(e.group_key, e.channel)] = self._nlog_dirty[(e.group_key, e.channel)] = e
            history: list[HistoryEntry] = []
            for p, res in outcomes:
                n = p.notification
                entry = HistoryEntry(
                    ts_ns=now,
                    kind="notification",
                    group_key=n.group_key,
                    rule_id=p.rule_id,
                    rule_name=p.rule_name,
                    channel=p.channel_name,
                    status=n.status,
                    alerts=len(n.alerts),
                    ok=res.ok,
                    error=res.error,
                    attempts=res.attempts,
                    dedup_key=_dedup_key(n),
                )
                history.append(entry)
                result.notifications.append(entry)
                if self._m_sent:
                    self._m_sent.inc(1, p.channel_name, "ok" if res.ok else "failed")
                if res.ok or res.permanent:
                    e = NlogEntry(group_key=n.group_key, channel=p.channel_name, firing=p.firing, ts_ns=now)
                    self.nlog[(e.group_key, e.channel)] = self._nlog_dirty[(e.group_key, e.channel)] = e
                if not res.ok:
                    log.warning(
                        "alert notification to %s failed after %d attempt(s): %s",
                        p.channel_name,
                        res.attempts,
                        res.error,
                    )
            deleted = self._collect_resolved()
            dirty, self._nlog_dirty = self._nlog_dirty, {}
            self.store.save_round(
                delete=deleted,
                nlog=[e for e in dirty.values() if e is not None],
                nlog_delete=[k for k, e in dirty.items() if e is None],
                history=history,
            )

    def _collect_resolved(self) -> list[tuple[str, str]]:
        """Resolved alerts no channel still believes firing are done with."""
        told: set[tuple[str, str]] = {(e.group_key, fp) for e in self.nlog.values() for fp in e.firing}
        gone = [k for k, st in self.states.items() if st.state == "resolved" and k not in told]
        for key in gone:
            del self.states[key]
        return gone

    async def _deliver(self, p: _Planned) -> SendResult:
        if p.channel is None:
            error = f"no channel named {p.channel_name!r}"
            return SendResult(ok=False, attempts=0, error=error, permanent=True)
        try:
            plugin = await self._plugin(p.channel)
        except Exception as exc:
            return SendResult(ok=False, attempts=0, error=f"channel config: {exc}", permanent=True)
        return await send_with_retry(
            lambda: plugin.send(p.notification),
            attempts=self.config.send_attempts,
            initial_secs=self.config.retry_initial_secs,
            max_secs=self.config.retry_max_secs,
            clock=self.clock,
            rng=self.rng,
        )

    def _config_of(self, channel: Channel) -> Any:
        """The channel's validated Config, cached until the channel changes."""
        cached = self._configs.get(channel.id)
        if cached is not None and cached[0] == channel.updated_ns:
            return cached[1]
        config = channel_config(channel, self.channel_types, defaults=self.config.channel_defaults)
        self._configs[channel.id] = (channel.updated_ns, config)
        return config

    async def _plugin(self, channel: Channel) -> AlertChannel:
        cached = self._plugins.get(channel.id)
        if cached is not None and cached[0] == channel.updated_ns:
            return cached[1]
        if cached is not None:
            await self.forget_channel(channel.id)
        cls = self.channel_types[channel.type]
        plugin = cls(self._config_of(channel), self.ctx)
        await plugin.start()
        self._plugins[channel.id] = (channel.updated_ns, plugin)
        return plugin

    async def forget_channel(self, channel_id: str) -> None:
        """Drop the cached plugin of a changed or deleted channel."""
        self._configs.pop(channel_id, None)
        cached = self._plugins.pop(channel_id, None)
        if cached is not None:
            try:
                await cached[1].shutdown()
            except Exception as exc:
                log.warning("alert channel %s: shutdown failed: %s", channel_id, exc)

    async def send_test(self, channel: Channel) -> SendResult:
        """``POST /channels/{id}/test``: one synthetic firing alert, one attempt, no state."""
        now = self.clock.time_ns()
        labels = {"alertname": "airisd test notification", "severity": "info"}
        n = Notification(
            group_key="test",
            status="firing",
            receiver=channel.name,
            rule=RuleInfo(name=labels["alertname"], description="A test of this channel.", severity="info"),
            alerts=[
                AlertInfo(fingerprint=fingerprint(labels), status="firing", labels=labels, starts_ns=now)
            ],
            external_url=self.config.external_url,
            ts_ns=now,
        )
        plugin = self.channel_types[channel.type](self._config_of(channel), self.ctx)
        try:
            return await send_with_retry(
                lambda: plugin.send(n), attempts=1, initial_secs=0, max_secs=0, clock=self.clock
            )
        finally:
            await plugin.shutdown()

    # -- pushed alerts -----------------------------------------------------------------------
    async def receive_external_alerts(self, alerts: Any) -> int:
        """Validate and record an Alertmanager v2 ``POST /api/v2/alerts`` body; notifications go
        out with the next round. Returns how many alerts were accepted."""
        now = self.clock.time_ns()
        parsed = parse_external_alerts(
            alerts, now_ns=now, resolve_timeout_ns=int(self.config.resolve_timeout_secs * NS_PER_S)
        )
        if not self._started:
            await self.start()
        async with self._lock, self._shared():
            changed: dict[tuple[str, str], AlertState] = {}
            history: list[HistoryEntry] = []
            for alert in parsed:
                fp = alert.fingerprint
                for route_id, route in route_alert(self.config, alert.labels):
                    group, group_labels = group_of(route_id, route, alert.labels)
                    key = (group, fp)
                    st = self.states.get(key)
                    if alert.ends_ns <= now:
                        if st is not None and st.state == "firing":
                            st.state, st.resolved_ns, st.ends_ns = "resolved", alert.ends_ns, alert.ends_ns
                            changed[key] = st
                            history.append(_state_entry(st, "resolved", now))
                        continue
                    if st is None or st.state == "resolved":
                        st = AlertState(
                            group_key=group,
                            fingerprint=fp,
                            labels=alert.labels,
                            group_labels=group_labels,
                            state="firing",
                            active_ns=alert.starts_ns,
                            fired_ns=alert.starts_ns,
                        )
                        self.states[key] = st
                        history.append(_state_entry(st, "firing", now))
                    st.annotations = alert.annotations
                    st.ends_ns = alert.ends_ns
                    st.generator_url = alert.generator_url
                    st.channels = list(route.channels)
                    changed[key] = st
            self.store.save_round(upsert=changed.values(), history=history)
        return len(parsed)

    # -- views -------------------------------------------------------------------------------
    def active_alerts(self, *, rule_id: str | None = None) -> list[AlertState]:
        """Pending and firing alerts, oldest first."""
        out = [
            st
            for st in self.states.values()
            if st.state != "resolved" and (rule_id is None or st.rule_id == rule_id)
        ]
        return sorted(out, key=lambda st: (st.active_ns, st.fingerprint))

    def rule_health(self, rule_id: str) -> RuleHealth | None:
        return self.health.get(rule_id)

    async def forget_rule(self, rule_id: str) -> None:
        """After a rule is deleted: drop its alerts and log (no notification)."""
        group = f"rule:{rule_id}"
        async with self._lock:
            for key in [k for k in self.states if k[0] == group]:
                del self.states[key]
            for key in [k for k in self.nlog if k[0] == group]:
                del self.nlog[key]
            self.health.pop(rule_id, None)
            self.store.forget_group(group)


def _holds(rule: Rule, value: float) -> bool:
    cond = rule.conditions
    if isinstance(cond, MetricCondition):
        return cond.holds(value)
    return value >= cond.count


def _state_entry(st: AlertState, kind: Literal["firing", "resolved"], now: int) -> HistoryEntry:
    return HistoryEntry(
        ts_ns=now,
        kind=kind,
        group_key=st.group_key,
        rule_id=st.rule_id,
        rule_name=st.labels.get("alertname", ""),
        fingerprint=st.fingerprint,
        labels=st.labels,
        value=st.value,
    )


def _claim_key(p: _Planned) -> str:
    """The same for every replica planning the same notification (the state and log are shared),
    different for a repeat (``seq``) or an alert that fired again (its new start)."""
    n = p.notification
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{n.group_key}|{p.channel_name}|{n.status}|{p.seq}|".encode())
    for a in sorted(n.alerts, key=lambda a: a.fingerprint):
        h.update(f"{a.fingerprint}:{a.status}:{a.starts_ns}:{a.ends_ns},".encode())
    return h.hexdigest()


def _dedup_key(n: Notification) -> str:
    h = hashlib.blake2b(digest_size=10)
    h.update(f"{n.group_key}|{n.receiver}|{n.status}|{n.ts_ns}|".encode())
    for a in n.alerts:
        h.update(f"{a.fingerprint}:{a.status},".encode())
    return h.hexdigest()

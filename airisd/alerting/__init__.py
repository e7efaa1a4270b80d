"""The alert role: rules, channels, silences, evaluation and notifications.

Modules, in the order data flows:

    rules         models and validation of what users post (rules, channels, silences)
    templates     the safe Go-style template engine for subjects and bodies
    sources       the MetricSource / LogSource protocols the engine queries
    engine        AlertEngine: evaluation rounds, state machine, notification dispatch, pushed alerts
    notification  what channel plugins receive; render: how they turn it into text
    delivery      HTTP error mapping and retry with jittered backoff
    store         AlertStore: alerts.db (rules, channels, silences, state, notification log, history)
    redis_store   RedisAlertStore: the same in Redis, shared by replicas; AlertCluster: their dedup
    service       AlertService: one method per HTTP route, framework-free
    config        AlertingConfig: the [alerting] section

Wiring (the role does this):

    store, cluster = open_store(config, data_dir)   # AlertStore, or RedisAlertStore + AlertCluster
    engine = AlertEngine(store, cluster=cluster, channel_types={"email": EmailChannel, ...},
                         config=alerting_config(cfg.alerting), ctx=plugin_ctx,
                         metrics=metric_source, logs=log_source)
    service = AlertService(engine)
    await engine.start(); task_group.start_soon(engine.run); ...; await engine.shutdown()
"""

from airisd.alerting.config import AlertingConfig, RouteConfig, alerting_config
from airisd.alerting.engine import AlertEngine, RoundResult, Transition
from airisd.alerting.notification import AlertInfo, Notification, RuleInfo
from airisd.alerting.redis_store import AlertCluster, AlertStoreProtocol, RedisAlertStore, open_store
from airisd.alerting.rules import Channel, Rule, Silence, channel_from_json, rule_from_json, silence_from_json
from airisd.alerting.service import AlertService
from airisd.alerting.sources import GroupedMetricSource, LogSource, MetricSource
from airisd.alerting.store import AlertStore
from airisd.alerting.templates import Template, compile_template

__all__ = [
    "AlertCluster",
    "AlertEngine",
    "AlertInfo",
    "AlertService",
    "AlertStore",
    "AlertStoreProtocol",
    "AlertingConfig",
    "Channel",
    "GroupedMetricSource",
    "LogSource",
    "MetricSource",
    "Notification",
    "RedisAlertStore",
    "RoundResult",
    "RouteConfig",
    "Rule",
    "RuleInfo",
    "Silence",
    "Template",
    "Transition",
    "alerting_config",
    "channel_from_json",
    "compile_template",
    "open_store",
    "rule_from_json",
    "silence_from_json",
]

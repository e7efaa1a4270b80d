"""Validation of posted rules, channels and silences: the seed's shapes pass, every bad input is a
ValidationError naming the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from airisd_plugins.alerting.email import EmailChannel
from airisd_plugins.alerting.slack import SlackChannel
from airisd_plugins.alerting.sms import SmsChannel
from airisd_plugins.alerting.webhook import WebhookChannel
from hypothesis import given
from hypothesis import strategies as st

from airisd.alerting.rules import (
    MASK,
    LogCondition,
    MetricCondition,
    channel_from_json,
    compare,
    redact_config,
    restore_secrets,
    rule_from_json,
    silence_from_json,
)
from airisd.errors import ValidationError

REGISTRY = {"email": EmailChannel, "slack": SlackChannel, "webhook": WebhookChannel, "sms": SmsChannel}
NOW = 1_705_314_600_000_000_000

SEED_METRIC_RULE: dict[str, Any] = {
    "name": "High CPU Usage",
    "description": "Alert when CPU usage exceeds 80%",
    "conditions": {"metric": "cpu.usage", "operator": "gt", "threshold": 80, "duration": "5m"},
    "severity": "warning",
    "channels": ["email", "slack"],
    "enabled": True,
    "labels": {"team": "infrastructure", "environment": "production"},
}
SEED_LOG_RULE: dict[str, Any] = {
    "name": "Database Errors",
    "description": "Alert on database connection errors",
    "conditions": {"log_query": "level:ERROR AND message:database", "count": 10, "duration": "1m"},
    "severity": "critical",
    "channels": ["email", "slack", "sms"],
    "enabled": True,
}
SEED_EMAIL: dict[str, Any] = {
    "name": "email",
    "type": "email",
    "config": {
        "recipients": ["admin@company.com", "ops@company.com"],
        "subject_template": "[ALERT] {{.RuleName}} - {{.Severity}}",
        "body_template": "Alert: {{.Description}}\nTime: {{.Timestamp}}\nValue: {{.Value}}",
    },
    "enabled": True,
}
SEED_SLACK: dict[str, Any] = {
    "name": "slack",
    "type": "slack",
    "config": {
        "webhook_url": "https://hooks.slack.com/services/YOUR/SLACK/WEBHOOK",
        "channel": "#alerts",
        "username": "AIRIS-EPM",
        "icon_emoji": ":warning:",
    },
    "enabled": True,
}


def test_seed_rules_are_accepted() -> None:
    metric = rule_from_json(SEED_METRIC_RULE, channel_names={"email", "slack"})
    assert isinstance(metric.conditions, MetricCondition)
    assert metric.conditions.aggregation == "avg" and metric.duration_ns == 300 * 10**9
    log = rule_from_json(SEED_LOG_RULE)
    assert isinstance(log.conditions, LogCondition) and log.conditions.count == 10
    # our own output goes back in unchanged (GET then PUT)
    again = rule_from_json({**metric.to_json(), "state": "firing", "active_alerts": 1})
    assert again.to_json() == metric.to_json()


def with_conditions(**changes: Any) -> dict[str, Any]:
    rule = copy.deepcopy(SEED_METRIC_RULE)
    for key, value in changes.items():
        if value is None:
            rule["conditions"].pop(key)
        else:
            rule["conditions"][key] = value
    return rule


def log_rule(**changes: Any) -> dict[str, Any]:
    rule = copy.deepcopy(SEED_LOG_RULE)
    rule["conditions"].update(changes)
    return rule


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (with_conditions(operator="gtx"), "conditions.operator"),
        (with_conditions(operator=None), "conditions.operator"),
        (with_conditions(duration="5 minutes"), "conditions.duration"),
        (with_conditions(duration=300), "conditions.duration"),
        (with_conditions(threshold="high"), "conditions.threshold"),
        (with_conditions(threshold=None), "conditions.threshold"),
        (with_conditions(threshold=float("nan")), "conditions.threshold"),
        (with_conditions(metric=""), "conditions.metric"),
        (with_conditions(aggregation="median"), "conditions.aggregation"),
        (with_conditions(window="0s"), "conditions.window"),
        (with_conditions(labels={"host": 1}), "conditions.labels"),
        (with_conditions(group_by=["bad label"]), "conditions.group_by[0]"),
        (with_conditions(extra=1), "conditions.extra"),
        (with_conditions(type="trace"), "conditions.type"),
        (log_rule(log_query="level:ERROR AND (message:database"), "conditions.log_query"),
        (log_rule(log_query=""), "conditions.log_query"),
        (log_rule(count=0), "conditions.count"),
        (log_rule(count="ten"), "conditions.count"),
        (log_rule(duration="0s"), "conditions.duration"),
        ({**SEED_METRIC_RULE, "severity": "fatal"}, "severity"),
        ({**SEED_METRIC_RULE, "name": ""}, "name"),
        ({k: v for k, v in SEED_METRIC_RULE.items() if k != "name"}, "name"),
        ({k: v for k, v in SEED_METRIC_RULE.items() if k != "conditions"}, "conditions"),
        ({**SEED_METRIC_RULE, "conditions": []}, "conditions"),
        ({**SEED_METRIC_RULE, "channels": "email"}, "channels"),
        ({**SEED_METRIC_RULE, "channels": ["pager"]}, "channels[0]"),
        ({**SEED_METRIC_RULE, "enabled": "yes"}, "enabled"),
        ({**SEED_METRIC_RULE, "labels": {"bad key": "x"}}, "labels.bad key"),
        ({**SEED_METRIC_RULE, "bogus": 1}, "bogus"),
        ({**SEED_METRIC_RULE, "created_ns": 1}, "created_ns"),
        ([SEED_METRIC_RULE], "body"),
    ],
)
def test_bad_rules_name_the_field(body: Any, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        rule_from_json(body, channel_names={"email", "slack", "sms"})
    assert info.value.details["field"] == field
    assert info.value.message.startswith(field) or field == "body"


def test_log_query_error_keeps_the_position() -> None:
    with pytest.raises(ValidationError) as info:
        rule_from_json(log_rule(log_query="level:ERROR AND (message:database"))
    assert "position" in info.value.details and "position" in info.value.message


@given(
    st.dictionaries(
        st.text(max_size=8), st.none() | st.integers() | st.text(max_size=8) | st.lists(st.integers())
    )
)
def test_random_rule_bodies_never_crash(body: dict[str, Any]) -> None:
    for candidate in (body, {**SEED_METRIC_RULE, "conditions": body}, {**SEED_LOG_RULE, **body}):
        try:
            rule_from_json(candidate)
        except ValidationError as exc:
            assert exc.details["field"]


@given(st.floats(allow_nan=False), st.floats(allow_nan=False))
def test_compare_matches_python_operators(value: float, threshold: float) -> None:
    expected = {
        "gt": value > threshold,
        "gte": value >= threshold,
        "lt": value < threshold,
        "lte": value <= threshold,
        "eq": value == threshold,
        "ne": value != threshold,
    }
    assert {op: compare(value, op, threshold) for op in expected} == expected


# -- channels -----------------------------------------------------------------------------------


def test_seed_channels_are_accepted() -> None:
    email = channel_from_json(SEED_EMAIL, REGISTRY)
    slack = channel_from_json(SEED_SLACK, REGISTRY)
    assert email.type == "email" and slack.config["channel"] == "#alerts"


def channel(base: dict[str, Any], **config: Any) -> dict[str, Any]:
    body = copy.deepcopy(base)
    for key, value in config.items():
        if value is None:
            body["config"].pop(key, None)
        else:
            body["config"][key] = value
    return body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (channel(SEED_EMAIL, recipients=None), "config.recipients"),
        (channel(SEED_EMAIL, recipients=[]), "config.recipients"),
        (channel(SEED_EMAIL, recipients=["not-an-address"]), "config.recipients[0]"),
        (channel(SEED_EMAIL, recipients=["a@b.c\nBcc: x@y.z"]), "config.recipients[0]"),
        (channel(SEED_EMAIL, subject_template="[ALERT] {{.RuleName"), "config.subject_template"),
        (channel(SEED_EMAIL, body_template="{{.Nope}}"), "config.body_template"),
        (channel(SEED_EMAIL, security="ssl"), "config.security"),
        (channel(SEED_EMAIL, port=70000), "config.port"),
        (channel(SEED_EMAIL, recipent=["a@b.c"]), "config.recipent"),
        (channel(SEED_SLACK, webhook_url=None), "config.webhook_url"),
        (channel(SEED_SLACK, webhook_url="hooks.slack.com/x"), "config.webhook_url"),
        (channel(SEED_SLACK, icon_emoji="warning"), "config.icon_emoji"),
        (channel(SEED_SLACK, text_template="{{ range .Alerts }}"), "config.text_template"),
        ({"name": "hook", "type": "webhook", "config": {}}, "config.url"),
        (
            {
                "name": "hook",
                "type": "webhook",
                "config": {"url": "http://x.example/", "headers": {"A B": "1"}},
            },
            "config.headers.A B",
        ),
        ({"name": "sms", "type": "sms", "config": {"url": "https://gw.example/send"}}, "config.recipients"),
        (
            {
                "name": "sms",
                "type": "sms",
                "config": {"url": "https://gw.example/send", "recipients": ["call me"]},
            },
            "config.recipients[0]",
        ),
        ({"name": "sms", "type": "sms", "config": {"recipients": ["+8210"], "url": ""}}, "config.url"),
        (
            {
                "name": "sms",
                "type": "sms",
                "config": {"recipients": ["+821012345678"], "url": "https://gw.example/{{.To"},
            },
            "config.url",
        ),
        (
            {
                "name": "sms",
                "type": "sms",
                "config": {"recipients": ["+821012345678"], "url": "https://gw.example/", "method": "PUT"},
            },
            "config.method",
        ),
        ({**SEED_EMAIL, "type": "pager"}, "type"),
        ({**SEED_EMAIL, "name": "bad name!"}, "name"),
        ({**SEED_EMAIL, "config": "x"}, "config"),
        ({k: v for k, v in SEED_EMAIL.items() if k != "type"}, "type"),
    ],
)
def test_bad_channels_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        channel_from_json(body, REGISTRY)
    assert info.value.details["field"] == field


def test_template_error_in_channel_has_position() -> None:
    with pytest.raises(ValidationError) as info:
        channel_from_json(channel(SEED_EMAIL, subject_template="[ALERT] {{.RuleName"), REGISTRY)
    assert info.value.details["position"] == 8


def test_daemon_defaults_fill_missing_config() -> None:
    slack = {"name": "slack", "type": "slack", "config": {"channel": "#ops"}}
    with pytest.raises(ValidationError):
        channel_from_json(slack, REGISTRY)
    defaults = {"slack": {"webhook_url": "https://hooks.slack.com/services/T/B/secret"}}
    made = channel_from_json(slack, REGISTRY, defaults=defaults)
    assert made.config == {"channel": "#ops"}  # stored as posted; defaults apply on use


def test_redaction_masks_secrets_and_restore_keeps_them() -> None:
    config = {
        "webhook_url": "https://hooks.slack.com/services/T000/B000/XXXXSECRET",
        "password": "hunter2",
        "username": "ops@company.com",
        "url": "https://user:pw@gw.example/send?api_key=k123&to=1",
        "headers": {"Authorization": "Bearer abc", "Content-Type": "application/json"},
    }
    masked = redact_config(config)
    text = repr(masked)
    for secret in ("XXXXSECRET", "hunter2", "pw@", "k123", "Bearer abc"):
        assert secret not in text
    assert masked["username"] == "ops@company.com"
    assert masked["headers"]["Content-Type"] == "application/json"
    assert masked["password"] == MASK
    assert masked["webhook_url"].startswith("https://hooks.slack.com/")
    # a GET body sent back keeps the stored secrets; a new value replaces them
    assert restore_secrets(masked, config) == config
    changed = {**masked, "password": "new-one"}
    assert restore_secrets(changed, config)["password"] == "new-one"


def test_channel_redacted_output() -> None:
    made = channel_from_json(channel(SEED_EMAIL, password="s3cret", username="u@company.com"), REGISTRY)
    out = made.redacted()
    assert out["config"]["password"] == MASK and "s3cret" not in repr(out)
    assert made.to_json()["config"]["password"] == "s3cret"


# -- silences -----------------------------------------------------------------------------------


def test_silence_shapes() -> None:
    s = silence_from_json({"rule_id": "rule_abc", "duration": "2h", "comment": "maintenance"}, now_ns=NOW)
    assert s.starts_ns == NOW and s.ends_ns == NOW + 7200 * 10**9
    am = silence_from_json(
        {
            "matchers": [{"name": "team", "value": "infra|db", "isRegex": True}],
            "startsAt": "2024-01-15T10:00:00Z",
            "endsAt": "2024-01-15T12:00:00Z",
            "createdBy": "ops",
        },
        now_ns=NOW,
    )
    assert am.matches("any", {"team": "db"}) and not am.matches("any", {"team": "web"})
    simple = silence_from_json({"matchers": {"team": "infra"}, "duration": "1h"}, now_ns=NOW)
    assert simple.matches("r", {"team": "infra"}) and not simple.matches("r", {})
    neg = silence_from_json(
        {"matchers": [{"name": "env", "value": "prod", "is_equal": False}], "duration": "1h"}, now_ns=NOW
    )
    assert neg.matches("r", {"env": "dev"}) and not neg.matches("r", {"env": "prod"})
    assert s.active(NOW) and not s.active(s.ends_ns)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"duration": "1h"}, "matchers"),
        ({"rule_id": "r", "matchers": {}}, "ends_at"),
        ({"rule_id": "r", "duration": "soon"}, "duration"),
        ({"rule_id": "r", "ends_at": "2020-01-01T00:00:00Z"}, "ends_at"),
        ({"rule_id": "r", "starts_at": "yesterday", "duration": "1h"}, "starts_at"),
        ({"rule_id": "r", "duration": "1h", "ends_at": "2030-01-01T00:00:00Z"}, "duration"),
        ({"matchers": [{"name": "a", "value": "(", "isRegex": True}], "duration": "1h"}, "matchers[0].value"),
        ({"matchers": [{"name": "bad name", "value": "x"}], "duration": "1h"}, "matchers[0].name"),
        ({"matchers": [{"value": "x"}], "duration": "1h"}, "matchers[0].name"),
        ({"matchers": "team=x", "duration": "1h"}, "matchers"),
        ({"rule_id": "r", "duration": "1h", "color": "red"}, "color"),
    ],
)
def test_bad_silences_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        silence_from_json(body, now_ns=NOW)
    assert info.value.details["field"] == field

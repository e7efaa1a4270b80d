"""The route-facing service over the SQLite store: CRUD of rules, channels and silences, secrets
masked in every output, paging of history, 404 and 400 naming the field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from airisd_plugins.alerting.email import EmailChannel
from airisd_plugins.alerting.slack import SlackChannel
from airisd_plugins.alerting.sms import SmsChannel
from airisd_plugins.alerting.webhook import WebhookChannel

from airisd.alerting.config import alerting_config
from airisd.alerting.rules import MASK
from airisd.alerting.service import merge_patch
from airisd.alerting.state import HistoryEntry
from airisd.errors import ConfigError, NotFound, ValidationError
from tests.conftest import FakeClock
from tests.test_alert_engine import Rig, make_rig
from tests.test_alert_rules import SEED_EMAIL, SEED_LOG_RULE, SEED_METRIC_RULE, SEED_SLACK

pytestmark = pytest.mark.anyio
SLACK_URL = "https://hooks.slack.com/services/T000/B000/XXXXSECRET"


@pytest.fixture
async def rig(tmp_path: Path, fake_clock: FakeClock) -> Any:
    r = make_rig(
        tmp_path, fake_clock, channel_defaults={"email": {"host": "smtp.company.com", "password": "pw"}}
    )
    r.engine.channel_types = {
        "email": EmailChannel,
        "slack": SlackChannel,
        "webhook": WebhookChannel,
        "sms": SmsChannel,
    }
    yield r
    await r.engine.shutdown()


async def seed_channels(rig: Rig) -> tuple[dict[str, Any], dict[str, Any]]:
    email = await rig.service.create_channel(SEED_EMAIL)
    slack = await rig.service.create_channel(
        {**SEED_SLACK, "config": {**SEED_SLACK["config"], "webhook_url": SLACK_URL}}
    )
    return email, slack


async def test_rule_crud(rig: Rig) -> None:
    await seed_channels(rig)
    await rig.service.create_channel(
        {
            "name": "sms",
            "type": "sms",
            "config": {"url": "https://gw.example/send", "recipients": ["+821012345678"]},
        }
    )
    rule = await rig.service.create_rule(SEED_METRIC_RULE)
    assert re.fullmatch(r"rule_[a-z0-9]{8}", rule["id"])
    assert rule["created_at"] == rule["updated_at"] == "2024-01-15T10:30:00.000Z"
    assert (rule["state"], rule["active_alerts"], rule["last_evaluation"]) == ("inactive", 0, None)
    log_rule = await rig.service.create_rule(SEED_LOG_RULE)
    assert [r["name"] for r in await rig.service.list_rules()] == ["High CPU Usage", "Database Errors"]
    assert await rig.service.get_rule(rule["id"]) == rule

    rig.clock.advance(60)
    put = await rig.service.replace_rule(rule["id"], {**rule, "severity": "critical"})  # GET body PUT back
    assert put["severity"] == "critical" and put["created_at"] == rule["created_at"]
    assert put["updated_at"] == "2024-01-15T10:31:00.000Z"
    patched = await rig.service.patch_rule(
        rule["id"], {"conditions": {"threshold": 90}, "labels": {"team": None}}
    )
    assert patched["conditions"]["threshold"] == 90 and patched["conditions"]["operator"] == "gt"
    assert patched["labels"] == {"environment": "production"}
    assert (await rig.service.set_rule_enabled(rule["id"], False))["enabled"] is False
    assert [r["id"] for r in await rig.service.list_rules(enabled=True)] == [log_rule["id"]]

    await rig.service.delete_rule(rule["id"])
    with pytest.raises(NotFound):
        await rig.service.get_rule(rule["id"])
    with pytest.raises(NotFound):
        await rig.service.delete_rule(rule["id"])


async def test_rule_errors(rig: Rig) -> None:
    with pytest.raises(ValidationError) as info:
        await rig.service.create_rule(SEED_METRIC_RULE)  # no channel named email yet
    assert info.value.details["field"] == "channels[0]"
    await seed_channels(rig)
    rule = await rig.service.create_rule(SEED_METRIC_RULE)
    with pytest.raises(ValidationError) as info:
        await rig.service.patch_rule(rule["id"], {"conditions": {"operator": "above"}})
    assert info.value.details["field"] == "conditions.operator"
    with pytest.raises(ValidationError) as info:
        await rig.service.patch_rule(rule["id"], ["not", "an", "object"])
    assert info.value.details["field"] == "body"
    with pytest.raises(NotFound):
        await rig.service.replace_rule("rule_missing", SEED_METRIC_RULE)
    assert (await rig.service.get_rule(rule["id"]))["conditions"]["operator"] == "gt"  # unchanged


async def test_channels_are_masked_in_every_output(rig: Rig) -> None:
    _, slack = await seed_channels(rig)
    assert slack["config"]["webhook_url"] == "https://hooks.slack.com/***"
    for out in [slack, await rig.service.get_channel(slack["id"]), *await rig.service.list_channels()]:
        assert "XXXXSECRET" not in repr(out)
    # a GET body PUT back keeps the secret; the engine still sees the real URL
    put = await rig.service.replace_channel(
        slack["id"], {**slack, "config": {**slack["config"], "channel": "#ops"}}
    )
    assert put["config"]["channel"] == "#ops"
    stored = rig.engine.store.get_channel(slack["id"])
    assert stored.config["webhook_url"] == SLACK_URL
    patched = await rig.service.patch_channel(slack["id"], {"config": {"username": "bot"}})
    assert patched["config"]["username"] == "bot"
    assert rig.engine.store.get_channel(slack["id"]).config["webhook_url"] == SLACK_URL


async def test_channel_errors_and_references(rig: Rig) -> None:
    email, slack = await seed_channels(rig)
    with pytest.raises(ValidationError) as info:
        await rig.service.create_channel(SEED_EMAIL)
    assert info.value.details["field"] == "name"  # a second channel named email
    with pytest.raises(ValidationError) as info:
        await rig.service.patch_channel(email["id"], {"config": {"recipients": []}})
    assert info.value.details["field"] == "config.recipients"
    rule = await rig.service.create_rule(SEED_METRIC_RULE)
    with pytest.raises(ValidationError, match=rule["id"]):
        await rig.service.delete_channel(slack["id"])
    with pytest.raises(ValidationError):
        await rig.service.patch_channel(slack["id"], {"name": "chat"})
    await rig.service.delete_rule(rule["id"])
    await rig.service.patch_channel(slack["id"], {"name": "chat"})
    await rig.service.delete_channel(slack["id"])
    with pytest.raises(NotFound):
        await rig.service.get_channel(slack["id"])


async def test_channel_defaults_show_through_but_are_not_stored(rig: Rig) -> None:
    email = await rig.service.create_channel(SEED_EMAIL)
    assert "host" not in email["config"]
    config = rig.engine._config_of(rig.engine.store.get_channel(email["id"]))
    assert (config.host, config.password) == ("smtp.company.com", "pw")


async def test_silences(rig: Rig) -> None:
    silence = await rig.service.create_silence(
        {"matchers": {"team": "db"}, "duration": "1h", "comment": "upgrade"}
    )
    assert re.fullmatch(r"sil_[a-z0-9]{8}", silence["id"]) and silence["active"] is True
    assert (
        silence["starts_at"] == "2024-01-15T10:30:00.000Z"
        and silence["ends_at"] == "2024-01-15T11:30:00.000Z"
    )
    assert await rig.service.get_silence(silence["id"]) == silence
    rig.clock.advance(7200)
    assert (await rig.service.list_silences())[0]["active"] is False
    assert await rig.service.list_silences(active=True) == []
    await rig.service.delete_silence(silence["id"])
    with pytest.raises(NotFound):
        await rig.service.delete_silence(silence["id"])
    with pytest.raises(ValidationError) as info:
        await rig.service.create_silence({"rule_id": "rule_nothere", "duration": "1h"})
    assert info.value.details["field"] == "rule_id"


async def test_history_pages_newest_first(rig: Rig) -> None:
    await rig.service.create_channel(
        {"name": "ops", "type": "webhook", "config": {"url": "http://127.0.0.1:9/x"}}
    )
    store = rig.engine.store
    store.save_round(
        history=[HistoryEntry(ts_ns=i, kind="firing", group_key="g", rule_id=f"r{i % 2}") for i in range(25)]
    )
    first = await rig.service.list_history(limit=10)
    assert first["items"][0]["timestamp"] == "1970-01-01T00:00:00.000Z"
    ids = [e["id"] for e in first["items"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 10
    second = await rig.service.list_history(limit=10, before=first["next_before"])
    third = await rig.service.list_history(limit=10, before=second["next_before"])
    assert len(third["items"]) == 5 and third["next_before"] is None
    all_ids = ids + [e["id"] for e in second["items"]] + [e["id"] for e in third["items"]]
    assert sorted(all_ids) == list(range(1, 26))
    only = await rig.service.list_history(rule_id="r1", limit=100)
    assert len(only["items"]) == 12
    with pytest.raises(ValidationError):
        await rig.service.list_history(limit=0)
    with pytest.raises(ValidationError):
        await rig.service.list_history(kind="sent")
    with pytest.raises(ValidationError):
        await rig.service.list_alerts(state="resolved")


def test_merge_patch_rfc7386() -> None:
    assert merge_patch({"a": "b", "c": {"d": "e", "f": "g"}}, {"a": "z", "c": {"f": None}}) == {
        "a": "z",
        "c": {"d": "e"},
    }
    assert merge_patch({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}
    assert merge_patch({"a": 1}, {"b": {"c": None}}) == {"a": 1, "b": {}}


def test_alerting_config_section() -> None:
    config = alerting_config(
        {
            "evaluation_interval_secs": "1",
            "routes": [{"match": {"team": "db"}, "channels": ["db"], "continue": True}],
        }
    )
    assert config.evaluation_interval_secs == 1.0 and config.routes[0].continue_
    assert config.routes[0].group_by == ["alertname"]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"evaluation_interval_secs": 0}, "evaluation_interval_secs"),
        ({"repeat_intervall_secs": 5}, "repeat_intervall_secs"),
        ({"routes": [{"match_re": {"a": "("}, "channels": []}]}, "routes[0].match_re.a"),
        ({"send_attempts": 0}, "send_attempts"),
    ]
    for bad, key in cases:
        with pytest.raises(ConfigError, match=re.escape(key)):
            alerting_config(bad, source="airisd.toml")


async def test_email_password_is_masked(rig: Rig) -> None:
    await rig.service.create_channel(
        {"name": "pw", "type": "email", "config": {"recipients": ["a@company.com"], "password": "hunter2"}}
    )
    out = await rig.service.list_channels()
    assert out[0]["config"]["password"] == MASK

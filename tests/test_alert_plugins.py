"""The channel plugins as plugins: sample.toml shows the Config's real defaults, READMEs show a
working example, and the lifecycle contract (shutdown safe without start, safe twice) holds."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import msgspec
import pytest
from airisd_plugins.alerting import email, slack, sms, webhook

from airisd.alerting.rules import channel_config, channel_from_json
from airisd.plugin import AlertChannel
from tests.conftest import make_ctx

PLUGINS = {"email": email, "slack": slack, "webhook": webhook, "sms": sms}
ROOT = Path(__file__).resolve().parent.parent / "plugins" / "alerting"
REGISTRY: dict[str, type[AlertChannel]] = {name: mod.plugin_class for name, mod in PLUGINS.items()}
VALID = {
    "email": {"recipients": ["ops@company.com"]},
    "slack": {"webhook_url": "https://hooks.slack.com/services/T/B/X"},
    "webhook": {"url": "https://tickets.company.com/hook"},
    "sms": {"url": "https://gw.company.com/send", "recipients": ["+821012345678"]},
}


def sample_section(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(options set from the environment, options shown as commented-out defaults)."""
    text = (ROOT / name / "sample.toml").read_text()
    text = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", text)
    live = tomllib.loads(text)
    uncommented = "\n".join(re.sub(r"^(\s*)# (?!#)", r"\1", line) for line in text.splitlines())
    everything = tomllib.loads(uncommented)
    section = everything["alerting"]["channel_defaults"][name]
    set_live = live.get("alerting", {}).get("channel_defaults", {}).get(name, {})
    return set_live, {k: v for k, v in section.items() if k not in set_live}


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_sample_shows_every_option_with_its_real_default(name: str) -> None:
    config_cls = REGISTRY[name].Config
    fields = {f.name: f for f in msgspec.structs.fields(config_cls)}
    from_env, defaults = sample_section(name)
    assert set(from_env) | set(defaults) == set(fields), "sample.toml and Config disagree on the options"
    for key, shown in defaults.items():
        field = fields[key]
        real = field.default if field.default is not msgspec.NODEFAULT else field.default_factory()
        assert shown == real, f"{name}: sample shows {key} = {shown!r}, the default is {real!r}"


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_readme_example_is_a_valid_channel(name: str) -> None:
    readme = (ROOT / name / "README.md").read_text()
    body = re.search(r"-d '(\{.*?\})'", readme, re.S)
    assert body is not None, "README has no curl example"
    channel = channel_from_json(json.loads(body.group(1)), REGISTRY)
    assert channel.type == name
    for snippet in re.findall(r"```json\n(\{.*?\})\n```", readme, re.S):
        doc = json.loads(snippet)
        if "url" in doc:  # an sms/webhook config example
            channel_from_json({"name": "x", "type": name, "config": doc}, REGISTRY)


@pytest.mark.anyio
@pytest.mark.parametrize("name", sorted(PLUGINS))
async def test_lifecycle_contract(name: str, tmp_path: Path) -> None:
    cls = REGISTRY[name]
    assert cls.kind == "alerting" and cls.name == name and cls.description
    channel = channel_from_json({"name": "x", "type": name, "config": VALID[name]}, REGISTRY)
    config = channel_config(channel, REGISTRY)
    never_started = cls(config, make_ctx(tmp_path))
    await never_started.shutdown()
    plugin = cls(config, make_ctx(tmp_path))
    await plugin.start()
    await plugin.shutdown()
    await plugin.shutdown()

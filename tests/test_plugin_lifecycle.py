"""The plugin contract, checked once for every registered plugin (it grows as plugins are added):
built from its Config, start → run → shutdown → shutdown again, shutdown without start, unknown
config keys refused; and every plugin folder ships a README.md and a sample.toml that validates."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from airisd.config import load_dotenv, substitute
from airisd.errors import AirisError
from airisd.plugin import Plugin, PluginConfig
from airisd.registry import PluginInfo, build_registry
from tests.conftest import FakeClock, make_ctx

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = build_registry()
PLUGINS = REGISTRY.all()

# Plugins whose defaults are not a valid config (a channel needs somewhere to send to): the least
# they need. A new plugin that needs one fails test_every_plugin_runs_the_lifecycle until it is here.
MINIMAL_CONFIGS: dict[tuple[str, str], dict[str, Any]] = {
    ("processor", "filter"): {"names": ["test.*"]},  # a filter that matches everything is refused
    ("alerting", "webhook"): {"url": "http://127.0.0.1:9/hook"},
    ("alerting", "slack"): {"webhook_url": "http://127.0.0.1:9/slack"},
    ("alerting", "sms"): {"url": "http://127.0.0.1:9/sms", "recipients": ["+821012345678"]},
    ("alerting", "email"): {"recipients": ["ops@example.com"]},
}
SECTION_OF_KIND = {"input": "inputs", "processor": "processors", "output": "outputs", "alerting": "alerting"}


def build_config(cls: type[Plugin], raw: dict[str, Any]) -> PluginConfig:
    config = msgspec.convert(raw, cls.Config, strict=False)
    config.validate()
    return config


def default_config(info: PluginInfo) -> PluginConfig:
    raw = MINIMAL_CONFIGS.get((info.kind, info.name), {})
    try:
        return build_config(info.cls, raw)
    except (ValueError, AirisError) as exc:
        pytest.fail(
            f"{info.kind} {info.name}: its default config is invalid ({exc}); add the least valid config "
            f"to MINIMAL_CONFIGS in {Path(__file__).name}"
        )


def instantiate(info: PluginInfo, tmp_path: Path) -> Plugin:
    return info.cls(default_config(info), make_ctx(tmp_path, clock=FakeClock()))


def test_the_registry_has_the_built_ins() -> None:
    assert {(i.kind, i.name) for i in PLUGINS} >= {("input", "http_metrics"), ("output", "sqlite")}
    assert REGISTRY.broken == []


@pytest.mark.anyio
@pytest.mark.parametrize("info", PLUGINS, ids=lambda i: f"{i.kind}-{i.name}")
async def test_every_plugin_runs_the_lifecycle(info: PluginInfo, tmp_path: Path) -> None:
    plugin = instantiate(info, tmp_path)
    with anyio.fail_after(10):
        await plugin.start()
        async with anyio.create_task_group() as tg:
            await tg.start(plugin.run)  # ready, as the daemon waits for it
            tg.cancel_scope.cancel()  # and stops when cancelled
        await plugin.shutdown()
        await plugin.shutdown()  # safe twice


@pytest.mark.anyio
@pytest.mark.parametrize("info", PLUGINS, ids=lambda i: f"{i.kind}-{i.name}")
async def test_shutdown_without_start_is_safe(info: PluginInfo, tmp_path: Path) -> None:
    plugin = instantiate(info, tmp_path)
    with anyio.fail_after(10):
        await plugin.shutdown()
        await plugin.shutdown()


@pytest.mark.parametrize("info", PLUGINS, ids=lambda i: f"{i.kind}-{i.name}")
def test_unknown_config_key_is_refused(info: PluginInfo) -> None:
    assert info.cls.Config.__struct_config__.forbid_unknown_fields, (
        f"{info.name}.Config must forbid unknown keys"
    )
    raw = {**MINIMAL_CONFIGS.get((info.kind, info.name), {}), "no_such_option_xyz": 1}
    with pytest.raises(msgspec.ValidationError, match="no_such_option_xyz"):
        msgspec.convert(raw, info.cls.Config, strict=False)


@pytest.mark.parametrize("info", PLUGINS, ids=lambda i: f"{i.kind}-{i.name}")
def test_plugin_metadata(info: PluginInfo) -> None:
    assert info.cls.description, f"{info.name} needs a one-line description for `airisd plugins list`"
    assert info.name.replace("_", "").isalnum() and info.name == info.name.lower()


# -- plugin folders ----------------------------------------------------------------------------------

FOLDERS = sorted(p.parent for p in ROOT.glob("plugins/*/*/__init__.py"))


def plugin_class_of(folder: Path) -> type[Plugin]:
    dotted = "airisd_plugins." + ".".join(folder.relative_to(ROOT / "plugins").parts)
    for info in PLUGINS:
        if info.module == dotted or info.module.startswith(dotted + "."):
            return info.cls
    cls = getattr(importlib.import_module(dotted), "plugin_class", None)
    assert isinstance(cls, type) and issubclass(cls, Plugin), f"{dotted} defines no plugin_class"
    return cls


def sample_sections(folder: Path, data: dict[str, Any], cls: type[Plugin]) -> list[dict[str, Any]]:
    section = SECTION_OF_KIND[cls.kind]
    if cls.kind == "alerting":  # [alerting.channel_defaults.NAME]: merged under each channel's config
        table = data.get("alerting", {}).get("channel_defaults", {}).get(cls.name)
        assert isinstance(table, dict), f"{folder}/sample.toml needs [alerting.channel_defaults.{cls.name}]"
        return [{**MINIMAL_CONFIGS.get((cls.kind, cls.name), {}), **table}]
    tables = data.get(section, {}).get(cls.name)
    assert isinstance(tables, list) and tables, f"{folder}/sample.toml needs a [[{section}.{cls.name}]] table"
    return tables


def test_every_registered_plugin_has_a_folder() -> None:
    folders = {plugin_class_of(f) for f in FOLDERS}
    for info in PLUGINS:
        if info.package == "airisd":
            assert info.cls in folders, f"{info.kind} {info.name} lives outside plugins/<kind>/<name>/"


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: f"{p.parent.name}-{p.name}")
def test_plugin_folder_has_readme_and_a_valid_sample(folder: Path) -> None:
    readme = folder / "README.md"
    sample = folder / "sample.toml"
    assert readme.is_file(), f"{folder} needs a README.md"
    assert sample.is_file(), f"{folder} needs a sample.toml"
    assert readme.read_text(encoding="utf-8").strip()
    text = sample.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        pytest.fail(f"{sample}: not valid TOML: {exc}")
    # ${VAR:-default} is filled as the daemon fills it, from the seed's variables (.env.example).
    data = substitute(data, load_dotenv(ROOT / ".env.example", {}), where=str(sample))
    cls = plugin_class_of(folder)
    assert folder.name == cls.name, f"folder {folder.name} holds plugin {cls.name!r}"
    for raw in sample_sections(folder, data, cls):
        try:
            build_config(cls, raw)
        except (msgspec.ValidationError, ValueError, AirisError) as exc:
            pytest.fail(f"{sample}: {exc}")
    # The commented-out defaults document every option: each `# key = value` line is a real option.
    options = set(cls.Config.__struct_fields__)
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# ") and " = " in stripped and not stripped.startswith("##"):
            key = stripped[2:].split(" = ", 1)[0].strip()
            if key.isidentifier():
                assert key in options, f"{sample}: commented option {key!r} is not in {cls.__name__}.Config"

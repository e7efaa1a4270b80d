"""The plugin registry: built-ins come through the entry-point group like third-party plugins, and
a broken plugin package is reported and skipped instead of stopping the daemon."""

from __future__ import annotations

import inspect
import types
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, ClassVar

import pytest

import airisd
from airisd import hookspecs, registry
from airisd.errors import ConfigError
from airisd.hookspecs import hookimpl
from airisd.plugin import Input, Output, Plugin, Processor
from airisd.registry import build_registry

BUILT_INS = {
    ("input", "http_metrics"),
    ("processor", "labels"),
    ("processor", "filter"),
    ("output", "sqlite"),
}


def module(name: str, classes: Any) -> types.ModuleType:
    """A plugin module as a third-party package would ship it."""
    mod = types.ModuleType(name)

    @hookimpl
    def airisd_plugin_classes() -> Any:
        if isinstance(classes, BaseException):
            raise classes
        return classes

    mod.airisd_plugin_classes = airisd_plugin_classes  # type: ignore[attr-defined]
    return mod


class GoodInput(Input):
    name: ClassVar[str] = "good_input"


class ShadowSqlite(Output):
    name: ClassVar[str] = "sqlite"


class BadKind(Plugin):
    kind: ClassVar[str] = "exporter"
    name: ClassVar[str] = "x"


class BadName(Processor):
    name: ClassVar[str] = "has-dash"


class NoName(Processor):
    pass


def test_built_ins_come_from_the_airisd_package() -> None:
    reg = build_registry()
    found = {(i.kind, i.name): i for i in reg.all()}
    assert set(found) >= BUILT_INS
    for key in BUILT_INS:
        info = found[key]
        assert info.package == "airisd"
        assert info.version == airisd.__version__
        assert info.module.startswith("airisd_plugins.")
        assert issubclass(info.cls, Plugin) and info.cls.description
    assert reg.broken == []


def test_listing_is_grouped_by_kind_then_name() -> None:
    infos = build_registry().all()
    order = [("input", "processor", "output", "alerting").index(i.kind) for i in infos]
    assert order == sorted(order)
    for kind in ("input", "processor", "output"):
        names = [i.name for i in build_registry().of_kind(kind)]
        assert names == sorted(names)


def test_extra_modules_are_registered_like_entry_points() -> None:
    reg = build_registry(extra_modules=[module("third_party_a", [GoodInput])])
    info = reg.get("input", "good_input")
    assert info.cls is GoodInput
    assert info.package == "extra"
    assert set(reg.plugins) >= BUILT_INS


@pytest.mark.parametrize(
    ("classes", "error"),
    [
        (RuntimeError("import-time boom"), "RuntimeError: import-time boom"),
        ([int], "not a subclass of airisd.plugin.Plugin"),
        (["sqlite"], "not a subclass"),
        ([BadKind], "kind 'exporter'"),
        ([BadName], "'has-dash' must be a non-empty identifier"),
        ([NoName], "non-empty identifier"),
        ([ShadowSqlite], "already provided by airisd"),
    ],
)
def test_a_broken_module_is_recorded_and_the_rest_still_load(classes: Any, error: str) -> None:
    reg = build_registry(extra_modules=[module("broken_pkg", classes), module("fine_pkg", [GoodInput])])
    assert [b.entry_point for b in reg.broken] == ["broken_pkg"]
    assert error in reg.broken[0].error
    assert reg.get("input", "good_input").cls is GoodInput
    assert set(reg.plugins) >= BUILT_INS
    assert reg.get("output", "sqlite").package == "airisd"  # the first provider keeps its name


def test_partly_bad_module_keeps_its_good_classes() -> None:
    reg = build_registry(extra_modules=[module("mixed_pkg", [int, GoodInput])])
    assert reg.get("input", "good_input").cls is GoodInput
    assert len(reg.broken) == 1


def test_module_without_the_hook_or_returning_none_adds_nothing() -> None:
    reg = build_registry(extra_modules=[types.ModuleType("no_hook"), module("returns_none", None)])
    assert set(reg.plugins) == set(build_registry().plugins)
    assert reg.broken == []


def test_an_entry_point_that_fails_to_import_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    real = list(entry_points(group=hookspecs.PROJECT))
    ghost = EntryPoint(name="ghost", value="airisd_no_such_module_anywhere", group=hookspecs.PROJECT)
    monkeypatch.setattr(registry, "entry_points", lambda group: [*real, ghost])
    reg = build_registry()
    assert [(b.entry_point, b.package) for b in reg.broken] == [("ghost", "unknown")]
    assert "ModuleNotFoundError" in reg.broken[0].error
    assert set(reg.plugins) >= BUILT_INS
    with pytest.raises(ConfigError, match=r"ghost.*failed to load.*ModuleNotFoundError"):
        reg.get("input", "ghost")


@pytest.mark.parametrize(("ep_name", "value"), [
    ("relay_output", "airisd_no_such_pkg.outputs.relay"),   # named with its kind
    ("something_else", "airisd_no_such_pkg.outputs.relay"),  # module named after the plugin
])
def test_a_plugin_whose_entry_point_has_another_name_still_reports_its_load_error(
        monkeypatch: pytest.MonkeyPatch, ep_name: str, value: str) -> None:
    ghost = EntryPoint(name=ep_name, value=value, group=hookspecs.PROJECT)
    monkeypatch.setattr(registry, "entry_points", lambda group: [ghost])
    with pytest.raises(ConfigError, match=r"'relay' failed to load.*ModuleNotFoundError"):
        build_registry().get("output", "relay")


def test_unknown_plugin_lists_what_is_installed() -> None:
    with pytest.raises(ConfigError) as exc:
        build_registry().get("output", "clickhous")
    assert "clickhous" in str(exc.value)
    assert "sqlite" in str(exc.value)


def test_without_entry_points_only_extras_load() -> None:
    reg = build_registry(load_entry_points=False, extra_modules=[module("only", [GoodInput])])
    assert set(reg.plugins) == {("input", "good_input")}


def test_the_registry_is_built_fresh_each_time() -> None:
    """No module-level manager: two registries do not share state."""
    a = build_registry(extra_modules=[module("one", [GoodInput])])
    b = build_registry()
    assert ("input", "good_input") in a.plugins
    assert ("input", "good_input") not in b.plugins
    assert a.pm is not b.pm


def test_pyproject_registers_every_plugin_folder_that_has_a_hook() -> None:
    """A plugin folder whose module has the hook but is not in the entry-point group would be
    silently missing from `airisd plugins list`."""
    root = Path(__file__).resolve().parent.parent
    names = {ep.value for ep in entry_points(group=hookspecs.PROJECT)}
    for init in sorted(root.glob("plugins/*/*/__init__.py")):
        if "airisd_plugin_classes" in init.read_text(encoding="utf-8"):
            dotted = "airisd_plugins." + ".".join(init.parent.relative_to(root / "plugins").parts)
            assert dotted in names, f"{dotted} has a hook but no [project.entry-points.airisd] line"


def test_every_hook_is_documented_and_tested() -> None:
    specs = [f for name, f in vars(hookspecs).items() if callable(f) and hasattr(f, "airisd_spec")]
    assert specs, "no hook specs found"
    source = Path(__file__).read_text(encoding="utf-8")
    for spec in specs:
        doc = inspect.getdoc(spec) or ""
        assert len(doc) > 40, f"hook {spec.__name__} needs a docstring"
        assert "Return rule" in doc, f"hook {spec.__name__} must say how results combine"
        assert spec.__name__ in source, f"hook {spec.__name__} has no test here"

"""The plugin registry: a pluggy manager built by a factory, never at import time.

``build_registry()`` adds the hook specs, loads every module of the ``airisd`` entry-point group
(built-ins and third-party alike), one at a time so that a broken package is reported with its name
and skipped instead of stopping the daemon, and collects the plugin classes they return.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from airisd import hookspecs
from airisd.errors import ConfigError
from airisd.plugin import KINDS, Plugin

log = logging.getLogger("airisd.registry")


@dataclass(frozen=True)
class PluginInfo:
    kind: str
    name: str
    cls: type[Plugin]
    package: str  # the distribution that provides it
    version: str
    module: str


@dataclass
class BrokenPlugin:
    entry_point: str
    package: str
    error: str
    module: str = ""  # what the entry point names, e.g. airisd_plugins.outputs.kafka

    def may_provide(self, kind: str, name: str) -> bool:
        """Could this be the plugin a config asks for? An entry point is often named after the
        plugin (``kafka``) or with its kind (``kafka_output``), or its module ends in the name."""
        return (self.entry_point in (name, f"{name}_{kind}", f"{kind}_{name}")
                or self.module.rsplit(".", 1)[-1].split(":")[0] == name)


@dataclass
class Registry:
    pm: pluggy.PluginManager
    plugins: dict[tuple[str, str], PluginInfo] = field(default_factory=dict)
    broken: list[BrokenPlugin] = field(default_factory=list)

    def get(self, kind: str, name: str) -> PluginInfo:
        info = self.plugins.get((kind, name))
        if info is None:
            broken = [b for b in self.broken if b.may_provide(kind, name)]
            if broken:
                raise ConfigError(
                    f"{kind} plugin {name!r} failed to load from package {broken[0].package}: {broken[0].error}"
                )
            known = ", ".join(sorted(n for k, n in self.plugins if k == kind)) or "none"
            raise ConfigError(f"unknown {kind} plugin {name!r} (installed: {known})")
        return info

    def of_kind(self, kind: str) -> list[PluginInfo]:
        return sorted((i for (k, _), i in self.plugins.items() if k == kind), key=lambda i: i.name)

    def all(self) -> list[PluginInfo]:
        return sorted(self.plugins.values(), key=lambda i: (KINDS.index(i.kind), i.name))


def _dist_of(ep: EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "unknown", ""
    return dist.metadata["Name"] or "unknown", dist.version or ""


def build_registry(*, extra_modules: list[Any] = (), load_entry_points: bool = True) -> Registry:  # type: ignore[assignment]
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    if os.environ.get("AIRISD_TRACE_HOOKS"):
        pm.trace.root.setwriter(lambda msg: log.debug("hook %s", msg.rstrip()))
        pm.enable_tracing()
    registry = Registry(pm=pm)
    sources: list[tuple[Any, str, str, str]] = []  # (module, entry name, package, version)
    if load_entry_points:
        for ep in sorted(entry_points(group=hookspecs.PROJECT), key=lambda e: e.name):
            package, version = _dist_of(ep)
            try:
                module = ep.load()
                pm.register(module, name=f"{package}:{ep.name}")
            except Exception as exc:  # a broken third-party package must not stop the daemon
                registry.broken.append(BrokenPlugin(ep.name, package, f"{type(exc).__name__}: {exc}", ep.value))
                log.warning("plugin failed to load", extra={"kv": {"entry_point": ep.name, "package": package,
                                                                    "error": f"{type(exc).__name__}: {exc}"}})
                continue
            sources.append((module, ep.name, package, version))
    for module in extra_modules:
        pm.register(module)
        sources.append((module, getattr(module, "__name__", "extra"), "extra", ""))
    for module, ep_name, package, version in sources:
        impl = getattr(module, "airisd_plugin_classes", None)
        if impl is None:
            continue
        try:
            classes = impl()
        except Exception as exc:
            registry.broken.append(BrokenPlugin(ep_name, package, f"{type(exc).__name__}: {exc}"))
            continue
        for cls in classes or []:
            problem = _check_class(cls)
            if problem:
                registry.broken.append(BrokenPlugin(ep_name, package, problem))
                continue
            key = (cls.kind, cls.name)
            if key in registry.plugins:
                other = registry.plugins[key]
                registry.broken.append(BrokenPlugin(
                    ep_name, package, f"{cls.kind} {cls.name!r} is already provided by {other.package}"))
                continue
            registry.plugins[key] = PluginInfo(cls.kind, cls.name, cls, package, version, cls.__module__)
    return registry


def _check_class(cls: Any) -> str:
    if not isinstance(cls, type) or not issubclass(cls, Plugin):
        return f"{cls!r} is not a subclass of airisd.plugin.Plugin"
    if cls.kind not in KINDS:
        return f"{cls.__name__}.kind {cls.kind!r} is not one of {', '.join(KINDS)}"
    if not cls.name or not cls.name.replace("_", "").isalnum():
        return f"{cls.__name__}.name {cls.name!r} must be a non-empty identifier"
    return ""

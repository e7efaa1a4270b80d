"""Drop (or keep only) items whose name and labels match."""

from __future__ import annotations

import fnmatch
import re
from typing import Any, ClassVar

import msgspec

from airisd.hookspecs import hookimpl
from airisd.model import Batch, Signal
from airisd.plugin import Plugin, PluginConfig, Processor


class FilterConfig(PluginConfig):
    ## "drop": remove matching items; "keep": remove everything else.
    action: str = "drop"
    ## Glob patterns on the metric name (or a log's service); empty matches every name.
    names: list[str] = msgspec.field(default_factory=list)
    ## Label globs that must all match: {host = "test-*"}.
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    signals: list[str] = msgspec.field(default_factory=lambda: ["metrics"])

    def validate(self) -> None:
        if self.action not in ("drop", "keep"):
            raise ValueError(f"action must be 'drop' or 'keep', got {self.action!r}")
        if not self.names and not self.labels:
            raise ValueError("set names or labels (or both): a filter that matches everything is a mistake")
        for s in self.signals:
            if s not in ("metrics", "logs"):
                raise ValueError(f"signals: {s!r} is not 'metrics' or 'logs'")


class FilterProcessor(Processor):
    name: ClassVar[str] = "filter"
    Config: ClassVar[type[FilterConfig]] = FilterConfig
    description: ClassVar[str] = "Drop or keep items by name and label globs"
    signals: ClassVar[frozenset[Signal]] = frozenset({Signal.METRICS, Signal.LOGS})
    config: FilterConfig

    def __init__(self, config: FilterConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        self._names = [re.compile(fnmatch.translate(p)) for p in config.names]
        self._labels = {k: re.compile(fnmatch.translate(v)) for k, v in config.labels.items()}

    def matches(self, item: Any) -> bool:
        name = getattr(item, "name", None)
        if not isinstance(name, str):
            name = str(getattr(item, "service", ""))
        if self._names and not any(p.match(name) for p in self._names):
            return False
        labels = item.labels
        return all(k in labels and p.match(labels[k]) for k, p in self._labels.items())

    def process(self, batch: Batch) -> Batch:
        if batch.signal.value not in self.config.signals:
            return batch
        keep = self.config.action == "keep"
        batch.items = [i for i in batch.items if self.matches(i) == keep]
        return batch


@hookimpl
def airisd_plugin_classes() -> list[type[Plugin]]:
    return [FilterProcessor]


plugin_class = FilterProcessor

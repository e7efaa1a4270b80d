"""Add, rename and drop labels on metric points (and log records' labels)."""

from __future__ import annotations

from typing import ClassVar

import msgspec

from airisd.hookspecs import hookimpl
from airisd.model import Batch, Signal
from airisd.plugin import Plugin, PluginConfig, Processor


class LabelsConfig(PluginConfig):
    ## Labels set on every item; an item's own value wins unless overwrite = true.
    add: dict[str, str] = msgspec.field(default_factory=dict)
    overwrite: bool = False
    ## Rename label keys: {old = "new"}.
    rename: dict[str, str] = msgspec.field(default_factory=dict)
    ## Remove these label keys.
    drop: list[str] = msgspec.field(default_factory=list)
    ## Which signals to touch: metrics, logs.
    signals: list[str] = msgspec.field(default_factory=lambda: ["metrics", "logs"])

    def validate(self) -> None:
        for s in self.signals:
            if s not in ("metrics", "logs"):
                raise ValueError(f"signals: {s!r} is not 'metrics' or 'logs'")
        for k in [*self.add, *self.rename, *self.rename.values(), *self.drop]:
            if not k:
                raise ValueError("label keys must not be empty")


class LabelsProcessor(Processor):
    name: ClassVar[str] = "labels"
    Config: ClassVar[type[LabelsConfig]] = LabelsConfig
    description: ClassVar[str] = "Add, rename and drop labels"
    signals: ClassVar[frozenset[Signal]] = frozenset({Signal.METRICS, Signal.LOGS})
    config: LabelsConfig

    def process(self, batch: Batch) -> Batch:
        c = self.config
        if batch.signal.value not in c.signals:
            return batch
        for item in batch.items:
            labels = item.labels
            for old, new in c.rename.items():
                if old in labels:
                    labels[new] = labels.pop(old)
            for key in c.drop:
                labels.pop(key, None)
            if c.add:
                item.labels = {**labels, **c.add} if c.overwrite else {**c.add, **labels}
        return batch


@hookimpl
def airisd_plugin_classes() -> list[type[Plugin]]:
    return [LabelsProcessor]


plugin_class = LabelsProcessor

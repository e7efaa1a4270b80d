"""Probabilistic head sampling of traces, keyed on the trace id."""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

from airisd.hookspecs import hookimpl
from airisd.model import Batch, Signal, Span
from airisd.plugin import Plugin, PluginConfig, Processor

_SCALE = 2**64


def trace_hash(trace_id: str) -> int:
    """A stable 64-bit hash of a trace id: every span of a trace, in any process, decides alike."""
    return int.from_bytes(hashlib.blake2b(trace_id.encode(), digest_size=8).digest(), "big")


class SampleConfig(PluginConfig):
    ## Fraction of traces kept, 0.0 to 1.0. The sample config sets "${JAEGER_SAMPLING_RATE:-1.0}";
    ## a section without rate keeps everything.
    rate: float = 1.0
    ## Keep error spans even when their trace is not sampled.
    keep_errors: bool = True

    def validate(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"rate must be between 0.0 and 1.0, got {self.rate}")


class SampleProcessor(Processor):
    name: ClassVar[str] = "sample"
    Config: ClassVar[type[SampleConfig]] = SampleConfig
    description: ClassVar[str] = "Head sampling of traces by trace id; error spans always kept"
    signals: ClassVar[frozenset[Signal]] = frozenset({Signal.TRACES})
    config: SampleConfig

    def __init__(self, config: SampleConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        self.threshold = int(config.rate * _SCALE)
        self._cache: dict[str, bool] = {}

    def keep(self, span: Span) -> bool:
        if self.config.keep_errors and span.error:
            return True
        if self.threshold >= _SCALE:
            return True
        decision = self._cache.get(span.trace_id)
        if decision is None:
            decision = trace_hash(span.trace_id) < self.threshold
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[span.trace_id] = decision
        return decision

    def process(self, batch: Batch) -> Batch:
        batch.items = [s for s in batch.items if self.keep(s)]
        return batch


@hookimpl
def airisd_plugin_classes() -> list[type[Plugin]]:
    return [SampleProcessor]


plugin_class = SampleProcessor

"""Shared fixtures for the unit tests. End-to-end helpers live in tests/e2e_helpers.py."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from airisd.model import Batch
from airisd.plugin import Clock, PluginContext
from airisd.selfmetrics import Registry

# Property tests run on every `make test`: keep them quick and deterministic on CI.
settings.register_profile(
    "default", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture
def anyio_backend() -> str:
    """anyio's pytest plugin runs ``@pytest.mark.anyio`` tests on asyncio, the daemon's backend."""
    return "asyncio"


class FakeClock(Clock):
    """A clock that moves only when told: ``sleep`` advances it instead of waiting."""

    def __init__(self, start_ns: int = 1_705_314_600_000_000_000) -> None:  # 2024-01-15T10:30:00Z
        self.now_ns = start_ns
        self.mono = 0.0

    def time_ns(self) -> int:
        return self.now_ns

    def monotonic(self) -> float:
        return self.mono

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.now_ns += int(seconds * 1_000_000_000)
        self.mono += seconds


# SQLite commits on tmpfs cost no fsync: stores under test open and write ~10x faster there.
FAST_TMP = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


@pytest.fixture
def fast_tmp_path(tmp_path: Path) -> Iterator[Path]:
    """A fresh directory on tmpfs when there is one (else tmp_path), removed afterwards."""
    if FAST_TMP is None:
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(prefix="airisd-test-", dir=FAST_TMP) as d:
        yield Path(d)


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


async def _no_emit(batch: Batch) -> None:
    raise AssertionError(f"this test's plugin context does not accept batches ({batch!r})")


def make_ctx(
    data_dir: Path,
    *,
    clock: Clock | None = None,
    metrics: Registry | None = None,
    emit: Any = _no_emit,
    settings: dict[str, Any] | None = None,
) -> PluginContext:
    """A PluginContext for building one plugin outside the daemon."""
    return PluginContext(
        data_dir=data_dir,
        log=logging.getLogger("airisd.test"),
        metrics=metrics or Registry(),
        emit=emit,
        clock=clock or Clock(),
        settings=settings or {"max_body_bytes": 1 << 20},
    )


@pytest.fixture
def plugin_ctx(tmp_path: Path, fake_clock: FakeClock) -> PluginContext:
    return make_ctx(tmp_path, clock=fake_clock)

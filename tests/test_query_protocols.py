"""The embedded store satisfies the query protocols every queryable store is held to."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from airisd_plugins.outputs.sqlite import STORE_CLASSES

from airisd.model import Signal
from airisd.query import QUERY_PROTOCOLS, LogQuery, MetricQuery, TraceQuery


@pytest.mark.parametrize("signal", list(Signal))
def test_sqlite_stores_satisfy_the_protocols(signal: Signal, tmp_path: Path) -> None:
    store = STORE_CLASSES[signal](tmp_path, synchronous="NORMAL")
    protocol = QUERY_PROTOCOLS[signal.value]
    assert isinstance(store, protocol)
    # and with the same parameter names, which callers pass by keyword
    for name, member in inspect.getmembers(protocol, inspect.isfunction):
        if name.startswith("_"):
            continue
        want = list(inspect.signature(member).parameters)
        got = list(inspect.signature(getattr(store, name)).parameters)
        assert got == want[1:], (signal, name, got, want)


def test_an_object_missing_a_method_is_not_a_store() -> None:
    class Half:
        def query_points(self) -> None: ...

    assert not isinstance(Half(), MetricQuery)
    assert not isinstance(Half(), LogQuery)
    assert not isinstance(Half(), TraceQuery)

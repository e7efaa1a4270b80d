"""The trace store on ClickHouse: random traces and random Jaeger-style searches (the SQLite trace
store's own strategies and brute-force oracle), against the real engine (chdb) over a socket."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from airisd_plugins.outputs.clickhouse import ClickHouseOutput
from hypothesis import given, settings
from hypothesis import strategies as st

from airisd.model import Batch, Signal, Span
from tests.servers import ServerProcess
from tests.test_output_clickhouse import chdb, make_output, raw_client  # noqa: F401 - chdb is a fixture
from tests.test_traces_store import (
    FILTER_VALUES,
    TAG_KEYS,
    check_query,
    mk,
    oracle_text,
    query_strategy,
    traces_strategy,
)

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def shared(chdb: ServerProcess) -> Iterator[tuple[ClickHouseOutput, Any]]:  # noqa: F811
    """One migrated database for every example, emptied before each; insert deduplication off
    (hypothesis replays examples, and a replayed identical block would be dropped)."""
    out = make_output(chdb, "traces_oracle", retention_days=0)
    anyio.run(out.start)
    client = raw_client(chdb)
    client.command("ALTER TABLE traces_oracle.spans MODIFY SETTING non_replicated_deduplication_window = 0")
    try:
        yield out, client
    finally:
        client.close()
        anyio.run(out.shutdown)


@settings(max_examples=40)
@given(traces_strategy, st.data())
def test_search_agrees_with_brute_force(shared: tuple[ClickHouseOutput, Any], traces: list[list[dict[str, Any]]],
                                        data: st.DataObject) -> None:
    out, client = shared
    client.command("TRUNCATE TABLE traces_oracle.spans")
    all_spans: dict[str, list[Span]] = {
        f"trace-{t}": [mk(f"trace-{t}", f"s{i}", d["start_ms"], d["dur_ms"], service=d["service"], op=d["op"],
                          error=d["error"], tags=d["tags"]) for i, d in enumerate(spans)]
        for t, spans in enumerate(traces)}
    anyio.run(out.write, Batch(Signal.TRACES, [s for spans in all_spans.values() for s in spans]))
    store = out.query_api(Signal.TRACES)
    assert store is not None
    stored = sorted({(k, oracle_text(v)) for ss in all_spans.values() for s in ss for k, v in s.tags.items()})
    stored += [(k.removeprefix("resource."), v) for k, v in stored if k.startswith("resource.")]
    filters = st.tuples(st.sampled_from([*TAG_KEYS, "error"]), st.sampled_from(FILTER_VALUES))
    if stored:
        filters = filters | st.sampled_from(stored)
    for q in data.draw(st.lists(query_strategy, min_size=1, max_size=6)):
        if data.draw(st.booleans()):
            q["tags"] = data.draw(st.lists(filters, min_size=1, max_size=2))
        check_query(store, all_spans, q)
    # Whole traces come back as written, tags with their types; the catalogue from the spans.
    for tid, spans in all_spans.items():
        assert store.get_trace(tid) == sorted(spans, key=lambda s: (s.start_ts, s.span_id))
    assert store.get_traces(["nope", "trace-0", "bad id!"]) == {"trace-0": store.get_trace("trace-0")}
    every = [s for spans in all_spans.values() for s in spans]
    assert store.services() == sorted({s.service_name for s in every})
    for service in store.services():
        assert store.operations(service) == sorted({s.operation_name for s in every if s.service_name == service})
        assert store.operation_kinds(service) == sorted({(s.operation_name, s.kind) for s in every
                                                         if s.service_name == service})

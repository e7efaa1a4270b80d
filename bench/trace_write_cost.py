"""The span writer's CPU per span by schema variant: TraceStore.apply + COMMIT (+ a PASSIVE
checkpoint every 40 batches, as the writer process's background checkpointer does) on 512-span
batches like OTLP requests, each variant's stores open side by side and fed batch by batch in a
rotating order, so that the machine's noise falls on every variant alike.

    .venv/bin/python bench/trace_write_cost.py [--batches 2000] [--copies 2] [VARIANT ...]

A variant is ``current`` (TraceStore.SCHEMA), ``bare`` (no span index at all) or ``old`` (the five
span indexes of the first release), or ``+SQL`` / ``-NAME``: the current schema plus a statement /
without the index NAME. Figures are µs of process CPU per span, the median of the copies.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import tempfile
import time
from pathlib import Path

from airisd_plugins.outputs.sqlite.traces_store import TraceStore
from logs_traces import _trace_batches

OLD_INDEXES = """
    CREATE INDEX IF NOT EXISTS spans_start ON spans (start_ts, duration, error);
    CREATE INDEX IF NOT EXISTS spans_slow_service ON spans (service, start_ts, duration, operation, error)
        WHERE duration >= 100000000;
    CREATE INDEX IF NOT EXISTS spans_slow ON spans (start_ts, duration, error) WHERE duration >= 100000000;
"""
_INDEX = re.compile(r"CREATE INDEX IF NOT EXISTS (\w+) ON spans [^;]*;")
_DROP = re.compile(r"DROP INDEX IF EXISTS \w+;")


def schema(variant: str) -> str:
    current = TraceStore.SCHEMA
    if variant == "current":
        return current
    if variant == "bare":
        return _INDEX.sub("", current)
    if variant == "old":
        return _DROP.sub("", current) + OLD_INDEXES
    if variant.startswith("+"):
        return current + variant[1:]
    if variant.startswith("-"):
        return _INDEX.sub(lambda m: "" if m.group(1) == variant[1:] else m.group(0), current)
    raise SystemExit(f"unknown variant {variant!r}")


class VariantStore(TraceStore):
    pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=2000, help="512-span batches a store (default 2000)")
    ap.add_argument("--copies", type=int, default=2, help="stores per variant (default 2)")
    ap.add_argument("variants", nargs="*", default=["old", "current", "bare"])
    args = ap.parse_args()
    end = time.time_ns()
    n = args.batches * 512
    step = 25_000  # 40k spans/s
    spans = [s for b in _trace_batches(n, end - n * step, step, random.Random(7), []) for s in b]
    batches = [spans[i : i + 512] for i in range(0, n, 512)]
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent / ".cache") as tmp:
        stores = []
        for c in range(args.copies):
            for k, v in enumerate(args.variants):
                d = Path(tmp) / f"{k}-{c}"
                d.mkdir()
                VariantStore.SCHEMA = schema(v)
                st = VariantStore(d)
                st.open(background_checkpoint=True)
                stores.append((v, st, [0.0, 0.0, 0.0]))
        prepared = [stores[0][1].prepare(b) for b in batches]
        for i, p in enumerate(prepared):
            for _, st, acc in stores[i % len(stores) :] + stores[: i % len(stores)]:
                st.wconn.execute("BEGIN IMMEDIATE")
                t0 = time.process_time()
                st.apply(p)
                t1 = time.process_time()
                st.wconn.execute("COMMIT")
                t2 = time.process_time()
                acc[0] += t1 - t0
                acc[1] += t2 - t1
                if i % 40 == 39:
                    st.checkpoint()
                    acc[2] += time.process_time() - t2
        print(f"{n:,} spans in {args.batches} batches of 512, {args.copies} stores a variant; µs of CPU per span")
        for v in args.variants:
            accs = [acc for w, _, acc in stores if w == v]
            a, c, k = (statistics.median(x[j] for x in accs) / n * 1e6 for j in range(3))
            size = statistics.median(st.path.stat().st_size for w, st, _ in stores if w == v) / n
            print(f"{v:24s} apply {a:6.2f}  commit {c:5.2f}  checkpoint {k:5.2f}  total {a + c + k:6.2f}"
                  f"  ({size:.0f} B/span in the file)")  # fmt: skip
        for _, st, _ in stores:
            st.close()


if __name__ == "__main__":
    main()

"""retention_days of the elasticsearch output: which index names are ours and how old they are
(unit and hypothesis tests), and the deletion against noida-db's Elasticsearch API over a real socket
(an emulator of Elasticsearch 8.15, not Elasticsearch: see the plugin's README).

noida-db answered every call the cleanup makes as Elasticsearch 8 documents it: ``_cat/indices``
with a pattern (``[]`` when nothing matches, closed indices with ``expand_wildcards``), ``DELETE``
of a comma list with ``ignore_unavailable``, and 400 for a wildcard ``DELETE``."""

from __future__ import annotations

import calendar
import logging
import string
import time
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from airisd_plugins.outputs.elasticsearch import ElasticsearchConfig
from airisd_plugins.outputs.elasticsearch.retention import DAY_SECS, datable, delete_groups, expired, index_period
from airisd_plugins.outputs.elasticsearch.template import index_name
from airisd_plugins.outputs.elasticsearch.writer import prepare
from elasticsearch import Elasticsearch
from hypothesis import example, given
from hypothesis import strategies as st

from airisd.errors import TransientError
from airisd.model import LogRecord
from tests.e2e_helpers import free_port
from tests.servers import ServerProcess
from tests.test_output_elasticsearch import es, fresh_prefix, make_output, noida, write_all  # noqa: F401

SEC = 1_000_000_000
DAY = 86_400
NOW = calendar.timegm((2024, 1, 15, 10, 30, 0, 0, 0, 0))  # 2024-01-15T10:30:00Z


def utc(*fields: int) -> int:
    """UTC seconds of (year, month, day[, hour, minute, second])."""
    full = (*fields, 0, 0, 0)[:6]
    return calendar.timegm((*full, 0, 0, 0))


# -- config ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("options", "message"), [
    ({"retention_days": -1}, r"retention_days must be >= 0 \(0 keeps every index, N deletes indices older "
                             r"than N days\), got -1"),
    ({"retention_days": 7, "index_date_format": "%m.%d"},
     r"retention_days = 7 needs an index_date_format whose names each cover one period with its year .*"
     r"got '%m.%d': change it, or set retention_days = 0"),
    ({"retention_days": 7, "index_date_format": "%y.%m.%d"}, "got '%y.%m.%d'"),
    ({"retention_days": 7, "index_date_format": "%G.%V"}, "got '%G.%V'"),
    ({"retention_check_interval_secs": 0}, "retention_check_interval_secs must be positive, got 0"),
])  # fmt: skip
def test_config_rejects_bad_retention_saying_what_to_set(options: dict[str, Any], message: str) -> None:
    cfg = msgspec.convert(options, ElasticsearchConfig)
    with pytest.raises(ValueError, match=message):
        cfg.validate()


@pytest.mark.parametrize("fmt", ["%Y.%m.%d", "%Y.%m", "%Y", "%Y.%m.%d.%H", "%Y-%m-%d-%H.%M", "%Y.%j", "%d.%m.%Y"])
def test_config_takes_retention_with_any_datable_format(fmt: str) -> None:
    msgspec.convert({"retention_days": 30, "index_date_format": fmt}, ElasticsearchConfig).validate()


def test_retention_is_off_by_default_and_any_format_is_fine_without_it() -> None:
    cfg = msgspec.convert({"index_date_format": "%m.%d"}, ElasticsearchConfig)
    cfg.validate()
    assert cfg.retention_days == 0


# -- names and periods -----------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "fmt", "period"), [
    ("logs-2024.01.15", "%Y.%m.%d", (utc(2024, 1, 15), utc(2024, 1, 16))),
    ("logs-2024.02.29", "%Y.%m.%d", (utc(2024, 2, 29), utc(2024, 3, 1))),
    ("logs-2024.01", "%Y.%m", (utc(2024, 1, 1), utc(2024, 2, 1))),
    ("logs-2023.12", "%Y.%m", (utc(2023, 12, 1), utc(2024, 1, 1))),
    ("logs-2024", "%Y", (utc(2024, 1, 1), utc(2025, 1, 1))),
    ("logs-2024.01.15.23", "%Y.%m.%d.%H", (utc(2024, 1, 15, 23), utc(2024, 1, 16))),
    ("logs-2024.046", "%Y.%j", (utc(2024, 2, 15), utc(2024, 2, 16))),
    ("logs-15.01.2024", "%d.%m.%Y", (utc(2024, 1, 15), utc(2024, 1, 16))),
    # not ours: another prefix, another spelling, something appended, an impossible date
    ("logs-archive-2020.01.01", "%Y.%m.%d", None),
    ("logsx-2020.01.01", "%Y.%m.%d", None),
    ("xlogs-2020.01.01", "%Y.%m.%d", None),
    ("logs-2020.1.1", "%Y.%m.%d", None),
    ("logs-2020.01. 1", "%Y.%m.%d", None),
    ("logs-2020.01.01-restored", "%Y.%m.%d", None),
    ("logs-2020.01.01.00", "%Y.%m.%d", None),
    ("logs-2020.02.30", "%Y.%m.%d", None),
    ("logs-2020.01.01", "%Y.%m.%d.%H", None),
    ("logs-", "%Y.%m.%d", None),
    ("logs-2020.01.01", "%m.%d", None),  # a format that cannot be dated dates nothing
])  # fmt: skip
def test_index_period(name: str, fmt: str, period: tuple[int, int] | None) -> None:
    assert index_period(name, "logs-", fmt) == period


def test_the_last_month_and_year_strftime_can_write_are_dated() -> None:
    # December 9999: its end is year 10000, which datetime (and so calendar.timegm) cannot make.
    end = 253_402_300_800  # 10000-01-01T00:00:00Z
    assert index_period("p-9999.12", "p-", "%Y.%m") == (end - 31 * DAY_SECS, end)
    assert index_period("p-9999", "p-", "%Y") == (end - 365 * DAY_SECS, end)
    assert expired(["p-9999.12", "p-2001.01"], "p-", "%Y.%m", cutoff=NOW) == ["p-2001.01"]


def test_an_index_expires_when_its_whole_period_is_older_than_the_cutoff() -> None:
    names = ["logs-2024.01.07", "logs-2024.01.08", "logs-2023.12.31", "logs-archive-2020.01.01", "other-2020.01.01"]
    cutoff = utc(2024, 1, 8)  # the end of 2024.01.07
    assert expired(names, "logs-", "%Y.%m.%d", cutoff) == ["logs-2023.12.31", "logs-2024.01.07"]
    assert expired(names, "logs-", "%Y.%m.%d", cutoff - 1) == ["logs-2023.12.31"]


def test_delete_groups_keep_each_request_line_short() -> None:
    names = [f"logs-2020.01.{d:02d}" for d in range(1, 32)]
    groups = delete_groups(names, max_chars=100)
    assert [n for g in groups for n in g] == names
    assert all(len(",".join(g)) <= 100 for g in groups)
    assert delete_groups([]) == []


FORMATS = ["%Y.%m.%d", "%Y.%m", "%Y", "%Y.%m.%d.%H", "%Y.%m.%d.%H.%M", "%Y%m%d%H%M%S", "%Y.%j", "%d-%m-%Y"]
prefixes = st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,12}", fullmatch=True)
# 1000-01-01 .. 9999-12-31: the years strftime writes with four digits
seconds = st.integers(min_value=-30_610_224_000, max_value=253_402_300_799)
record_seconds = st.integers(min_value=-(2**63) // SEC + 1, max_value=(2**63 - 1) // SEC)  # ts_ns is 64-bit


@given(prefixes, st.sampled_from(FORMATS), seconds)
@example("0", "%Y.%m", 253_399_622_400)  # December 9999, found by CI: its end is in year 10000
@example("0", "%Y", 253_402_300_799)
def test_index_period_round_trips_index_name(prefix: str, fmt: str, ts: int) -> None:
    name = index_name(prefix, fmt, ts * SEC)
    period = index_period(name, prefix, fmt)
    assert period is not None, name
    start, end = period
    assert start <= ts < end
    assert index_name(prefix, fmt, start * SEC) == name == index_name(prefix, fmt, (end - 1) * SEC)
    assert index_name(prefix, fmt, end * SEC) != name
    assert index_name(prefix, fmt, (start - 1) * SEC) != name


@given(prefixes, prefixes, st.sampled_from(FORMATS), seconds)
def test_a_foreign_prefix_never_matches(prefix: str, other: str, fmt: str, ts: int) -> None:
    # A prefix that is not ours + dates: another writer's. (Ours + digits only could spell one of our
    # own names, which nothing can tell apart; ours + a letter never does.)
    foreign = other if not other.startswith(prefix) else prefix + "x" + other
    assert index_period(index_name(foreign, fmt, ts * SEC), prefix, fmt) is None


@given(prefixes, st.sampled_from(FORMATS), st.text(string.digits + "._+- x", max_size=20))
def test_only_names_index_name_writes_are_dated(prefix: str, fmt: str, suffix: str) -> None:
    period = index_period(prefix + suffix, prefix, fmt)
    if period is not None:  # then it is exactly the name of the period's records
        assert index_name(prefix, fmt, period[0] * SEC) == prefix + suffix


def record(ts_s: int, message: str = "m") -> LogRecord:
    return LogRecord(ts=ts_s * SEC, level="INFO", message=message, service="svc")


@given(st.sampled_from(FORMATS), st.lists(record_seconds, min_size=1, max_size=30))
def test_prepare_names_every_record_as_index_name_does(fmt: str, stamps: list[int]) -> None:
    """The writer caches names per UTC day, or per second for hourly and finer formats (it used to
    cache per day for every format, writing a day's records to the index of its first hour)."""
    docs = prepare([record(s) for s in stamps], prefix="p-", date_format=fmt, content_ids=False)
    assert [d.index for d in docs] == [index_name("p-", fmt, s * SEC) for s in stamps]


def test_retention_off_deletes_nothing_and_runs_nothing(tmp_path: Path) -> None:
    out = make_output(f"http://127.0.0.1:{free_port()}", tmp_path)  # nothing listens: nothing is asked

    async def go() -> None:
        assert await out.enforce_retention(now=NOW) == []
        with anyio.fail_after(5):
            await out.run()  # returns at once
        await out.shutdown()

    anyio.run(go)


# -- against noida-db ------------------------------------------------------------------------------
def indices(es: Elasticsearch, pattern: str) -> set[str]:  # noqa: F811
    rows: list[dict[str, str]] = es.cat.indices(index=pattern, format="json", h="index",
                                                expand_wildcards="open,closed").body  # type: ignore[assignment]
    return {r["index"] for r in rows}


def put(es: Elasticsearch, index: str, n: int = 2) -> None:  # noqa: F811
    for i in range(n):
        es.index(index=index, id=str(i), document={"message": f"{index} {i}"})
    es.indices.refresh(index=index)


def run_retention(url: str, tmp_path: Path, now: float, **options: Any) -> list[str]:
    out = make_output(url, tmp_path, **options)

    async def go() -> list[str]:
        try:
            return await out.enforce_retention(now=now)
        finally:
            await out.shutdown()

    return anyio.run(go)


def test_retention_deletes_exactly_our_old_indices(noida: ServerProcess, es: Elasticsearch,  # noqa: F811
                                                   tmp_path: Path) -> None:
    p = fresh_prefix("ret")  # e.g. ret3-
    # Ours, written by the output itself (template, bulk): 7 days at NOW cut at 2024-01-08T10:30Z.
    days = [(2023, 12, 31), (2024, 1, 1), (2024, 1, 7), (2024, 1, 8), (2024, 1, 14), (2024, 1, 15)]
    write_all(make_output(noida.url, tmp_path, index_prefix=p),
              [record(utc(*d) + h * 3600, f"day {d} hour {h}") for d in days for h in (0, 23)])
    old = [f"{p}2023.12.31", f"{p}2024.01.01", f"{p}2024.01.07"]
    kept_ours = [f"{p}2024.01.08", f"{p}2024.01.14", f"{p}2024.01.15"]
    assert indices(es, p + "*") == set(old + kept_ours)
    es.indices.close(index=f"{p}2024.01.01")  # closed old indices go too
    # Not ours, however old: another prefix that starts like ours, ours plus more, other spellings.
    foreign = [f"{p}archive-2020.01.01", f"{p[:-1]}x-2020.01.01", f"x{p}2020.01.01", f"{p}2020.1.1",
               f"{p}2020.01.01-restored", f"{p}2020.01.01.00", "other-2020.01.01"]
    for name in foreign:
        put(es, name)

    deleted = run_retention(noida.url, tmp_path, NOW, index_prefix=p, retention_days=7)

    assert deleted == old
    left = indices(es, "*")
    assert not left & set(old)
    assert set(kept_ours + foreign) <= left
    es.indices.refresh(index=",".join(kept_ours))
    for name in kept_ours:  # two records a day, intact
        assert es.count(index=name)["count"] == 2
    for name in foreign:
        assert es.count(index=name)["count"] == 2
    # Again: nothing left to delete.
    assert run_retention(noida.url, tmp_path, NOW, index_prefix=p, retention_days=7) == []
    assert run_retention(noida.url, tmp_path, NOW + DAY, index_prefix=p, retention_days=7) == [f"{p}2024.01.08"]


def test_hourly_indices_go_by_the_hour(noida: ServerProcess, es: Elasticsearch, tmp_path: Path) -> None:  # noqa: F811
    p = fresh_prefix("reth")
    fmt = "%Y.%m.%d.%H"
    write_all(make_output(noida.url, tmp_path, index_prefix=p, index_date_format=fmt),
              [record(utc(2024, 1, 14, h, 30)) for h in (8, 9, 10, 11)])
    assert indices(es, p + "*") == {f"{p}2024.01.14.{h:02d}" for h in (8, 9, 10, 11)}
    # one day at 2024-01-15T10:30Z: the hours up to 10:00 on the 14th have ended; 10:00-11:00 has not
    deleted = run_retention(noida.url, tmp_path, NOW, index_prefix=p, index_date_format=fmt, retention_days=1)
    assert deleted == [f"{p}2024.01.14.08", f"{p}2024.01.14.09"]
    assert indices(es, p + "*") == {f"{p}2024.01.14.10", f"{p}2024.01.14.11"}


def test_monthly_indices_go_when_the_whole_month_is_old(noida: ServerProcess, es: Elasticsearch,  # noqa: F811
                                                        tmp_path: Path) -> None:
    p = fresh_prefix("retm")
    for name in ("2023.11", "2023.12", "2024.01"):
        put(es, p + name, n=1)
    opts = {"index_prefix": p, "index_date_format": "%Y.%m", "retention_days": 15}
    # at NOW (2024-01-15T10:30Z) December ended 14.4 days ago: only November goes
    assert run_retention(noida.url, tmp_path, NOW, **opts) == [f"{p}2023.11"]
    assert run_retention(noida.url, tmp_path, utc(2024, 1, 15, 23, 59, 59), **opts) == []
    assert run_retention(noida.url, tmp_path, utc(2024, 1, 16), **opts) == [f"{p}2023.12"]
    assert indices(es, p + "*") == {f"{p}2024.01"}


def test_the_periodic_task_deletes_and_stops_on_shutdown(noida: ServerProcess, es: Elasticsearch,  # noqa: F811
                                                         tmp_path: Path) -> None:
    p = fresh_prefix("retp")
    today = time.strftime("%Y.%m.%d", time.gmtime())
    put(es, p + "2001.01.01", n=1)
    put(es, p + today, n=1)
    out = make_output(noida.url, tmp_path, index_prefix=p, retention_days=1, retention_check_interval_secs=0.05)
    put(es, p + "2001.01.02", n=1)  # made while the task runs: the next round takes it

    async def go() -> None:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                await tg.start(out.run)
                # polls the server: nothing in-process to wait on
                while await anyio.to_thread.run_sync(indices, es, p + "*") != {p + today}:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
                await out.shutdown()  # ends run(): the task group then exits without being cancelled
            assert out.m_deleted.get(out.label) == 2

    anyio.run(go)


def test_failures_are_logged_and_retried_never_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens
    out = make_output(url, tmp_path, retention_days=3, retention_check_interval_secs=0.05, request_timeout_secs=2)

    async def go() -> None:
        with pytest.raises(TransientError, match=r"deleting logs-\* indices older than 3 days \(0 deleted so far\)"):
            await out.enforce_retention(now=NOW)
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                await tg.start(out.run)
                while sum("retention failed" in r.getMessage() for r in caplog.records) < 2:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
                await out.shutdown()

    with caplog.at_level(logging.WARNING, logger="test.elasticsearch"):
        anyio.run(go)
    warning = next(r for r in caplog.records if "retention failed" in r.getMessage())
    assert warning.levelno == logging.WARNING
    assert "ConnectionError" in warning.kv["error"]  # type: ignore[attr-defined]


def test_datable_formats_are_the_documented_ones() -> None:
    assert all(datable(f) for f in FORMATS)
    assert not any(datable(f) for f in ("%m.%d", "%y.%m.%d", "%G.%V", "%Y.%U", "%Y.%d", "%s", "%Y.%m.%d.%H%p"))

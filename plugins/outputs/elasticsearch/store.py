"""The log role's queries answered from Elasticsearch: the same methods and answers as the SQLite
``LogStore`` (search, count, page, count_all), called from worker threads, so with the synchronous
client (thread-safe: one connection pool shared by the threads).

Order: ``ts_ns`` (the record's nanosecond), then ``event_id`` to settle ties, newest first for
search. Pages: ``from``/``size`` up to ``max_result_window`` (10,000), past that the keys are walked
with ``search_after`` (only sort values, no documents) to the page's start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airisd_plugins.outputs.elasticsearch.dsl import MATCH_ALL, search_query, time_range, to_dsl
from airisd_plugins.outputs.elasticsearch.template import SOURCE_FIELDS, record

from airisd.errors import AirisError
from airisd.logquery import Node
from airisd.model import LogRecord

if TYPE_CHECKING:  # the client library is imported when used: loading the plugins must not load it
    from elasticsearch import Elasticsearch

MAX_RESULT_WINDOW = 10_000  # Elasticsearch's default index.max_result_window


class StoreUnavailable(AirisError):
    """Elasticsearch did not answer a query: 503, so a client retries instead of seeing a 500."""

    status = 503
    code = "STORE_UNAVAILABLE"


def _sort(desc: bool) -> list[dict[str, str]]:
    order = "desc" if desc else "asc"
    return [{"ts_ns": order}, {"event_id": order}]


class EsLogStore:
    def __init__(self, client: Elasticsearch, index_prefix: str) -> None:
        self.client = client
        self.pattern = index_prefix + "*"

    def _search(self, query: dict[str, Any], **kw: Any) -> list[dict[str, Any]]:
        from elasticsearch import ApiError, TransportError

        try:
            resp = self.client.search(index=self.pattern, query=query, ignore_unavailable=True,
                                      allow_no_indices=True, track_total_hits=False, **kw)
        except (TransportError, ApiError) as exc:
            raise StoreUnavailable(f"elasticsearch search failed: {exc}") from exc
        return list(resp["hits"]["hits"])

    def _count(self, query: dict[str, Any]) -> int:
        from elasticsearch import ApiError, TransportError

        try:
            resp = self.client.count(index=self.pattern, query=query, ignore_unavailable=True, allow_no_indices=True)
        except (TransportError, ApiError) as exc:
            raise StoreUnavailable(f"elasticsearch count failed: {exc}") from exc
        return int(resp["count"])

    def search(self, query: Node | None, *, level: str | None = None, service: str | None = None,
               from_ns: int, to_ns: int, limit: int) -> list[LogRecord]:
        """Records in [from_ns, to_ns] that match query and the level/service filters, newest first."""
        q = search_query(query, level=level, service=service, from_ns=from_ns, to_ns=to_ns)
        hits: list[dict[str, Any]] = []
        after: list[Any] | None = None
        while len(hits) < limit:  # limit is at most 10 x max_page_size; search_after past the window
            size = min(limit - len(hits), MAX_RESULT_WINDOW)
            kw: dict[str, Any] = {"search_after": after} if after is not None else {}
            got = self._search(q, sort=_sort(True), size=size, source_includes=SOURCE_FIELDS, **kw)
            hits += got
            if len(got) < size:
                break
            after = got[-1]["sort"]
        return [record(h["_source"]) for h in hits]

    def count(self, query: Node | None, from_ns: int, to_ns: int) -> int:
        """How many records in [from_ns, to_ns] match query (the alert role's log rules)."""
        return self._count({"bool": {"filter": [time_range(from_ns, to_ns), to_dsl(query)]}})

    def page(self, *, page: int, size: int, sort_desc: bool = True, level: str | None = None,
             service: str | None = None, from_ns: int, to_ns: int) -> tuple[int, list[LogRecord]]:
        """Page ``page`` (from 1) of ``size`` records in time order, and the total that match."""
        if page < 1 or size < 1:
            raise ValueError(f"page and size start at 1, got page={page} size={size}")
        q = search_query(None, level=level, service=service, from_ns=from_ns, to_ns=to_ns)
        total = self._count(q)
        offset = (page - 1) * size
        if offset >= total:
            return total, []
        sort = _sort(sort_desc)
        if offset + size <= MAX_RESULT_WINDOW:
            hits = self._search(q, sort=sort, size=size, from_=offset, source_includes=SOURCE_FIELDS)
        else:
            after = self._skip(q, sort, offset)
            hits = self._search(q, sort=sort, size=size, search_after=after, source_includes=SOURCE_FIELDS)
        return total, [record(h["_source"]) for h in hits]

    def _skip(self, q: dict[str, Any], sort: list[dict[str, str]], offset: int) -> list[Any] | None:
        """The sort values of the record just before ``offset``, walking the keys only."""
        after: list[Any] | None = None
        left = offset
        while left > 0:
            size = min(left, MAX_RESULT_WINDOW)
            kw: dict[str, Any] = {"search_after": after} if after is not None else {}
            got = self._search(q, sort=sort, size=size, source=False, **kw)
            if not got:
                break
            after = got[-1]["sort"]
            left -= len(got)
        return after

    def count_all(self) -> int:
        return self._count(MATCH_ALL)

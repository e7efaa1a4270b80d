"""Which indices ``retention_days`` deletes, worked out from their names alone.

An index is ours only when its name is exactly ``<index_prefix>`` + ``strftime(index_date_format)``
of some UTC time: the suffix is parsed, formatted again and compared, so ``logs-archive-2020.01.01``,
``logsx-2020.01.01``, ``logs-2024.1.5`` or a name with anything appended never match. An index is
deleted when the whole period its name covers (a day for ``%Y.%m.%d``, an hour for ``%Y.%m.%d.%H``,
a month for ``%Y.%m``, ...) ended at or before ``now - retention_days``: nothing younger than the
retention is ever deleted, even from the oldest kept index.

Only formats whose names each cover one contiguous period, year included, can be dated; the others
(``%m.%d`` reuses an index every year, ``%y`` guesses the century, ``%G.%V`` weeks cannot be parsed
back by ``strptime``) are refused by the config when retention is on.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Iterable

DAY_SECS = 86_400
# The directive sets that name exactly one contiguous period, and its length in seconds (0: a
# calendar month or year, whose length varies).
_PERIODS: dict[frozenset[str], int] = {
    frozenset("Y"): 0, frozenset("Ym"): 0,
    frozenset("Ymd"): DAY_SECS, frozenset("Yj"): DAY_SECS,
    frozenset("YmdH"): 3600, frozenset("YjH"): 3600,
    frozenset("YmdHM"): 60, frozenset("YjHM"): 60,
    frozenset("YmdHMS"): 1, frozenset("YjHMS"): 1,
}  # fmt: skip
_DIRECTIVE = re.compile(r"%(.)")
# Elasticsearch's default http.max_initial_line_length is 4 KB: one DELETE names at most this much.
MAX_DELETE_CHARS = 3000


def directives(date_format: str) -> frozenset[str]:
    return frozenset(_DIRECTIVE.findall(date_format))


def datable(date_format: str) -> bool:
    """Can an index name of this format be turned back into the one period it covers?"""
    return directives(date_format) in _PERIODS


def index_period(name: str, prefix: str, date_format: str) -> tuple[int, int] | None:
    """``(start, end)`` in UTC seconds of the period an index of ours covers (end excluded), or
    None when the name is not exactly ``prefix + strftime(date_format)`` of a UTC time, or the
    format cannot be dated."""
    length = _PERIODS.get(directives(date_format))
    if length is None or not name.startswith(prefix):
        return None
    suffix = name[len(prefix):]
    try:
        t = time.strptime(suffix, date_format)
    except ValueError:
        return None
    start = calendar.timegm(t)
    # strptime takes "2024.1.5" and " 5" too: only the spelling index_name() writes is ours.
    if time.strftime(date_format, time.gmtime(start)).lower() != suffix:
        return None
    if length:
        return start, start + length
    # A month or a year from its first day, counted in days: timegm() of the next one fails for
    # December 9999 (datetime stops at year 9999), and one odd name must not stop retention.
    if "m" in directives(date_format):
        days = calendar.monthrange(t.tm_year, t.tm_mon)[1]
    else:
        days = 366 if calendar.isleap(t.tm_year) else 365
    return start, start + days * DAY_SECS


def expired(names: Iterable[str], prefix: str, date_format: str, cutoff: float) -> list[str]:
    """The names, sorted, of our indices whose whole period ended at or before ``cutoff`` (UTC s)."""
    out = []
    for name in names:
        period = index_period(name, prefix, date_format)
        if period is not None and period[1] <= cutoff:
            out.append(name)
    return sorted(out)


def delete_groups(names: list[str], max_chars: int = MAX_DELETE_CHARS) -> list[list[str]]:
    """Names grouped so that each comma-joined group stays under max_chars (one DELETE each)."""
    groups: list[list[str]] = []
    size = 0
    for name in names:
        if groups and size + 1 + len(name) <= max_chars:
            groups[-1].append(name)
            size += 1 + len(name)
        else:
            groups.append([name])
            size = len(name)
    return groups

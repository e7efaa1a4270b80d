"""The alert role's SQLite store: ``alerts.db`` in the data directory.

Small volumes (hundreds of rules, a few state changes per round), so one connection guarded by a
lock, WAL with synchronous=NORMAL (survives ``kill -9`` of the daemon), and every method
synchronous and short: call it directly or from a worker thread. Records are stored as msgspec
JSON next to the few columns that are searched.

One evaluation round is saved by ``save_round`` in one transaction (state changes, the
notification log and history together), so after a restart the engine never re-sends what the
log says was sent, and never forgets a state change it sent a notification about.
"""

from __future__ import annotations

import secrets
import sqlite3
import string
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from airisd.alerting.rules import Channel, Rule, Silence
from airisd.alerting.state import AlertState, HistoryEntry, NlogEntry
from airisd.errors import NotFound, ValidationError

SCHEMA = """
CREATE TABLE IF NOT EXISTS rules (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, enabled INTEGER NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS channels (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS silences (
    id TEXT PRIMARY KEY, ends_ns INTEGER NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS alert_state (
    group_key TEXT NOT NULL, fingerprint TEXT NOT NULL, body BLOB NOT NULL,
    PRIMARY KEY (group_key, fingerprint)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nlog (
    group_key TEXT NOT NULL, channel TEXT NOT NULL, body BLOB NOT NULL,
    PRIMARY KEY (group_key, channel)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ns INTEGER NOT NULL, kind TEXT NOT NULL,
    rule_id TEXT NOT NULL, channel TEXT NOT NULL, dedup_key TEXT NOT NULL, body BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS history_rule ON history (rule_id, id);
CREATE INDEX IF NOT EXISTS history_ts ON history (ts_ns);
CREATE INDEX IF NOT EXISTS history_dedup ON history (dedup_key) WHERE dedup_key != '';
"""

_ID_ALPHABET = string.ascii_lowercase + string.digits
T = TypeVar("T")
_enc = msgspec.json.Encoder()


def new_id(prefix: str) -> str:
    """``rule_k3j9x0ab``: short, random, URL-safe."""
    return prefix + "_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


class AlertStore:
    filename = "alerts.db"

    def __init__(self, data_dir: Path | str, *, synchronous: str = "NORMAL") -> None:
        self.path = Path(data_dir) / self.filename
        self.synchronous = synchronous
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()

    # -- lifecycle ---------------------------------------------------------------------------
    def open(self) -> None:
        """Create the file and schema. Idempotent."""
        with self._lock:
            if self._conn is not None:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.executescript(SCHEMA)
            self._conn = conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self.open()  # opened on first use, so the service works before the engine starts
        assert self._conn is not None
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _all(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        with self._lock:
            return self.conn.execute(sql, tuple(params)).fetchall()

    # -- rules -------------------------------------------------------------------------------
    def create_rule(self, rule: Rule, *, now_ns: int) -> Rule:
        rule.created_ns = rule.updated_ns = now_ns
        with self.transaction() as conn:
            rule.id = self._free_id(conn, "rules", "rule")
            conn.execute(
                "INSERT INTO rules (id, name, enabled, body) VALUES (?, ?, ?, ?)",
                (rule.id, rule.name, int(rule.enabled), _enc.encode(rule)),
            )
        return rule

    def get_rule(self, rule_id: str) -> Rule:
        rows = self._all("SELECT body FROM rules WHERE id = ?", (rule_id,))
        if not rows:
            raise NotFound(f"no rule with id {rule_id!r}", details={"id": rule_id})
        return msgspec.json.decode(rows[0][0], type=Rule)

    def list_rules(self, *, enabled: bool | None = None) -> list[Rule]:
        if enabled is None:
            rows = self._all("SELECT body FROM rules ORDER BY rowid")
        else:
            rows = self._all("SELECT body FROM rules WHERE enabled = ? ORDER BY rowid", (int(enabled),))
        dec = msgspec.json.Decoder(Rule)
        return [dec.decode(r[0]) for r in rows]

    def replace_rule(self, rule_id: str, rule: Rule, *, now_ns: int) -> Rule:
        with self.transaction() as conn:
            row = conn.execute("SELECT body FROM rules WHERE id = ?", (rule_id,)).fetchone()
            if row is None:
                raise NotFound(f"no rule with id {rule_id!r}", details={"id": rule_id})
            rule.id = rule_id
            rule.created_ns = msgspec.json.decode(row[0], type=Rule).created_ns
            rule.updated_ns = now_ns
            conn.execute(
                "UPDATE rules SET name = ?, enabled = ?, body = ? WHERE id = ?",
                (rule.name, int(rule.enabled), _enc.encode(rule), rule_id),
            )
        return rule

    def delete_rule(self, rule_id: str) -> None:
        with self.transaction() as conn:
            if conn.execute("DELETE FROM rules WHERE id = ?", (rule_id,)).rowcount == 0:
                raise NotFound(f"no rule with id {rule_id!r}", details={"id": rule_id})
            group = f"rule:{rule_id}"
            conn.execute("DELETE FROM alert_state WHERE group_key = ?", (group,))
            conn.execute("DELETE FROM nlog WHERE group_key = ?", (group,))

    def rules_using_channel(self, name: str) -> list[Rule]:
        return [r for r in self.list_rules() if name in r.channels]

    # -- channels ----------------------------------------------------------------------------
    def create_channel(self, channel: Channel, *, now_ns: int) -> Channel:
        channel.created_ns = channel.updated_ns = now_ns
        with self.transaction() as conn:
            self._check_channel_name(conn, channel.name, None)
            channel.id = self._free_id(conn, "channels", "chan")
            conn.execute(
                "INSERT INTO channels (id, name, body) VALUES (?, ?, ?)",
                (channel.id, channel.name, _enc.encode(channel)),
            )
        return channel

    def get_channel(self, channel_id: str) -> Channel:
        rows = self._all("SELECT body FROM channels WHERE id = ?", (channel_id,))
        if not rows:
            raise NotFound(f"no channel with id {channel_id!r}", details={"id": channel_id})
        return msgspec.json.decode(rows[0][0], type=Channel)

    def get_channel_by_name(self, name: str) -> Channel | None:
        rows = self._all("SELECT body FROM channels WHERE name = ?", (name,))
        return msgspec.json.decode(rows[0][0], type=Channel) if rows else None

    def list_channels(self) -> list[Channel]:
        dec = msgspec.json.Decoder(Channel)
        return [dec.decode(r[0]) for r in self._all("SELECT body FROM channels ORDER BY rowid")]

    def channel_names(self) -> set[str]:
        return {r[0] for r in self._all("SELECT name FROM channels")}

    def replace_channel(self, channel_id: str, channel: Channel, *, now_ns: int) -> Channel:
        with self.transaction() as conn:
            row = conn.execute("SELECT body FROM channels WHERE id = ?", (channel_id,)).fetchone()
            if row is None:
                raise NotFound(f"no channel with id {channel_id!r}", details={"id": channel_id})
            self._check_channel_name(conn, channel.name, channel_id)
            channel.id = channel_id
            channel.created_ns = msgspec.json.decode(row[0], type=Channel).created_ns
            channel.updated_ns = now_ns
            conn.execute(
                "UPDATE channels SET name = ?, body = ? WHERE id = ?",
                (channel.name, _enc.encode(channel), channel_id),
            )
        return channel

    def delete_channel(self, channel_id: str) -> None:
        with self.transaction() as conn:
            if conn.execute("DELETE FROM channels WHERE id = ?", (channel_id,)).rowcount == 0:
                raise NotFound(f"no channel with id {channel_id!r}", details={"id": channel_id})

    @staticmethod
    def _check_channel_name(conn: sqlite3.Connection, name: str, own_id: str | None) -> None:
        row = conn.execute("SELECT id FROM channels WHERE name = ?", (name,)).fetchone()
        if row is not None and row[0] != own_id:
            message = f"name: a channel named {name!r} exists already ({row[0]})"
            raise ValidationError(message, details={"field": "name", "id": row[0]})

    # -- silences ----------------------------------------------------------------------------
    def create_silence(self, silence: Silence, *, now_ns: int) -> Silence:
        silence.created_ns = now_ns
        with self.transaction() as conn:
            silence.id = self._free_id(conn, "silences", "sil")
            conn.execute(
                "INSERT INTO silences (id, ends_ns, body) VALUES (?, ?, ?)",
                (silence.id, silence.ends_ns, _enc.encode(silence)),
            )
        return silence

    def get_silence(self, silence_id: str) -> Silence:
        rows = self._all("SELECT body FROM silences WHERE id = ?", (silence_id,))
        if not rows:
            raise NotFound(f"no silence with id {silence_id!r}", details={"id": silence_id})
        return msgspec.json.decode(rows[0][0], type=Silence)

    def list_silences(self, *, active_at: int | None = None) -> list[Silence]:
        """All silences, or those active at ``active_at`` (ns)."""
        dec = msgspec.json.Decoder(Silence)
        if active_at is None:
            return [dec.decode(r[0]) for r in self._all("SELECT body FROM silences ORDER BY rowid")]
        rows = self._all("SELECT body FROM silences WHERE ends_ns > ? ORDER BY rowid", (active_at,))
        return [s for s in (dec.decode(r[0]) for r in rows) if s.active(active_at)]

    def delete_silence(self, silence_id: str) -> None:
        with self.transaction() as conn:
            if conn.execute("DELETE FROM silences WHERE id = ?", (silence_id,)).rowcount == 0:
                raise NotFound(f"no silence with id {silence_id!r}", details={"id": silence_id})

    # -- engine state ------------------------------------------------------------------------
    def load_states(self) -> list[AlertState]:
        dec = msgspec.json.Decoder(AlertState)
        return [dec.decode(r[0]) for r in self._all("SELECT body FROM alert_state")]

    def load_nlog(self) -> list[NlogEntry]:
        dec = msgspec.json.Decoder(NlogEntry)
        return [dec.decode(r[0]) for r in self._all("SELECT body FROM nlog")]

    def save_round(
        self,
        *,
        upsert: Iterable[AlertState] = (),
        delete: Iterable[tuple[str, str]] = (),
        nlog: Iterable[NlogEntry] = (),
        nlog_delete: Iterable[tuple[str, str]] = (),
        history: Iterable[HistoryEntry] = (),
    ) -> None:
        """Persist one round's changes atomically."""
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO alert_state (group_key, fingerprint, body) VALUES (?, ?, ?)",
                [(s.group_key, s.fingerprint, _enc.encode(s)) for s in upsert],
            )
            conn.executemany("DELETE FROM alert_state WHERE group_key = ? AND fingerprint = ?", list(delete))
            conn.executemany(
                "INSERT OR REPLACE INTO nlog (group_key, channel, body) VALUES (?, ?, ?)",
                [(e.group_key, e.channel, _enc.encode(e)) for e in nlog],
            )
            conn.executemany("DELETE FROM nlog WHERE group_key = ? AND channel = ?", list(nlog_delete))
            for entry in history:
                cur = conn.execute(
                    "INSERT INTO history (ts_ns, kind, rule_id, channel, dedup_key, body)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        entry.ts_ns,
                        entry.kind,
                        entry.rule_id,
                        entry.channel,
                        entry.dedup_key,
                        _enc.encode(entry),
                    ),
                )
                entry.id = cur.lastrowid or 0

    def forget_group(self, group_key: str) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM alert_state WHERE group_key = ?", (group_key,))
            conn.execute("DELETE FROM nlog WHERE group_key = ?", (group_key,))

    # -- history -----------------------------------------------------------------------------
    def list_history(
        self,
        *,
        limit: int = 100,
        before_id: int | None = None,
        rule_id: str | None = None,
        kind: str | None = None,
    ) -> tuple[list[HistoryEntry], int | None]:
        """Newest first. Returns the page and the ``before_id`` of the next page (None: last)."""
        limit = max(1, min(limit, 1000))
        where: list[str] = ["1"]
        params: list[Any] = []
        if before_id is not None:
            where.append("id < ?")
            params.append(before_id)
        if rule_id:
            where.append("rule_id = ?")
            params.append(rule_id)
        if kind:
            where.append("kind = ?")
            params.append(kind)
        sql = f"SELECT id, body FROM history WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?"
        rows = self._all(sql, [*params, limit + 1])
        dec = msgspec.json.Decoder(HistoryEntry)
        entries = []
        for row_id, body in rows[:limit]:
            entry = dec.decode(body)
            entry.id = row_id
            entries.append(entry)
        return entries, (entries[-1].id if len(rows) > limit else None)

    def prune(self, *, history_before_ns: int, silences_before_ns: int) -> int:
        """Retention: drop old history and long-expired silences; return rows removed."""
        with self.transaction() as conn:
            n = conn.execute("DELETE FROM history WHERE ts_ns < ?", (history_before_ns,)).rowcount
            n += conn.execute("DELETE FROM silences WHERE ends_ns < ?", (silences_before_ns,)).rowcount
        return n

    # -- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _free_id(conn: sqlite3.Connection, table: str, prefix: str) -> str:
        while True:
            candidate = new_id(prefix)
            if conn.execute(f"SELECT 1 FROM {table} WHERE id = ?", (candidate,)).fetchone() is None:
                return candidate

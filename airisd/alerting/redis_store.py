"""The alert role's Redis store: what ``alerts.db`` holds, shared by several alert-role replicas.

Same interface and semantics as the SQLite ``AlertStore`` (both satisfy ``AlertStoreProtocol``),
so the engine and service do not know which one they have. Every call is synchronous and short
(one round trip, or one WATCH/MULTI transaction), like SQLite's, so the callers stay as they are;
redis-py's client is thread-safe through its connection pool.

Keys, all under ``key_prefix`` (default ``airisd:alerts:``):

    rules | channels | silences           hash id -> msgspec JSON body
    <kind>:order                          zset id -> insertion sequence (SQLite's rowid order)
    channels:names                        hash name -> id (unique names, checked in the transaction)
    state | nlog                          hash "<group>\\x1f<fingerprint|channel>" -> body
    state:order                           zset state field -> sequence of its first save (the
                                          engine's in-memory dict order, which notifications follow)
    history                               hash id -> body; ids from INCR history:seq
    history:ids | history:rule:<rule id>  zset id -> id (newest-first pages, by rule)
    history:ts                            zset id -> ts_ns (retention: prune drops ts_ns < cutoff)
    lock:round                            the cluster's state lock (see AlertCluster)
    dedup:<key>                           one notification's claim (see AlertCluster)

Reads go to Redis every time (no cache): the engine lists rules every round and channels every
plan, so a rule or channel changed through one replica is used by the others at their next round,
with nothing to invalidate and nothing to go stale. The volumes are small (hundreds of rules).

``AlertCluster`` is what lets replicas share one store without sending a notification twice:
a short lock around each round's state changes (so the replicas run one state machine, not two)
and a dedup key per notification claimed with ``SET NX`` before sending.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeVar
from urllib.parse import quote

import msgspec

from airisd.alerting.config import AlertingConfig
from airisd.alerting.rules import Channel, Rule, Silence
from airisd.alerting.state import AlertState, HistoryEntry, NlogEntry
from airisd.alerting.store import AlertStore, new_id
from airisd.errors import NotFound, TransientError, ValidationError

if TYPE_CHECKING:  # redis is imported when a store is opened: the alert role on SQLite never loads it
    import redis

T = TypeVar("T")
_enc = msgspec.json.Encoder()
_SEP = "\x1f"
_PAGE = 256  # history ids read per round trip while filtering by kind


class StoreUnavailable(TransientError):
    """Redis cannot be reached: HTTP clients get 503 with Retry-After; the engine's round fails
    and the next one tries again."""

    status = 503
    code = "STORE_UNAVAILABLE"
    headers: ClassVar[dict[str, str]] = {"Retry-After": "5"}


class AlertStoreProtocol(Protocol):
    """What the engine and service call on a store; ``AlertStore`` (SQLite) and ``RedisAlertStore``."""

    def open(self) -> None: ...
    def close(self) -> None: ...
    def create_rule(self, rule: Rule, *, now_ns: int) -> Rule: ...
    def get_rule(self, rule_id: str) -> Rule: ...
    def list_rules(self, *, enabled: bool | None = None) -> list[Rule]: ...
    def replace_rule(self, rule_id: str, rule: Rule, *, now_ns: int) -> Rule: ...
    def delete_rule(self, rule_id: str) -> None: ...
    def rules_using_channel(self, name: str) -> list[Rule]: ...
    def create_channel(self, channel: Channel, *, now_ns: int) -> Channel: ...
    def get_channel(self, channel_id: str) -> Channel: ...
    def get_channel_by_name(self, name: str) -> Channel | None: ...
    def list_channels(self) -> list[Channel]: ...
    def channel_names(self) -> set[str]: ...
    def replace_channel(self, channel_id: str, channel: Channel, *, now_ns: int) -> Channel: ...
    def delete_channel(self, channel_id: str) -> None: ...
    def create_silence(self, silence: Silence, *, now_ns: int) -> Silence: ...
    def get_silence(self, silence_id: str) -> Silence: ...
    def list_silences(self, *, active_at: int | None = None) -> list[Silence]: ...
    def delete_silence(self, silence_id: str) -> None: ...
    def load_states(self) -> list[AlertState]: ...
    def load_nlog(self) -> list[NlogEntry]: ...
    def save_round(
        self,
        *,
        upsert: Iterable[AlertState] = (),
        delete: Iterable[tuple[str, str]] = (),
        nlog: Iterable[NlogEntry] = (),
        nlog_delete: Iterable[tuple[str, str]] = (),
        history: Iterable[HistoryEntry] = (),
    ) -> None: ...
    def forget_group(self, group_key: str) -> None: ...
    def list_history(
        self, *, limit: int = 100, before_id: int | None = None, rule_id: str | None = None, kind: str | None = None
    ) -> tuple[list[HistoryEntry], int | None]: ...
    def prune(self, *, history_before_ns: int, silences_before_ns: int) -> int: ...


def redis_url(*, url: str = "", host: str = "127.0.0.1", port: int = 6379, password: str = "", db: int = 0) -> str:
    """``url`` if set, else one built from the seed's REDIS_HOST / REDIS_PORT / REDIS_PASSWORD."""
    if url:
        return url
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{host}:{port}/{db}"


def connect(url: str, *, timeout_secs: float = 5.0) -> redis.Redis:
    """A sync client (thread-safe pool); raises ValueError quoting a bad URL, hiding the password."""
    import redis

    try:
        return redis.Redis.from_url(url, socket_timeout=timeout_secs, socket_connect_timeout=timeout_secs)
    except ValueError as exc:
        raise ValueError(f"redis_url: {_safe(url)!r} is not a Redis URL: {exc}") from None


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    return f"{scheme}://***@{rest.rpartition('@')[2]}"


class RedisAlertStore:
    """``AlertStore`` on Redis. ``url`` as ``redis://[:password@]host:port/db`` (or rediss://)."""

    def __init__(self, url: str, *, key_prefix: str = "airisd:alerts:", timeout_secs: float = 5.0) -> None:
        self.url = url
        self.prefix = key_prefix
        self.timeout_secs = timeout_secs
        self._client: redis.Redis | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def open(self) -> None:
        """Create the client (the first command opens the socket). Idempotent."""
        if self._client is None:
            self._client = connect(self.url, timeout_secs=self.timeout_secs)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def r(self) -> Any:  # redis-py's annotations do not model decode_responses=False
        if self._client is None:
            self.open()  # opened on first use, as the SQLite store is
        assert self._client is not None
        return self._client

    def k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn``, turning a lost connection into StoreUnavailable (naming the host only)."""
        import redis

        try:
            return fn()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(f"alert store: redis {_safe(self.url)}: {exc}") from None

    def _tx(self, fn: Callable[[Any], T], *watch: str) -> T:
        """An optimistic transaction: ``fn`` reads under WATCH, calls ``pipe.multi()`` and queues
        writes; redis-py re-runs it if a watched key changed meanwhile."""
        keys = [self.k(w) for w in watch]
        result: T = self.call(lambda: self.r.transaction(fn, *keys, value_from_callable=True))
        return result

    # -- generic records ---------------------------------------------------------------------
    def _get(self, kind: str, record_id: str, type_: type[T], what: str) -> T:
        body = self.call(lambda: self.r.hget(self.k(kind), record_id))
        if body is None:
            raise NotFound(f"no {what} with id {record_id!r}", details={"id": record_id})
        return msgspec.json.decode(body, type=type_)

    def _list(self, kind: str, type_: type[T]) -> list[T]:
        def read() -> list[Any]:
            ids = self.r.zrange(self.k(kind, "order"), 0, -1)
            return list(self.r.hmget(self.k(kind), ids)) if ids else []

        dec = msgspec.json.Decoder(type_)
        return [dec.decode(b) for b in self.call(read) if b is not None]

    def _insert(self, kind: str, prefix: str, record: Any, check: Callable[[Any], None] | None = None) -> None:
        """Store a new record under a fresh id, in insertion order; ``check(pipe)`` may refuse."""

        def tx(pipe: Any) -> None:
            if check is not None:
                check(pipe)
            record.id = new_id(prefix)
            while pipe.hexists(self.k(kind), record.id):
                record.id = new_id(prefix)
            seq = self.r.incr(self.k("seq"))  # outside the transaction: a retry only leaves a gap
            pipe.multi()
            pipe.hset(self.k(kind), record.id, _enc.encode(record))
            pipe.zadd(self.k(kind, "order"), {record.id: seq})
            if kind == "channels":
                pipe.hset(self.k("channels", "names"), record.name, record.id)

        self._tx(tx, kind, f"{kind}:names")

    def _delete(self, kind: str, record_id: str, what: str) -> None:
        def tx(pipe: Any) -> None:
            body = pipe.hget(self.k(kind), record_id)
            if body is None:
                raise NotFound(f"no {what} with id {record_id!r}", details={"id": record_id})
            pipe.multi()
            pipe.hdel(self.k(kind), record_id)
            pipe.zrem(self.k(kind, "order"), record_id)
            if kind == "channels":
                pipe.hdel(self.k("channels", "names"), msgspec.json.decode(body, type=Channel).name)
            elif kind == "rules":
                self._queue_forget(pipe, fields)

        fields: tuple[list[bytes], list[bytes]] = ([], [])
        if kind == "rules":
            fields = self._group_fields(self.r, f"rule:{record_id}")
            self._tx(tx, kind, "state", "nlog")
        else:
            self._tx(tx, kind, f"{kind}:names")

    # -- rules -------------------------------------------------------------------------------
    def create_rule(self, rule: Rule, *, now_ns: int) -> Rule:
        rule.created_ns = rule.updated_ns = now_ns
        self._insert("rules", "rule", rule)
        return rule

    def get_rule(self, rule_id: str) -> Rule:
        return self._get("rules", rule_id, Rule, "rule")

    def list_rules(self, *, enabled: bool | None = None) -> list[Rule]:
        rules = self._list("rules", Rule)
        return rules if enabled is None else [r for r in rules if r.enabled == enabled]

    def replace_rule(self, rule_id: str, rule: Rule, *, now_ns: int) -> Rule:
        def tx(pipe: Any) -> None:
            body = pipe.hget(self.k("rules"), rule_id)
            if body is None:
                raise NotFound(f"no rule with id {rule_id!r}", details={"id": rule_id})
            rule.id = rule_id
            rule.created_ns = msgspec.json.decode(body, type=Rule).created_ns
            rule.updated_ns = now_ns
            pipe.multi()
            pipe.hset(self.k("rules"), rule_id, _enc.encode(rule))

        self._tx(tx, "rules")
        return rule

    def delete_rule(self, rule_id: str) -> None:
        """The rule, and its alerts' state and notification log (as SQLite's delete does)."""
        self._delete("rules", rule_id, "rule")

    def rules_using_channel(self, name: str) -> list[Rule]:
        return [r for r in self.list_rules() if name in r.channels]

    # -- channels ----------------------------------------------------------------------------
    def create_channel(self, channel: Channel, *, now_ns: int) -> Channel:
        channel.created_ns = channel.updated_ns = now_ns
        self._insert("channels", "chan", channel, lambda pipe: self._check_channel_name(pipe, channel.name, None))
        return channel

    def get_channel(self, channel_id: str) -> Channel:
        return self._get("channels", channel_id, Channel, "channel")

    def get_channel_by_name(self, name: str) -> Channel | None:
        channel_id = self.call(lambda: self.r.hget(self.k("channels", "names"), name))
        if channel_id is None:
            return None
        try:
            return self.get_channel(channel_id.decode())
        except NotFound:
            return None

    def list_channels(self) -> list[Channel]:
        return self._list("channels", Channel)

    def channel_names(self) -> set[str]:
        return {n.decode() for n in self.call(lambda: self.r.hkeys(self.k("channels", "names")))}

    def replace_channel(self, channel_id: str, channel: Channel, *, now_ns: int) -> Channel:
        def tx(pipe: Any) -> None:
            body = pipe.hget(self.k("channels"), channel_id)
            if body is None:
                raise NotFound(f"no channel with id {channel_id!r}", details={"id": channel_id})
            self._check_channel_name(pipe, channel.name, channel_id)
            old = msgspec.json.decode(body, type=Channel)
            channel.id = channel_id
            channel.created_ns = old.created_ns
            channel.updated_ns = now_ns
            pipe.multi()
            pipe.hset(self.k("channels"), channel_id, _enc.encode(channel))
            if old.name != channel.name:
                pipe.hdel(self.k("channels", "names"), old.name)
                pipe.hset(self.k("channels", "names"), channel.name, channel_id)

        self._tx(tx, "channels", "channels:names")
        return channel

    def delete_channel(self, channel_id: str) -> None:
        self._delete("channels", channel_id, "channel")

    def _check_channel_name(self, pipe: Any, name: str, own_id: str | None) -> None:
        raw = pipe.hget(self.k("channels", "names"), name)
        other = raw.decode() if raw is not None else None
        if other is not None and other != own_id:
            message = f"name: a channel named {name!r} exists already ({other})"
            raise ValidationError(message, details={"field": "name", "id": other})

    # -- silences ----------------------------------------------------------------------------
    def create_silence(self, silence: Silence, *, now_ns: int) -> Silence:
        silence.created_ns = now_ns
        self._insert("silences", "sil", silence)
        return silence

    def get_silence(self, silence_id: str) -> Silence:
        return self._get("silences", silence_id, Silence, "silence")

    def list_silences(self, *, active_at: int | None = None) -> list[Silence]:
        """All silences, or those active at ``active_at`` (ns)."""
        silences = self._list("silences", Silence)
        if active_at is None:
            return silences
        return [s for s in silences if s.ends_ns > active_at and s.active(active_at)]

    def delete_silence(self, silence_id: str) -> None:
        self._delete("silences", silence_id, "silence")

    # -- engine state ------------------------------------------------------------------------
    def load_states(self) -> list[AlertState]:
        def read() -> list[Any]:
            fields = self.r.zrange(self.k("state", "order"), 0, -1)
            return list(self.r.hmget(self.k("state"), fields)) if fields else []

        dec = msgspec.json.Decoder(AlertState)
        return [dec.decode(b) for b in self.call(read) if b is not None]

    def load_nlog(self) -> list[NlogEntry]:
        dec = msgspec.json.Decoder(NlogEntry)
        return [dec.decode(b) for b in self.call(lambda: self.r.hvals(self.k("nlog")))]

    def save_round(
        self,
        *,
        upsert: Iterable[AlertState] = (),
        delete: Iterable[tuple[str, str]] = (),
        nlog: Iterable[NlogEntry] = (),
        nlog_delete: Iterable[tuple[str, str]] = (),
        history: Iterable[HistoryEntry] = (),
    ) -> None:
        """Persist one round's changes atomically (one MULTI/EXEC)."""
        ups, dels, logs, log_dels, hist = list(upsert), list(delete), list(nlog), list(nlog_delete), list(history)
        if not (ups or dels or logs or log_dels or hist):
            return
        first = 0
        if hist:
            first = self.call(lambda: self.r.incrby(self.k("history", "seq"), len(hist))) - len(hist) + 1
        order = 0
        if ups:
            order = self.call(lambda: self.r.incrby(self.k("seq"), len(ups))) - len(ups) + 1
        pipe = self.r.pipeline(transaction=True)
        if ups:  # then deletions, as SQLite's save_round does
            fields = [_field(s.group_key, s.fingerprint) for s in ups]
            pipe.hset(self.k("state"), mapping={f: _enc.encode(s) for f, s in zip(fields, ups, strict=True)})
            pipe.zadd(self.k("state", "order"), {f: order + i for i, f in enumerate(fields)}, nx=True)
        if dels:
            pipe.hdel(self.k("state"), *[_field(g, f) for g, f in dels])
            pipe.zrem(self.k("state", "order"), *[_field(g, f) for g, f in dels])
        if logs:
            pipe.hset(self.k("nlog"), mapping={_field(e.group_key, e.channel): _enc.encode(e) for e in logs})
        if log_dels:
            pipe.hdel(self.k("nlog"), *[_field(g, c) for g, c in log_dels])
        for i, entry in enumerate(hist):
            entry.id = first + i
            body = _enc.encode(msgspec.structs.replace(entry, id=0))  # the id is the key, as in SQLite
            pipe.hset(self.k("history"), str(entry.id), body)
            pipe.zadd(self.k("history", "ids"), {str(entry.id): entry.id})
            pipe.zadd(self.k("history", "ts"), {str(entry.id): entry.ts_ns})
            if entry.rule_id:
                pipe.zadd(self.k("history", "rule", entry.rule_id), {str(entry.id): entry.id})
        self.call(pipe.execute)

    def forget_group(self, group_key: str) -> None:
        def tx(pipe: Any) -> None:
            fields = self._group_fields(pipe, group_key)
            pipe.multi()
            self._queue_forget(pipe, fields)

        self._tx(tx, "state", "nlog")

    def _group_fields(self, client: Any, group_key: str) -> tuple[list[bytes], list[bytes]]:
        """The state and nlog fields of one group."""
        head = (group_key + _SEP).encode()
        return (
            [f for f in client.hkeys(self.k("state")) if f.startswith(head)],
            [f for f in client.hkeys(self.k("nlog")) if f.startswith(head)],
        )

    def _queue_forget(self, pipe: Any, fields: tuple[list[bytes], list[bytes]]) -> None:
        if fields[0]:
            pipe.hdel(self.k("state"), *fields[0])
            pipe.zrem(self.k("state", "order"), *fields[0])
        if fields[1]:
            pipe.hdel(self.k("nlog"), *fields[1])

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
        index = self.k("history", "rule", rule_id) if rule_id else self.k("history", "ids")
        dec = msgspec.json.Decoder(HistoryEntry)
        out: list[HistoryEntry] = []
        upper = f"({before_id}" if before_id is not None else "+inf"
        while len(out) <= limit:
            want = _PAGE if kind else limit + 1 - len(out)
            ids = self.call(partial(self.r.zrevrangebyscore, index, upper, "-inf", start=0, num=want))
            if not ids:
                break
            bodies = self.call(partial(self.r.hmget, self.k("history"), ids))
            for raw_id, body in zip(ids, bodies, strict=True):
                if body is None:  # pruned meanwhile
                    continue
                entry = dec.decode(body)
                entry.id = int(raw_id)
                if not kind or entry.kind == kind:
                    out.append(entry)
                    if len(out) > limit:
                        break
            upper = f"({int(ids[-1])}"
        page = out[:limit]
        return page, (page[-1].id if len(out) > limit else None)

    def prune(self, *, history_before_ns: int, silences_before_ns: int) -> int:
        """Retention: drop old history and long-expired silences; return records removed.

        Scores are doubles (ns lose their last bits above 2**53), so candidates come from the
        score index with a margin and the exact ``ts_ns < cutoff`` test is made on the bodies."""
        candidates = self.call(
            lambda: self.r.zrangebyscore(self.k("history", "ts"), "-inf", history_before_ns + 4096)
        )
        removed = 0
        dec = msgspec.json.Decoder(HistoryEntry)
        for start in range(0, len(candidates), 1000):
            ids = candidates[start : start + 1000]
            bodies = self.call(partial(self.r.hmget, self.k("history"), ids))
            old = [(i, dec.decode(b)) for i, b in zip(ids, bodies, strict=True) if b is not None]
            old = [(i, e) for i, e in old if e.ts_ns < history_before_ns]
            if not old:
                continue
            pipe = self.r.pipeline(transaction=True)
            pipe.hdel(self.k("history"), *[i for i, _ in old])
            pipe.zrem(self.k("history", "ids"), *[i for i, _ in old])
            pipe.zrem(self.k("history", "ts"), *[i for i, _ in old])
            for i, e in old:
                if e.rule_id:
                    pipe.zrem(self.k("history", "rule", e.rule_id), i)
            self.call(pipe.execute)
            removed += len(old)
        expired = [s.id for s in self._list("silences", Silence) if s.ends_ns < silences_before_ns]
        if expired:
            pipe = self.r.pipeline(transaction=True)
            pipe.hdel(self.k("silences"), *expired)
            pipe.zrem(self.k("silences", "order"), *expired)
            self.call(pipe.execute)
            removed += len(expired)
        return removed


Claim = Literal["won", "sent", "busy"]

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_SETTLE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('SET', KEYS[1], 'sent', 'PX', ARGV[2])
end
return 0
"""


class AlertCluster:
    """Coordination of alert-role replicas sharing one ``RedisAlertStore``.

    - ``lock()``/``unlock()``: a lease lock (``SET NX PX``, released only by its owner) held while
      a replica reloads the alert state, applies a round and saves it, so two replicas never both
      start the same alert (which would give it two firing times and two notifications). A
      replica that dies holding it delays the others by at most ``lock_lease_secs``.
    - ``claim(key)``: before sending a notification, ``SET dedup:<key> sending:<token> NX`` with an
      expiry of ``lease_secs``. "won": send it. "sent": a peer delivered it (record it as told).
      "busy": a peer is sending it now (skip; the next round looks again). After sending,
      ``settle`` turns the claim into ``sent`` for ``sent_ttl_secs`` (delivered, or failed for
      good) or deletes it (failed for now: anyone may retry). If the sender dies before that, the
      claim expires after ``lease_secs`` and a peer retries it: at least once, never twice while
      the claim holds.
    """

    def __init__(
        self,
        store: RedisAlertStore,
        *,
        lease_secs: float = 300.0,
        sent_ttl_secs: float = 86400.0,
        lock_lease_secs: float = 10.0,
    ) -> None:
        self.store = store
        self.lease_ms = int(lease_secs * 1000)
        self.sent_ttl_ms = int(sent_ttl_secs * 1000)
        self.lock_lease_ms = int(lock_lease_secs * 1000)
        self.token = secrets.token_hex(8)  # this replica
        self._lock_token = ""

    def try_lock(self) -> bool:
        token = f"{self.token}:{secrets.token_hex(4)}"
        s = self.store
        if s.call(lambda: s.r.set(s.k("lock", "round"), token, nx=True, px=self.lock_lease_ms)):
            self._lock_token = token
            return True
        return False

    def unlock(self) -> None:
        token, self._lock_token = self._lock_token, ""
        if token:
            s = self.store
            s.call(lambda: s.r.eval(_RELEASE, 1, s.k("lock", "round"), token))

    def claim(self, key: str) -> Claim:
        s = self.store
        mine = f"sending:{self.token}"
        if s.call(lambda: s.r.set(s.k("dedup", key), mine, nx=True, px=self.lease_ms)):
            return "won"
        held = s.call(lambda: s.r.get(s.k("dedup", key)))
        if held is None:  # expired between the two calls: try once more next round
            return "busy"
        return "sent" if held == b"sent" else "busy"

    def settle(self, key: str, *, sent: bool) -> None:
        s = self.store
        mine = f"sending:{self.token}"
        if sent:
            s.call(lambda: s.r.eval(_SETTLE, 1, s.k("dedup", key), mine, self.sent_ttl_ms))
        else:
            s.call(lambda: s.r.eval(_RELEASE, 1, s.k("dedup", key), mine))


def _field(group_key: str, second: str) -> str:
    return group_key + _SEP + second


def open_store(config: AlertingConfig, data_dir: Path) -> tuple[AlertStoreProtocol, AlertCluster | None]:
    """The store ``[alerting] store`` names, and the replica coordination that goes with Redis."""
    if config.store != "redis":
        return AlertStore(data_dir), None
    url = redis_url(
        url=config.redis_url,
        host=config.redis_host,
        port=config.redis_port,
        password=config.redis_password,
        db=config.redis_db,
    )
    store = RedisAlertStore(url, key_prefix=config.redis_key_prefix, timeout_secs=config.redis_timeout_secs)
    cluster = AlertCluster(store, lease_secs=config.dedup_lease_secs, sent_ttl_secs=config.dedup_ttl_secs)
    return store, cluster

"""The alert role's operations, one method per HTTP route, framework-free.

Every method takes decoded JSON (or plain arguments) and returns JSON-ready data; bad input
raises ValidationError naming the field, a missing id NotFound. Channels are always returned
with secrets masked (``Channel.redacted()``); a masked value sent back by PUT/PATCH keeps the
stored secret.

    POST /rules                 create_rule(body)            GET /rules          list_rules()
    GET|PUT|PATCH|DELETE /rules/{id}                         get/replace/patch/delete_rule
    POST /rules/{id}/enable|disable                          set_rule_enabled(id, bool)
    POST /channels              create_channel(body)         GET /channels       list_channels()
    GET|PUT|PATCH|DELETE /channels/{id}                      get/replace/patch/delete_channel
    POST /channels/{id}/test    test_channel(id)
    POST /silences              create_silence(body)         GET /silences       list_silences()
    GET|DELETE /silences/{id}                                get/delete_silence
    GET /alerts                 list_alerts()                GET /alerts/history list_history()
    POST /api/v2/alerts         receive_external_alerts(body)
"""

from __future__ import annotations

from typing import Any

from airisd.alerting.engine import AlertEngine
from airisd.alerting.rules import (
    READ_ONLY,
    Channel,
    Rule,
    channel_from_json,
    restore_secrets,
    rule_from_json,
    silence_from_json,
)
from airisd.errors import ValidationError

_STATE_ORDER = {"inactive": 0, "pending": 1, "firing": 2}


class AlertService:
    def __init__(self, engine: AlertEngine) -> None:
        self.engine = engine
        self.store = engine.store

    def _now(self) -> int:
        return self.engine.clock.time_ns()

    # -- rules -------------------------------------------------------------------------------
    async def create_rule(self, body: Any) -> dict[str, Any]:
        rule = rule_from_json(body, channel_names=self.store.channel_names())
        return self._rule_out(self.store.create_rule(rule, now_ns=self._now()))

    async def list_rules(self, *, enabled: bool | None = None) -> list[dict[str, Any]]:
        return [self._rule_out(r) for r in self.store.list_rules(enabled=enabled)]

    async def get_rule(self, rule_id: str) -> dict[str, Any]:
        return self._rule_out(self.store.get_rule(rule_id))

    async def replace_rule(self, rule_id: str, body: Any) -> dict[str, Any]:
        self.store.get_rule(rule_id)  # 404 before 400
        rule = rule_from_json(body, channel_names=self.store.channel_names())
        return self._rule_out(self.store.replace_rule(rule_id, rule, now_ns=self._now()))

    async def patch_rule(self, rule_id: str, patch: Any) -> dict[str, Any]:
        """JSON merge patch (RFC 7386) over the stored rule, then full validation."""
        current = self.store.get_rule(rule_id).to_json()
        merged = merge_patch(_writable(current), _patch_object(patch))
        rule = rule_from_json(merged, channel_names=self.store.channel_names())
        return self._rule_out(self.store.replace_rule(rule_id, rule, now_ns=self._now()))

    async def set_rule_enabled(self, rule_id: str, enabled: bool) -> dict[str, Any]:
        return await self.patch_rule(rule_id, {"enabled": enabled})

    async def delete_rule(self, rule_id: str) -> None:
        self.store.delete_rule(rule_id)
        await self.engine.forget_rule(rule_id)

    def _rule_out(self, rule: Rule) -> dict[str, Any]:
        out = rule.to_json()
        alerts = self.engine.active_alerts(rule_id=rule.id)
        out["state"] = max((a.state for a in alerts), key=_STATE_ORDER.__getitem__, default="inactive")
        out["active_alerts"] = len(alerts)
        health = self.engine.rule_health(rule.id)
        out["last_evaluation"] = health.to_json() if health else None
        return out

    # -- channels ----------------------------------------------------------------------------
    def _validate_channel(self, body: Any) -> Channel:
        return channel_from_json(
            body, self.engine.channel_types, defaults=self.engine.config.channel_defaults
        )

    async def create_channel(self, body: Any) -> dict[str, Any]:
        channel = self._validate_channel(body)
        return self.store.create_channel(channel, now_ns=self._now()).redacted()

    async def list_channels(self) -> list[dict[str, Any]]:
        return [c.redacted() for c in self.store.list_channels()]

    async def get_channel(self, channel_id: str) -> dict[str, Any]:
        return self.store.get_channel(channel_id).redacted()

    async def replace_channel(self, channel_id: str, body: Any) -> dict[str, Any]:
        old = self.store.get_channel(channel_id)
        if isinstance(body, dict) and isinstance(body.get("config"), dict):
            body = {**body, "config": restore_secrets(body["config"], old.config)}
        return await self._store_channel(old, self._validate_channel(body))

    async def patch_channel(self, channel_id: str, patch: Any) -> dict[str, Any]:
        old = self.store.get_channel(channel_id)
        patch = _patch_object(patch)
        if isinstance(patch.get("config"), dict):
            patch = {**patch, "config": restore_secrets(patch["config"], old.config)}
        merged = merge_patch(_writable(old.to_json()), patch)
        return await self._store_channel(old, self._validate_channel(merged))

    async def _store_channel(self, old: Channel, new: Channel) -> dict[str, Any]:
        if new.name != old.name:
            self._refuse_if_used(old.name, "renamed")
        saved = self.store.replace_channel(old.id, new, now_ns=self._now())
        await self.engine.forget_channel(old.id)
        return saved.redacted()

    async def delete_channel(self, channel_id: str) -> None:
        channel = self.store.get_channel(channel_id)
        self._refuse_if_used(channel.name, "deleted")
        self.store.delete_channel(channel_id)
        await self.engine.forget_channel(channel_id)

    def _refuse_if_used(self, name: str, what: str) -> None:
        users = self.store.rules_using_channel(name)
        if users:
            ids = [r.id for r in users]
            raise ValidationError(
                f"name: channel {name!r} is used by rule(s) {', '.join(ids[:10])}: it cannot be {what}",
                details={"field": "name", "rules": ids},
            )

    async def test_channel(self, channel_id: str) -> dict[str, Any]:
        """Send one test notification now; the outcome is returned, not raised."""
        channel = self.store.get_channel(channel_id)
        result = await self.engine.send_test(channel)
        return {"channel": channel.name, "ok": result.ok, "error": result.error or None}

    # -- silences ----------------------------------------------------------------------------
    async def create_silence(self, body: Any) -> dict[str, Any]:
        silence = silence_from_json(body, now_ns=self._now())
        if silence.rule_id:
            try:
                self.store.get_rule(silence.rule_id)
            except Exception:
                raise ValidationError(
                    f"rule_id: no rule with id {silence.rule_id!r}", details={"field": "rule_id"}
                ) from None
        saved = self.store.create_silence(silence, now_ns=self._now())
        return {**saved.to_json(), "active": saved.active(self._now())}

    async def list_silences(self, *, active: bool | None = None) -> list[dict[str, Any]]:
        now = self._now()
        out = []
        for s in self.store.list_silences():
            item = s.to_json()
            item["active"] = s.active(now)
            if active is None or item["active"] == active:
                out.append(item)
        return out

    async def get_silence(self, silence_id: str) -> dict[str, Any]:
        silence = self.store.get_silence(silence_id)
        return {**silence.to_json(), "active": silence.active(self._now())}

    async def delete_silence(self, silence_id: str) -> None:
        self.store.delete_silence(silence_id)

    # -- alerts ------------------------------------------------------------------------------
    async def list_alerts(
        self, *, rule_id: str | None = None, state: str | None = None
    ) -> list[dict[str, Any]]:
        """Active alerts (pending and firing)."""
        if state is not None and state not in ("pending", "firing"):
            raise ValidationError("state: must be pending or firing", details={"field": "state"})
        rules = {r.id: r.name for r in self.store.list_rules()}
        out = []
        for st in self.engine.active_alerts(rule_id=rule_id):
            if state is None or st.state == state:
                out.append({**st.to_json(), "rule_name": rules.get(st.rule_id) or st.labels.get("alertname")})
        return out

    async def list_history(
        self,
        *,
        limit: int = 100,
        before: int | None = None,
        rule_id: str | None = None,
        kind: str | None = None,
    ) -> dict[str, Any]:
        """Newest first; pass ``next_before`` back as ``before`` for the next page."""
        if not 1 <= limit <= 1000:
            raise ValidationError("limit: must be between 1 and 1000", details={"field": "limit"})
        if kind is not None and kind not in ("firing", "resolved", "notification"):
            raise ValidationError("kind: must be firing, resolved or notification", details={"field": "kind"})
        entries, next_before = self.store.list_history(
            limit=limit, before_id=before, rule_id=rule_id, kind=kind
        )
        return {"items": [e.to_json() for e in entries], "next_before": next_before}

    async def receive_external_alerts(self, body: Any) -> dict[str, Any]:
        return {"accepted": await self.engine.receive_external_alerts(body)}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _patch_object(patch: Any) -> dict[str, Any]:
    if not isinstance(patch, dict):
        raise ValidationError("body: a merge patch must be a JSON object", details={"field": "body"})
    return {k: v for k, v in patch.items() if k not in READ_ONLY}


def _writable(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in READ_ONLY}

"""How channels turn a Notification into text, the same way for every channel.

- A *title* (e-mail subject, Slack text, SMS message) is rendered once, against the first alert.
  When the notification is resolved and the template never looks at ``.Status`` (the seed's
  ``[ALERT] {{.RuleName}}`` does not), ``[RESOLVED] `` is put in front, so a resolved message
  never reads like a new alert.
- A *body* is rendered once per alert and the parts are joined with a separator line.
"""

from __future__ import annotations

from airisd.alerting.notification import Notification
from airisd.alerting.templates import Template

SEPARATOR = "\n\n---\n\n"


def render_title(template: Template, n: Notification, *, one_line: bool = True) -> str:
    text = template.render(n.context())
    if n.status == "resolved" and not template.uses("Status"):
        text = "[RESOLVED] " + text
    if one_line:
        text = " ".join(text.split())
    return text


def render_bodies(template: Template, n: Notification) -> list[str]:
    if not n.alerts:
        return [template.render(n.context())]
    mark = not template.uses("Status")
    return [
        ("[RESOLVED] " if mark and alert.status == "resolved" else "") + template.render(n.context(alert))
        for alert in n.alerts
    ]


def render_body(template: Template, n: Notification) -> str:
    return SEPARATOR.join(render_bodies(template, n))

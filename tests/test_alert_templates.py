"""The notification template engine: seed templates, the small syntax, and hostile input."""

from __future__ import annotations

import contextlib
import json
from typing import Any
from urllib.parse import unquote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airisd.alerting.templates import FUNCTIONS, MAP_VARIABLES, VARIABLES, compile_template, format_value
from airisd.errors import ValidationError

CTX = {
    "RuleName": "High CPU Usage",
    "Severity": "warning",
    "Description": "Alert when CPU usage exceeds 80%",
    "Timestamp": "2024-01-15T10:30:00.000Z",
    "Value": 95.5,
    "Threshold": 80.0,
    "Status": "firing",
    "Labels": {"team": "infrastructure", "environment": "production", "app.kubernetes.io/name": "api"},
}


def render(text: str, ctx: dict[str, Any] = CTX) -> str:
    return compile_template(text, field="config.body_template").render(ctx)


def test_seed_templates_render() -> None:
    assert render("[ALERT] {{.RuleName}} - {{.Severity}}") == "[ALERT] High CPU Usage - warning"
    assert render("Alert: {{.Description}}\nTime: {{.Timestamp}}\nValue: {{.Value}}") == (
        "Alert: Alert when CPU usage exceeds 80%\nTime: 2024-01-15T10:30:00.000Z\nValue: 95.5"
    )


def test_labels_and_functions() -> None:
    assert render("{{.Labels.team}}/{{ .Labels.environment }}") == "infrastructure/production"
    assert render('{{index .Labels "app.kubernetes.io/name"}}') == "api"
    assert render('{{.Labels.missing | default "n/a"}}') == "n/a"
    assert render('{{.Labels.team | default "n/a" | upper}}') == "INFRASTRUCTURE"
    assert render("{{.Status | upper}} {{.Severity | title}}") == "FIRING Warning"
    assert render("{{.Threshold}}") == "80"  # no needless .0
    assert render("{{.Description | json}}") == '"Alert when CPU usage exceeds 80%"'
    assert render("{{.RuleName | urlquery}}") == "High+CPU+Usage"


def test_missing_values_render_empty_and_maps_sorted() -> None:
    assert render("[{{.Count}}][{{.Labels.nope}}]", {}) == "[][]"
    assert render("{{.Labels}}", {"Labels": {"b": "2", "a": "1"}}) == "a=1, b=2"


def test_literals_trim_and_comments() -> None:
    assert render('{{"{{"}}.RuleName}}') == "{{.RuleName}}"
    assert render("{{`raw \\n`}}") == "raw \\n"
    assert render("a   {{- .Severity -}}   b") == "awarningb"
    assert render("x{{/* a comment */}}y") == "xy"
    assert render('{{"tab\\there"}}') == "tab\there"


@pytest.mark.parametrize(
    ("text", "problem", "column"),
    [
        ("{{.Nope}}", "unknown variable .Nope", 3),
        ("ab {{.RuleName", "unclosed action", 4),
        ("{{ if .Value }}x{{ end }}", "'if' is not supported", 4),
        ("{{.Value.x}}", ".Value has no field .x", 9),
        ("{{.Labels.a.b}}", "has no field .b", 12),
        ("{{.Value | exec}}", "unknown function 'exec'", 12),
        ("{{}}", "empty action", 1),
        ("{{.Value | default}}", "default expects a quoted string", 19),
        ('{{"abc}}', "unterminated string", 3),
        ("{{ 7*7 }}", "unexpected", 4),
        ("{{.__class__}}", "unknown variable", 3),
        ("{{ .RuleName.__globals__ }}", "has no field", 13),
        ('{{index .Value "x"}}', "index expects a map variable", 9),
        ("{{/* open", "unclosed comment", 1),
        ('{{"\\q"}}', "unknown escape", 4),
        ("{{.RuleName .Severity}}", "expected | or }}", 13),
    ],
)
def test_syntax_errors_name_field_and_position(text: str, problem: str, column: int) -> None:
    with pytest.raises(ValidationError) as info:
        compile_template(text, field="config.subject_template")
    err = info.value
    assert err.details["field"] == "config.subject_template"
    assert err.message.startswith("config.subject_template: template error at line 1 column")
    assert problem in err.message
    assert err.details["column"] == column
    assert err.details["position"] == column - 1


def test_error_position_on_later_line() -> None:
    with pytest.raises(ValidationError) as info:
        compile_template("Alert: {{.RuleName}}\nValue: {{.Valu}}", field="config.body_template")
    assert (info.value.details["line"], info.value.details["column"]) == (2, 10)


def test_oversized_template_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        compile_template("x" * 70_000, field="config.body_template")
    assert info.value.details["field"] == "config.body_template"


def test_uses_reports_variables() -> None:
    t = compile_template("[{{.Status}}] {{.Labels.team}}", field="f")
    assert t.uses("Status") and t.uses("Labels") and not t.uses("RuleName")


# -- properties ---------------------------------------------------------------------------------

plain_text = st.text().filter(lambda s: "{{" not in s)


@given(plain_text)
def test_text_without_actions_renders_unchanged(text: str) -> None:
    assert compile_template(text, field="f").render(CTX) == text


@given(st.text(alphabet=st.sampled_from(list('{}.|"` -/*abRuleNamLbsx\n')), max_size=60))
def test_hostile_input_compiles_or_is_rejected_cleanly(text: str) -> None:
    try:
        t = compile_template(text, field="config.x")
    except ValidationError as exc:
        assert exc.details["field"] == "config.x"
        assert 0 <= exc.details["position"] <= len(text)
        assert exc.details["line"] >= 1 and exc.details["column"] >= 1
    else:
        assert isinstance(t.render(CTX), str)


@given(st.text(max_size=200))
def test_arbitrary_unicode_never_crashes_the_parser(text: str) -> None:
    with contextlib.suppress(ValidationError):
        compile_template(text, field="f")


scalar_names = sorted(set(VARIABLES) - MAP_VARIABLES)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def templates(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.booleans()):
            parts.append(draw(plain_text.filter(lambda s: not s.endswith("{"))))
            continue
        if draw(st.booleans()):
            head = "." + draw(st.sampled_from(scalar_names))
        else:
            key = draw(st.from_regex(r"[a-z_][a-z0-9_]{0,5}", fullmatch=True))
            head = f".{draw(st.sampled_from(sorted(MAP_VARIABLES)))}.{key}"
        funcs = draw(st.lists(st.sampled_from(sorted(FUNCTIONS)), max_size=3))
        pipeline = "".join(f' | {f} "x"' if FUNCTIONS[f] else f" | {f}" for f in funcs)
        parts.append("{{" + head + pipeline + "}}")
    return "".join(parts)


@given(templates(), st.dictionaries(st.sampled_from(sorted(VARIABLES)), values))
def test_valid_templates_always_render(text: str, ctx: dict[str, Any]) -> None:
    assert isinstance(compile_template(text, field="f").render(ctx), str)


@given(st.text(max_size=50))
def test_json_and_urlquery_round_trip(value: str) -> None:
    ctx = {"Description": value}
    assert json.loads(render("{{.Description | json}}", ctx)) == value
    assert unquote_plus(render("{{.Description | urlquery}}", ctx)) == value


@given(st.text(max_size=30))
def test_values_are_inserted_verbatim_never_evaluated(value: str) -> None:
    # a value that looks like a template is data, not code
    assert render("<{{.RuleName}}>", {"RuleName": value}) == f"<{value}>"


def test_hostile_context_values_do_not_break_rendering() -> None:
    class Evil:
        def __str__(self) -> str:
            raise RuntimeError("boom")

    assert render("a{{.Value}}b", {"Value": Evil()}) == "ab"
    assert format_value(float("nan")) == "nan"
    assert format_value(1e300) == "1e+300"

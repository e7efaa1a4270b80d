"""The daemon's own metrics in the Prometheus text format (0.0.4): a strict checker here, and
``promtool check metrics`` when it is installed (required under AIRISD_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airisd.config import build_config
from airisd.daemon import Daemon
from airisd.http.app import HttpContext, build_app
from airisd.registry import build_registry
from airisd.selfmetrics import Registry
from tests.e2e_helpers import require_tool

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_VALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
LABELS = rf"\{{(?:[a-zA-Z_][a-zA-Z0-9_]*={LABEL_VALUE})(?:,[a-zA-Z_][a-zA-Z0-9_]*={LABEL_VALUE})*\}}"
VALUE = r"(?:[+-]?Inf|NaN|[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
SAMPLE = re.compile(rf"^({NAME})({LABELS})? ({VALUE})$")
HELP = re.compile(rf"^# HELP ({NAME}) ((?:[^\\\n]|\\[\\n])*)$")
TYPE = re.compile(rf"^# TYPE ({NAME}) (counter|gauge|histogram|summary|untyped)$")
LABEL_PAIR = re.compile(rf"([a-zA-Z_][a-zA-Z0-9_]*)=({LABEL_VALUE})")


def check_exposition(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """Parse the text format strictly; return samples by family. Fails the test on any defect."""
    assert text.endswith("\n")
    families: dict[str, str] = {}
    helped: set[str] = set()
    samples: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for line in text[:-1].split("\n"):  # only \n ends a line (not \f or \r as splitlines thinks)
        if m := HELP.match(line):
            assert m.group(1) not in helped, f"HELP twice: {line}"
            helped.add(m.group(1))
            continue
        if m := TYPE.match(line):
            assert m.group(1) not in families, f"TYPE twice: {line}"
            assert not samples.get(m.group(1)), f"TYPE after samples: {line}"
            families[m.group(1)] = m.group(2)
            continue
        m = SAMPLE.match(line)
        assert m, f"not a valid sample line: {line!r}"
        name, labels_text, value = m.group(1), m.group(2) or "", m.group(3)
        family = name
        if name not in families:
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            assert families.get(family) == "histogram", f"sample {name} without a TYPE"
        labels = {k: v[1:-1] for k, v in LABEL_PAIR.findall(labels_text)}
        key = (name, tuple(sorted(labels.items())))
        assert key not in seen, f"duplicate series: {line}"
        seen.add(key)
        samples.setdefault(family, []).append((name, labels, float(value.replace("Inf", "inf"))))
    for family, kind in families.items():
        assert family in helped
        if kind == "counter":
            assert all(v >= 0 for _, _, v in samples.get(family, [])), family
        if kind == "histogram":
            check_histogram(family, samples.get(family, []))
    return samples


def check_histogram(family: str, rows: list[tuple[str, dict[str, str], float]]) -> None:
    series: dict[tuple[tuple[str, str], ...], dict[str, list[tuple[float, float]]]] = {}
    for name, labels, value in rows:
        le = labels.pop("le", None)
        entry = series.setdefault(tuple(sorted(labels.items())), {"bucket": [], "sum": [], "count": []})
        part = name[len(family) + 1 :]
        entry[part].append((float(le.replace("Inf", "inf")) if le else 0.0, value))
    for entry in series.values():
        bounds = [b for b, _ in entry["bucket"]]
        counts = [c for _, c in entry["bucket"]]
        assert bounds == sorted(bounds) and bounds[-1] == math.inf
        assert counts == sorted(counts), "bucket counts must be cumulative"
        assert len(entry["count"]) == len(entry["sum"]) == 1
        assert entry["count"][0][1] == counts[-1]


def promtool_accepts(text: str) -> None:
    promtool = require_tool("promtool")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def hostile_registry() -> Registry:
    r = Registry()
    c = r.counter(
        "requests_total", 'Requests, with "quotes", a \\ backslash\nand a newline', ("route", "status")
    )
    c.inc(1, "/metrics", "200")
    c.inc(2.5, 'we"ird\\path\nx', "500")
    r.gauge("queue_items", "Queued").set(3)
    r.gauge("nan_value", "Not a number").set(float("nan"))
    r.gauge("inf_value", "Infinite").set(float("-inf"))
    r.gauge("big_value", "Large").set(1.5e300)
    r.gauge("callback", "From a callback", ("k",)).set_function(lambda: 7, "v")

    def broken() -> float:
        raise RuntimeError("gone")

    r.gauge("broken_callback", "A callback that fails").set_function(broken)
    h = r.histogram("write_seconds", "Write latency", ("output",))
    for v in (0.0001, 0.003, 0.2, 0.2, 7.0, 1000.0):
        h.observe(v, "sqlite")
    h.observe(0.01, "other")
    odd = r.counter("odd_total", "Tabs\tform\x0cfeeds\rreturns \u2028 한국어 {braces} # hash", ("v",))
    odd.inc(1, "\t\x0c\r\u2028 한국어 {} # , =")
    r.histogram("empty_seconds", "Never observed")
    r.counter("unused_total", "Never incremented")
    return r


def test_rendered_text_is_valid() -> None:
    samples = check_exposition(hostile_registry().render())
    assert ("airisd_requests_total", {"route": 'we\\"ird\\\\path\\nx', "status": "500"}, 2.5) in samples[
        "airisd_requests_total"
    ]
    assert samples["airisd_callback"] == [("airisd_callback", {"k": "v"}, 7.0)]
    assert "airisd_broken_callback" not in samples  # skipped, the scrape still works
    assert math.isnan(samples["airisd_nan_value"][0][2])
    counts = {s[1]["output"]: s[2] for s in samples["airisd_write_seconds"] if s[0].endswith("_count")}
    assert counts == {"sqlite": 6, "other": 1}


def test_promtool_accepts_the_rendered_text() -> None:
    promtool_accepts(hostile_registry().render())


def test_daemon_metrics_are_valid(tmp_path: Path) -> None:
    """Every metric the metrics role registers (pipeline, outputs, inputs, HTTP, build info)."""
    config = build_config(
        {
            "agent": {"role": "metrics", "data_dir": str(tmp_path)},
            "inputs": {"http_metrics": [{}]},
            "outputs": {"sqlite": [{}]},
        },
        source="test",
        environ={},
    )
    daemon = Daemon(config, build_registry())
    daemon.build()
    for listener in daemon.listeners:
        build_app(listener.routes, HttpContext(role=listener.role, metrics=daemon.metrics))
    m = daemon.metrics
    m.counter("http_requests_total", "", ("role", "method", "route", "status")).inc(
        1, "metrics", "GET", "/x", "200"
    )
    m.histogram("output_write_seconds", "", ("output", "signal")).observe(0.002, "sqlite", "metrics")
    text = m.render()
    samples = check_exposition(text)
    for family in (
        "airisd_build_info",
        "airisd_uptime_seconds",
        "airisd_output_queue_items",
        "airisd_http_requests_total",
        "airisd_output_write_seconds",
    ):
        assert family in samples, family
    promtool_accepts(text)


def test_same_name_same_metric_and_kind_conflicts_refused() -> None:
    r = Registry()
    assert r.counter("x_total", "X") is r.counter("x_total", "X")
    with pytest.raises(TypeError):
        r.gauge("x_total", "X")
    assert Registry(prefix="other_").counter("y_total", "Y").name == "other_y_total"


def test_counter_and_histogram_arithmetic() -> None:
    r = Registry()
    c = r.counter("c_total", "C", ("a",))
    c.inc(1, "x")
    c.inc(2, "x")
    assert c.get("x") == 3 and c.get("y") == 0
    h = r.histogram("h_seconds", "H", buckets=(1.0, 0.5))
    h.observe(0.5)
    h.observe(2.0)
    assert h.count() == 2
    assert 'airisd_h_seconds_bucket{le="0.5"} 1' in r.render()
    assert 'airisd_h_seconds_bucket{le="1"} 1' in r.render()
    assert 'airisd_h_seconds_bucket{le="+Inf"} 2' in r.render()


@given(
    st.text(max_size=30),
    st.lists(st.tuples(st.text(max_size=12), st.floats(min_value=0, max_value=1e12)), max_size=5),
)
def test_any_help_and_label_values_render_validly(help_text: str, incs: list[tuple[str, float]]) -> None:
    r = Registry()
    c = r.counter("fuzz_total", help_text, ("v",))
    g = r.gauge("fuzz_gauge", help_text, ("v",))
    for label, amount in incs:
        c.inc(amount, label)
        g.set(-amount, label)
    samples = check_exposition(r.render())
    assert len(samples.get("airisd_fuzz_total", [])) == len({lbl for lbl, _ in incs})

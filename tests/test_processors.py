"""The processors shipped with the core: ``labels`` (add, rename, drop) and ``filter`` (globs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from airisd_plugins.processors.filter import FilterConfig, FilterProcessor
from airisd_plugins.processors.labels import LabelsConfig, LabelsProcessor
from hypothesis import given
from hypothesis import strategies as st

from airisd.model import Batch, LogRecord, Point, Signal
from tests.conftest import make_ctx


def labels_proc(**cfg: Any) -> LabelsProcessor:
    config = msgspec.convert(cfg, LabelsConfig)
    config.validate()
    return LabelsProcessor(config, make_ctx(Path(".")))


def filter_proc(**cfg: Any) -> FilterProcessor:
    config = msgspec.convert(cfg, FilterConfig)
    config.validate()
    return FilterProcessor(config, make_ctx(Path(".")))


def point(name: str = "cpu.usage", **labels: str) -> Point:
    return Point(name=name, value=1.0, ts=1, labels=dict(labels))


def metrics(*items: Point) -> Batch:
    return Batch(Signal.METRICS, list(items))


# -- labels ----------------------------------------------------------------------------------------


def test_add_keeps_the_items_own_value_unless_overwrite() -> None:
    batch = metrics(point(host="a"), point())
    out = labels_proc(add={"env": "prod", "host": "default"}).process(batch)
    assert [p.labels for p in out.items] == [
        {"env": "prod", "host": "a"},
        {"env": "prod", "host": "default"},
    ]
    out = labels_proc(add={"host": "forced"}, overwrite=True).process(metrics(point(host="a")))
    assert out.items[0].labels == {"host": "forced"}


def test_rename_then_drop_then_add() -> None:
    p = point(hostname="web-01", pod_uid="123", keep="yes")
    out = labels_proc(rename={"hostname": "host"}, drop=["pod_uid", "absent"], add={"env": "prod"}).process(
        metrics(p)
    )
    assert out.items[0].labels == {"host": "web-01", "keep": "yes", "env": "prod"}


def test_rename_onto_an_existing_key_replaces_it() -> None:
    out = labels_proc(rename={"hostname": "host"}).process(metrics(point(hostname="new", host="old")))
    assert out.items[0].labels == {"host": "new"}


def test_logs_are_relabelled_and_signals_can_be_limited() -> None:
    log = LogRecord(ts=1, level="INFO", message="hi", labels={"a": "1"})
    out = labels_proc(add={"env": "prod"}).process(Batch(Signal.LOGS, [log]))
    assert out.items[0].labels == {"a": "1", "env": "prod"}
    only_logs = labels_proc(add={"env": "prod"}, signals=["logs"])
    assert only_logs.process(metrics(point())).items[0].labels == {}


@pytest.mark.parametrize(
    "cfg",
    [{"signals": ["traces"]}, {"add": {"": "x"}}, {"rename": {"a": ""}}, {"drop": [""]}],
)
def test_bad_labels_config(cfg: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        msgspec.convert(cfg, LabelsConfig).validate()


def test_unknown_labels_option_is_refused() -> None:
    with pytest.raises(msgspec.ValidationError, match="renmae"):
        msgspec.convert({"renmae": {}}, LabelsConfig)


small = st.sampled_from(["a", "b", "c", "d"])
label_maps = st.dictionaries(small, st.sampled_from(["1", "2", "3"]), max_size=4)


@given(
    label_maps,
    label_maps,
    st.dictionaries(small, small, max_size=2),
    st.lists(small, max_size=2),
    st.booleans(),
)
def test_labels_match_a_reference_implementation(
    own: dict[str, str], add: dict[str, str], rename: dict[str, str], drop: list[str], overwrite: bool
) -> None:
    expected = dict(own)
    for old, new in rename.items():
        if old in expected:
            expected[new] = expected.pop(old)
    for k in drop:
        expected.pop(k, None)
    expected = {**expected, **add} if overwrite else {**add, **expected}
    proc = labels_proc(add=add, rename=rename, drop=drop, overwrite=overwrite)
    assert proc.process(metrics(point(**own))).items[0].labels == expected


# -- filter ----------------------------------------------------------------------------------------


def names(batch: Batch) -> list[str]:
    return [p.name for p in batch.items]


def test_drop_by_name_glob() -> None:
    batch = metrics(point("test.a"), point("cpu.usage"), point("test"), point("xtest.b"))
    assert names(filter_proc(names=["test.*"]).process(batch)) == ["cpu.usage", "test", "xtest.b"]


def test_keep_by_name_glob() -> None:
    batch = metrics(point("cpu.usage"), point("cpu.idle"), point("memory.usage"))
    assert names(filter_proc(action="keep", names=["cpu.*", "disk.?"]).process(batch)) == [
        "cpu.usage",
        "cpu.idle",
    ]


def test_label_globs_must_all_match_and_missing_labels_do_not() -> None:
    batch = metrics(
        point("a", host="ci-01", env="test"),
        point("b", host="ci-02", env="prod"),
        point("c", host="web-01", env="test"),
        point("d", env="test"),
    )
    out = filter_proc(labels={"host": "ci-*", "env": "test"}).process(batch)
    assert names(out) == ["b", "c", "d"]


def test_names_and_labels_together() -> None:
    batch = metrics(point("test.a", host="ci-1"), point("test.b", host="web"), point("prod", host="ci-2"))
    assert names(filter_proc(names=["test.*"], labels={"host": "ci-*"}).process(batch)) == ["test.b", "prod"]


def test_glob_specials_and_exact_matching() -> None:
    batch = metrics(point("a[1]"), point("a1"), point("a.b"), point("aXb"))
    assert names(filter_proc(names=["a[[]1]"]).process(batch)) == ["a1", "a.b", "aXb"]  # [[] is a literal [
    assert names(filter_proc(names=["a.b"]).process(metrics(point("a.b"), point("aXb")))) == [
        "aXb"
    ]  # . is literal


def test_logs_are_filtered_by_service_only_when_asked() -> None:
    logs = Batch(
        Signal.LOGS, [LogRecord(ts=1, level="INFO", message="x", service=s) for s in ("api", "test-svc")]
    )
    assert len(filter_proc(names=["test-*"]).process(logs).items) == 2  # default signals: metrics only
    out = filter_proc(names=["test-*"], signals=["logs"]).process(
        Batch(
            Signal.LOGS, [LogRecord(ts=1, level="INFO", message="x", service=s) for s in ("api", "test-svc")]
        )
    )
    assert [r.service for r in out.items] == ["api"]


@pytest.mark.parametrize(
    "cfg",
    [{}, {"action": "delete", "names": ["x"]}, {"names": ["x"], "signals": ["traces"]}],
)
def test_bad_filter_config(cfg: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        msgspec.convert(cfg, FilterConfig).validate()


@given(
    st.lists(st.text(alphabet="ab.*?", max_size=5), min_size=1, max_size=3),
    st.lists(st.text("ab.", max_size=5)),
)
def test_drop_and_keep_partition_the_batch(patterns: list[str], item_names: list[str]) -> None:
    dropped = filter_proc(names=patterns).process(metrics(*(point(n) for n in item_names)))
    kept = filter_proc(names=patterns, action="keep").process(metrics(*(point(n) for n in item_names)))
    assert sorted(names(dropped) + names(kept)) == sorted(item_names)
    assert not set(names(dropped)) & set(names(kept))

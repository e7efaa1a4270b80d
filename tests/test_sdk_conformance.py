"""airisd.testing, the plugin authors' harness: every built-in plugin passes
``run_plugin_conformance``, and the check catches each way a plugin can break the contract."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, ClassVar

import anyio
import msgspec
import pytest
from anyio.abc import TaskStatus

from airisd.errors import PermanentError, TransientError
from airisd.model import Batch, Signal
from airisd.plugin import AlertChannel, Input, Output, Plugin, PluginConfig, Processor
from airisd.registry import build_registry
from airisd.testing import (
    FakeClock,
    MemorySink,
    MemorySource,
    check_plugin_conformance,
    make_context,
    run_plugin_conformance,
    running_pipeline,
    sample_batch,
)
from tests.test_plugin_lifecycle import MINIMAL_CONFIGS

ROOT = Path(__file__).resolve().parent.parent


def _alert_channels() -> list[type[Plugin]]:
    """Alert channels are found by their folder's ``plugin_class`` until they join the registry."""
    registered = {i.cls for i in build_registry().all()}
    found: list[type[Plugin]] = []
    for init in sorted(ROOT.glob("plugins/alerting/*/__init__.py")):
        module = importlib.import_module(f"airisd_plugins.alerting.{init.parent.name}")
        cls = getattr(module, "plugin_class", None)
        if isinstance(cls, type) and issubclass(cls, AlertChannel) and cls not in registered:
            found.append(cls)
    return found


BUILT_INS: list[type[Plugin]] = [i.cls for i in build_registry().all()] + _alert_channels()


@pytest.mark.parametrize("cls", BUILT_INS, ids=lambda c: f"{c.kind}-{c.name}")
def test_every_built_in_plugin_passes_conformance(cls: type[Plugin], tmp_path: Path) -> None:
    report = run_plugin_conformance(cls, MINIMAL_CONFIGS.get((cls.kind, cls.name), {}), data_dir=tmp_path)
    assert {"config validated", "unknown keys rejected", "shutdown without start is safe", "start",
            "run reaches started and stops when cancelled", "shutdown is safe twice"} <= set(report.passed)
    if issubclass(cls, Output):
        assert set(report.writes) == {s.value for s in cls.signals}


def test_alert_channels_are_covered() -> None:
    assert {c.name for c in BUILT_INS if c.kind == "alerting"} >= {"webhook", "slack", "sms", "email"}


# -- the check catches contract breaches -------------------------------------------------------


class GoodConfig(PluginConfig):
    size: int = 1

    def validate(self) -> None:
        if self.size < 1:
            raise ValueError(f"size must be at least 1, got {self.size}")


class Good(Processor):
    name: ClassVar[str] = "good"
    Config: ClassVar[type[PluginConfig]] = GoodConfig
    description: ClassVar[str] = "keeps the contract"


class LaxConfig(msgspec.Struct, kw_only=True):  # not a PluginConfig, and takes any key
    size: int = 1


class Lax(Good):
    name: ClassVar[str] = "lax"
    Config: ClassVar[Any] = LaxConfig


class LaxPluginConfig(PluginConfig, forbid_unknown_fields=False):
    size: int = 1


class LaxKeys(Good):
    name: ClassVar[str] = "lax_keys"
    Config: ClassVar[type[PluginConfig]] = LaxPluginConfig


class NoDescription(Good):
    name: ClassVar[str] = "nodesc"
    description: ClassVar[str] = ""


class CrashesOnShutdownWithoutStart(Good):
    name: ClassVar[str] = "crash_unstarted"

    async def shutdown(self) -> None:
        raise AttributeError("'NoneType' object has no attribute 'close'")


class CrashesOnSecondShutdown(Good):
    name: ClassVar[str] = "crash_twice"
    started = False
    closed = False

    async def start(self) -> None:
        self.started = True

    async def shutdown(self) -> None:
        if self.closed:
            raise RuntimeError("already closed")
        self.closed = self.started


class NeverReady(Input):
    name: ClassVar[str] = "never_ready"
    description: ClassVar[str] = "forgets task_status.started()"

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await anyio.sleep_forever()


class StartFails(Good):
    name: ClassVar[str] = "start_fails"

    async def start(self) -> None:
        raise OSError("cannot bind")


class Unclassified(Output):
    name: ClassVar[str] = "unclassified"
    description: ClassVar[str] = "raises a bare exception from write()"
    signals: ClassVar[frozenset[Signal]] = frozenset({Signal.LOGS})

    async def write(self, batch: Batch) -> None:
        raise KeyError("message")


class Flaky(Output):
    name: ClassVar[str] = "flaky"
    description: ClassVar[str] = "every write fails transiently"
    signals: ClassVar[frozenset[Signal]] = frozenset({Signal.METRICS})

    async def write(self, batch: Batch) -> None:
        raise TransientError("backend down")


@pytest.mark.parametrize(
    ("cls", "config", "message"),
    [
        (Lax, {}, r"lax.*config: .*must subclass airisd.plugin.PluginConfig"),
        (LaxKeys, {}, r"unknown keys rejected: LaxPluginConfig must forbid unknown fields"),
        (Good, {"size": 0}, r"processor plugin 'good': config validated: .*size must be at least 1, got 0"),
        (Good, {"colour": "red"}, r"config validated: .*colour"),
        (NoDescription, {}, r"description: .*empty"),
        (CrashesOnShutdownWithoutStart, {}, r"shutdown without start: .*no-op; it raised AttributeError"),
        (CrashesOnSecondShutdown, {}, r"shutdown twice: the second shutdown\(\) raised RuntimeError"),
        (StartFails, {}, r"start: start\(\) with a valid config raised OSError: cannot bind"),
        (Unclassified, {}, r"errors classified: write\(\) of a valid logs batch raised KeyError.*Transient"),
    ],
)
def test_a_contract_breach_is_named(cls: type[Plugin], config: dict[str, Any], message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        run_plugin_conformance(cls, config)


def test_a_plugin_that_never_reports_ready_fails_in_time() -> None:
    with pytest.raises(AssertionError, match=r"never_ready.*run: did not call task_status.started\(\)"):
        run_plugin_conformance(NeverReady, {}, timeout_secs=0.2)


def test_classified_errors_pass_and_are_reported() -> None:
    report = run_plugin_conformance(Flaky, {})
    assert report.writes == {"metrics": "TransientError: backend down"}


def test_check_flushed_runs_after_shutdown() -> None:
    seen: list[int] = []

    def flushed(plugin: Plugin) -> bool:
        assert isinstance(plugin, MemorySink)
        seen.append(plugin.shutdowns)
        return len(plugin.batches) == 3

    report = run_plugin_conformance(MemorySink, {}, check_flushed=flushed)
    assert seen == [1] and "shutdown flushes" in report.passed
    with pytest.raises(AssertionError, match="shutdown flushes: check_flushed returned False"):
        run_plugin_conformance(MemorySink, {}, check_flushed=lambda p: False)
    with pytest.raises(AssertionError, match="shutdown flushes: nothing on disk"):
        run_plugin_conformance(MemorySink, {}, check_flushed=lambda p: _raise("nothing on disk"))


def _raise(message: str) -> None:
    raise AssertionError(message)


@pytest.mark.anyio
async def test_the_async_form_works_inside_an_async_test(tmp_path: Path) -> None:
    report = await check_plugin_conformance(Good, {"size": 2}, data_dir=tmp_path)
    assert report.plugin == "processor plugin 'good'"


# -- source, sink, pipeline and clock ----------------------------------------------------------


class Upper(Processor):
    name: ClassVar[str] = "upper"
    description: ClassVar[str] = "upper-cases log messages"
    signals: ClassVar[frozenset[Signal]] = frozenset({Signal.LOGS})

    def process(self, batch: Batch) -> Batch:
        items = [msgspec.structs.replace(r, message=r.message.upper()) for r in batch.items]
        return Batch(batch.signal, items)


@pytest.mark.anyio
async def test_source_to_sink_through_the_daemons_pipeline(tmp_path: Path) -> None:
    sink = MemorySink()
    upper = Upper(PluginConfig(), make_context(tmp_path))
    async with running_pipeline([sink], processors=[upper]) as pipeline:
        source = MemorySource(PluginConfig(), make_context(tmp_path, emit=pipeline.submit))
        await source.emit_all([sample_batch(Signal.LOGS), sample_batch(Signal.METRICS, n=2)])
    assert [b.signal for b in sink.batches] == [Signal.LOGS, Signal.METRICS]
    assert sink.batches[0].items[0].message == "CONFORMANCE 0"
    assert len(sink.items) == 5


@pytest.mark.anyio
async def test_sink_failures_are_retried_or_dropped_and_counted(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    sink = MemorySink(ctx=ctx)
    async with running_pipeline([sink], metrics=ctx.metrics) as pipeline:
        sink.fail_next(3)
        await pipeline.submit(sample_batch(Signal.TRACES, n=2))
        assert sink.attempts == 4 and len(sink.items) == 2
        sink.fail_next(1, transient=False, message="mapping conflict")
        with pytest.raises(PermanentError, match="mapping conflict"):
            await pipeline.submit(sample_batch(Signal.TRACES, n=5))
    text = ctx.metrics.render()
    assert 'airisd_output_retries_total{output="memory_sink",signal="traces"} 3' in text
    assert 'airisd_output_failed_total{output="memory_sink",signal="traces"} 5' in text


@pytest.mark.anyio
async def test_context_collects_emitted_batches_and_fake_clock_moves_only_when_told(tmp_path: Path) -> None:
    clock = FakeClock(start_ns=0)
    ctx = make_context(tmp_path, clock=clock)
    await ctx.emit(sample_batch(Signal.METRICS))
    assert [len(b) for b in ctx.emitted] == [3]
    assert clock.time_ns() == 0
    with anyio.fail_after(1):
        for _ in range(1000):  # an hour of sleeps, instantly
            await clock.sleep(3.6)
    assert clock.time_ns() == 3600 * 10**9 and clock.monotonic() == pytest.approx(3600)


# -- hygiene: the SDK's documentation and the shipped config keep up --------------------------


DOC = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")


def test_the_plugin_guide_documents_every_hook_and_harness_name() -> None:
    from airisd import hookspecs, testing

    hooks = [n for n, f in vars(hookspecs).items() if callable(f) and hasattr(f, "airisd_spec")]
    assert hooks
    for name in [*hooks, *testing.__all__]:
        assert f"`{name}" in DOC, f"docs/plugins.md does not mention {name}"
    for base in ("Input", "Processor", "Output", "AlertChannel", "query_api", "OutputConfig",
                 "TransientError", "PermanentError", "ctx.metrics", "[project.entry-points.airisd]"):
        assert base in DOC, f"docs/plugins.md does not cover {base}"


def test_the_plugin_guide_links_resolve() -> None:
    import re

    links = re.findall(r"\]\((\.\./[^)#]+)\)", DOC)
    assert links
    for link in links:
        assert (ROOT / "docs" / link).resolve().exists(), f"docs/plugins.md links to missing {link}"


@pytest.mark.parametrize("folder", sorted(p.parent for p in ROOT.glob("plugins/*/*/sample.toml")),
                         ids=lambda p: f"{p.parent.name}-{p.name}")
def test_every_plugin_sample_is_in_the_shipped_config(folder: Path) -> None:
    """etc/airisd.toml is generated from the samples (tests/test_config.py); this catches a plugin
    left out of the generator's lists, whose options would then be documented nowhere a user looks."""
    shipped = (ROOT / "etc" / "airisd.toml").read_text(encoding="utf-8")
    headers = [line.strip() for line in (folder / "sample.toml").read_text(encoding="utf-8").splitlines()
               if line.strip().startswith("[")]
    assert headers, f"{folder}/sample.toml has no table"
    for header in headers[:1]:
        assert header in shipped or f"# {header}" in shipped, (
            f"etc/airisd.toml lacks {header} from {folder.relative_to(ROOT)}/sample.toml: add the plugin to "
            "DEFAULT_PLUGINS or OPTIONAL_PLUGINS in airisd/sample.py and run `make sample-config`")


def test_a_hook_with_a_bad_signature_is_reported_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    """A third-party module whose hook takes arguments the spec does not have: pluggy refuses it at
    registration; the registry records it and loads everything else."""
    import sys
    import types
    from importlib.metadata import EntryPoint, entry_points

    from airisd import hookspecs, registry
    from airisd.errors import ConfigError
    from airisd.hookspecs import hookimpl

    mod = types.ModuleType("airisd_test_badsig_plugin")

    @hookimpl
    def airisd_plugin_classes(config: Any) -> list[type[Plugin]]:
        return [Good]

    mod.airisd_plugin_classes = airisd_plugin_classes  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    real = list(entry_points(group=hookspecs.PROJECT))
    bad = EntryPoint(name="good", value=mod.__name__, group=hookspecs.PROJECT)
    monkeypatch.setattr(registry, "entry_points", lambda group: [*real, bad])
    reg = build_registry()
    assert [(b.entry_point, b.package) for b in reg.broken] == [("good", "unknown")]
    assert "PluginValidationError" in reg.broken[0].error and "config" in reg.broken[0].error
    assert ("output", "sqlite") in reg.plugins
    with pytest.raises(ConfigError, match=r"processor plugin 'good' failed to load from package unknown"):
        reg.get("processor", "good")



def test_sqlite_writes_survive_its_shutdown(tmp_path: Path) -> None:
    """check_flushed for the embedded store: the conformance run's sample batches, read back by a
    fresh store on the same directory after shutdown()."""
    from airisd_plugins.outputs.sqlite import SqliteConfig, SqliteOutput

    async def flushed(plugin: Plugin) -> None:
        store = SqliteOutput(SqliteConfig(), make_context(tmp_path))
        await store.start()
        try:
            metrics = store.query_api(Signal.METRICS)
            series, truncated = metrics.query_points("conformance_test", {}, 0, 2**62, 100)
            assert sorted(s.labels["i"] for s, _ in series) == ["0", "1", "2"] and not truncated
            spans = store.query_api(Signal.TRACES).get_trace("0af7651916cd43dd8448eb211c80319c")
            assert [sp.operation_name for sp in spans] == ["GET /conformance"] * 3
        finally:
            await store.shutdown()

    report = run_plugin_conformance(SqliteOutput, {}, data_dir=tmp_path, check_flushed=flushed)
    assert "shutdown flushes" in report.passed


def test_the_example_package_passes_conformance_from_its_sources(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Keeps examples/ honest in the fast suite; tests/test_example_plugin.py installs it for real."""
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "airisd-plugin-example" / "src"))
    from airisd_plugin_example.jsonl_file import JsonlFileOutput
    from airisd_plugin_example.random_walk import RandomWalkInput

    run_plugin_conformance(RandomWalkInput, {"interval_secs": 0.5, "seed": 3})
    out = tmp_path / "x.jsonl"
    report = run_plugin_conformance(JsonlFileOutput, {"path": "x.jsonl"}, data_dir=tmp_path,
                                    check_flushed=lambda p: out.read_text().count("\n") == 9)
    assert "shutdown flushes" in report.passed

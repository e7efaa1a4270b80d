"""The example plugin package, installed as a user installs it: `pip install` of a separate package,
found by airisd through the `airisd` entry-point group with no rebuild of airisd.

The packages go into a `--target` directory on PYTHONPATH (not a fresh venv: airisd's own
dependencies would be downloaded again); importlib.metadata reads their dist-info from there
exactly as from site-packages, which the entry-point assertions below prove. A second package whose
module fails to import shows how a broken third-party plugin is reported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e_helpers import ROOT, TEST_ENV, AirisProcess, airisd_bin, free_port

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

EXAMPLE = ROOT / "examples" / "airisd-plugin-example"

BROKEN_PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "airisd-broken-plugin"
version = "9.9.9"

[project.entry-points.airisd]
broken_walk = "airisd_broken_plugin"
"""
BROKEN_MODULE = 'raise ImportError("airisd_broken_plugin needs libfoo, which is not installed")\n'


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with both packages pip-installed into it."""
    base = tmp_path_factory.mktemp("plugins")
    example = base / "src" / "example"  # a copy: building writes build/ and *.egg-info next to the sources
    shutil.copytree(EXAMPLE, example, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    broken = base / "src" / "broken"
    (broken / "airisd_broken_plugin").mkdir(parents=True)
    (broken / "pyproject.toml").write_text(BROKEN_PYPROJECT)
    (broken / "airisd_broken_plugin" / "__init__.py").write_text(BROKEN_MODULE)
    target = base / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target)]
    proc = subprocess.run([*pip, str(example), str(broken)], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return target


def airisd(site: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **TEST_ENV, "PYTHONPATH": str(site)}
    return subprocess.run([airisd_bin(), *args], capture_output=True, text=True, env=env, timeout=60, cwd=cwd)


def test_plugins_list_shows_the_package_and_the_broken_one(site: Path) -> None:
    out = airisd(site, "plugins", "list")
    assert out.returncode == 0, out.stderr
    rows = {tuple(line.split()[:4]) for line in out.stdout.splitlines()}
    assert ("input", "random_walk", "airisd-plugin-example", "0.2.0") in rows
    assert ("output", "jsonl_file", "airisd-plugin-example", "0.2.0") in rows
    assert ("output", "sqlite", "airisd", "0.1.0") in rows  # the built-ins are still there
    broken = "BROKEN  broken_walk  airisd-broken-plugin: ImportError: airisd_broken_plugin needs libfoo"
    assert broken in out.stderr


def test_plugins_info_prints_readme_and_sample(site: Path) -> None:
    out = airisd(site, "plugins", "info", "jsonl_file")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("# output jsonl_file (airisd-plugin-example 0.2.0)")
    assert "# outputs.jsonl_file" in out.stdout  # README.md
    assert "[[outputs.jsonl_file]]\n  ## The file; a relative path" in out.stdout  # sample.toml
    missing = airisd(site, "plugins", "info", "no_such_plugin")
    assert missing.returncode == 2 and "no plugin named 'no_such_plugin'" in missing.stderr
    broken = airisd(site, "plugins", "info", "broken_walk")
    assert broken.returncode == 2
    assert "plugin 'broken_walk' failed to load from package airisd-broken-plugin: ImportError" \
        in broken.stderr


def test_the_example_package_tests_pass_against_airisd(site: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                          cwd=EXAMPLE, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " passed" in proc.stdout


DEMO = """\
[agent]
  role = "metrics"
  data_dir = "./var"
[listeners.metrics]
  address = "127.0.0.1:8001"

[[inputs.random_walk]]
  metric = "demo.walk"
  series = 2
  interval_secs = 0.05
  labels = {{ host = "h1" }}

[[outputs.jsonl_file]]
  path = "walk.jsonl"
  flush_interval_secs = 0.05

[[outputs.sqlite]]
{extra}"""


@pytest.fixture
def daemon(site: Path, tmp_path: Path) -> Iterator[AirisProcess]:
    config = tmp_path / "demo.toml"
    config.write_text(DEMO.format(extra=""))
    airis = AirisProcess(tmp_path / "data", role="metrics", config=config, ports={"metrics": free_port()},
                         env={"PYTHONPATH": str(site)})
    try:
        yield airis.start()
    finally:
        airis.stop()


def test_a_pipeline_runs_through_the_example_plugins(daemon: AirisProcess) -> None:
    out = daemon.data_dir / "walk.jsonl"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len(_lines(out)) < 10:
        time.sleep(0.05)
    lines = [json.loads(line) for line in _lines(out)]
    assert len(lines) >= 10
    assert {(r["signal"], r["name"], r["labels"]["host"]) for r in lines} == {("metrics", "demo.walk", "h1")}
    assert {r["labels"]["series"] for r in lines} == {"0", "1"}
    client = daemon.client("metrics")
    resp = client.get("/metrics/query", params={"name": "demo.walk", "labels": "series:1"})
    assert resp.status_code == 200, resp.text
    series = resp.json()["data"]["series"]
    assert [s["labels"] for s in series] == [{"host": "h1", "series": "1"}]
    assert series[0]["points"]
    health = client.get("/health/detailed").json()["data"]
    assert {(p["kind"], p["name"], p["state"]) for p in health["plugins"]} >= {
        ("input", "random_walk", "running"), ("output", "jsonl_file", "running")}
    assert {"entry_point": "broken_walk", "package": "airisd-broken-plugin",
            "error": "ImportError: airisd_broken_plugin needs libfoo, which is not installed"} \
        in health["broken_plugins"]
    assert "airisd_random_walk_points_total" in client.get("/metrics/prometheus").text
    assert daemon.terminate() == 0
    assert "Traceback" not in daemon.log()


def test_a_config_that_uses_the_broken_plugin_is_refused(site: Path, tmp_path: Path) -> None:
    config = tmp_path / "uses-broken.toml"
    config.write_text(DEMO.format(extra="\n[[inputs.broken_walk]]\n"))
    for args in (["config", "check"], ["run", "--role", "metrics", "--data-dir", str(tmp_path / "d")]):
        out = airisd(site, *args, "--config", str(config), cwd=tmp_path)
        assert out.returncode == 2, out.stdout + out.stderr
        assert ("input plugin 'broken_walk' failed to load from package airisd-broken-plugin: "
                "ImportError: airisd_broken_plugin needs libfoo") in out.stderr
        assert "Traceback" not in out.stderr
    ok = airisd(site, "config", "check", "--config", str(_without_broken(config)), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr


def _without_broken(config: Path) -> Path:
    path = config.with_name("ok.toml")
    path.write_text(config.read_text().replace("[[inputs.broken_walk]]", ""))
    return path


def _lines(path: Path) -> list[str]:
    """Complete lines only: the daemon may be half-way through appending the last one."""
    text = path.read_text() if path.exists() else ""
    return text[: text.rfind("\n") + 1].splitlines()

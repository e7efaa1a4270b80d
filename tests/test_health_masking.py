"""/health/detailed never shows a secret a plugin was configured with, even when a backend's error
message quotes it; and an input beside an output of the same name keeps its own entry."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, ClassVar

import pytest

from airisd.config import build_config
from airisd.daemon import Daemon
from airisd.model import Batch, Signal
from airisd.pipeline import OutputConfig
from airisd.plugin import Input, Output, PluginConfig
from airisd.registry import build_registry
from tests.test_registry import module


class LeakyConfig(OutputConfig):
    password: str = ""
    url: str = ""


class LeakyOutput(Output):
    name: ClassVar[str] = "leaky"
    Config: ClassVar[type[LeakyConfig]] = LeakyConfig
    description: ClassVar[str] = "a backend whose errors quote its credentials"
    signals: ClassVar[frozenset[Signal]] = frozenset({Signal.METRICS})
    config: LeakyConfig

    async def write(self, batch: Batch) -> None:
        raise NotImplementedError

    async def check(self) -> dict[str, Any]:
        return {"metrics": {"reachable": False,
                            "error": f"login refused for {self.config.url} with password {self.config.password}"}}


class LeakyInput(Input):
    name: ClassVar[str] = "leaky"
    Config: ClassVar[type[PluginConfig]] = PluginConfig
    description: ClassVar[str] = "an input named like the output"

    async def check(self) -> dict[str, Any]:
        return {"consumer": {"reachable": True}}


@pytest.mark.anyio
async def test_health_masks_configured_secrets_and_keeps_both_entries(tmp_path: Path) -> None:
    text = (f'[agent]\nrole = "metrics"\ndata_dir = "{tmp_path}"\n[auth]\nenabled = false\n[[inputs.leaky]]\n'
            '[[outputs.sqlite]]\n[[outputs.leaky]]\npassword = "hunter2-very-secret"\nurl = "https://db.example"\n')
    daemon = Daemon(build_config(tomllib.loads(text), source="t.toml", environ={}),
                    build_registry(extra_modules=[module("leaky_pkg", [LeakyOutput, LeakyInput])]))
    daemon.build()
    for inst in daemon.instances:
        inst.state = "running"
    report = await daemon.health_detailed()
    shown = str(report)
    assert "hunter2-very-secret" not in shown
    assert report["stores"]["leaky"]["metrics"]["error"] == "login refused for https://db.example with password ***"
    assert report["stores"]["input:leaky"] == {"consumer": {"reachable": True}}
    assert report["status"] == "degraded"

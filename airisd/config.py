"""Loading the TOML configuration.

Order of precedence, lowest first: the config file; ``${VAR}`` / ``${VAR:-default}`` in its string
values, filled from the environment (a ``.env`` file in the working directory is loaded first, the
real environment wins over it); ``--set section.key=value`` overrides; ``--role`` / ``--data-dir``.

Every section is a typed Struct that rejects unknown keys, so a typo is an error that names the key
and the file. Plugin sections (``[[inputs.NAME]]`` and friends) are checked against each plugin's
own Config class once the plugin registry is loaded.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

import msgspec

from airisd.errors import ConfigError

ROLES = ("metrics", "log", "trace", "alert")
PLUGIN_SECTIONS = {"inputs": "input", "processors": "processor", "outputs": "output"}


class Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class AgentConfig(Section):
    role: str = "all"  # metrics | log | trace | alert | all, or a comma-separated list
    data_dir: str = "./var"
    log_level: str = "info"
    log_format: str = "logfmt"  # logfmt | json
    shutdown_timeout_secs: float = 10.0
    hostname: str = ""


class ListenerConfig(Section):
    address: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""


def _default_listeners() -> dict[str, ListenerConfig]:
    return {
        "metrics": ListenerConfig(address="127.0.0.1:8001"),
        "log": ListenerConfig(address="127.0.0.1:8002"),
        "trace": ListenerConfig(address="127.0.0.1:8003"),
        "alert": ListenerConfig(address="127.0.0.1:8004"),
    }


class HttpConfig(Section):
    max_body_bytes: int = 10 * 1024 * 1024
    request_timeout_secs: float = 30.0
    max_query_range_secs: int = 366 * 86400
    max_result_points: int = 100_000
    max_page_size: int = 1000
    cors_allow_origins: list[str] = msgspec.field(default_factory=list)
    retry_after_secs: int = 1


class RoleStores(Section):
    """Which output answers each role's queries (an output name); empty: the first that can."""

    metrics: str = ""
    log: str = ""
    trace: str = ""


class Config(Section):
    agent: AgentConfig = msgspec.field(default_factory=AgentConfig)
    listeners: dict[str, ListenerConfig] = msgspec.field(default_factory=_default_listeners)
    http: HttpConfig = msgspec.field(default_factory=HttpConfig)
    stores: RoleStores = msgspec.field(default_factory=RoleStores)
    # Sections owned by subsystems, validated there (auth, alerting, tracing).
    auth: dict[str, Any] = msgspec.field(default_factory=dict)
    alerting: dict[str, Any] = msgspec.field(default_factory=dict)
    tracing: dict[str, Any] = msgspec.field(default_factory=dict)
    consul: dict[str, Any] = msgspec.field(default_factory=dict)  # airisd/consul.py
    inputs: dict[str, list[dict[str, Any]]] = msgspec.field(default_factory=dict)
    processors: dict[str, list[dict[str, Any]]] = msgspec.field(default_factory=dict)
    outputs: dict[str, list[dict[str, Any]]] = msgspec.field(default_factory=dict)

    source: str = "<defaults>"  # the file it came from, for messages

    def roles(self) -> list[str]:
        return parse_roles(self.agent.role)

    def validate(self) -> None:
        try:
            self.roles()
        except ConfigError as exc:
            raise ConfigError(f"{self.source}: agent.role: {exc}") from None
        if self.agent.log_format not in ("logfmt", "json"):
            raise ConfigError(
                f"{self.source}: agent.log_format must be 'logfmt' or 'json', got {self.agent.log_format!r}")
        if self.agent.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError(
                f"{self.source}: agent.log_level {self.agent.log_level!r} is not debug|info|warning|error")
        for name, listener in self.listeners.items():
            if name not in ROLES:
                raise ConfigError(
                    f"{self.source}: [listeners.{name}]: unknown role (expected one of {', '.join(ROLES)})")
            parse_address(listener.address, where=f"{self.source}: listeners.{name}.address")
            if bool(listener.tls_cert_file) != bool(listener.tls_key_file):
                raise ConfigError(
                    f"{self.source}: listeners.{name}: set both tls_cert_file and tls_key_file, or neither")
        if self.http.max_body_bytes < 1024:
            raise ConfigError(
                f"{self.source}: http.max_body_bytes must be at least 1024, got {self.http.max_body_bytes}")
        if self.agent.shutdown_timeout_secs <= 0:
            raise ConfigError(f"{self.source}: agent.shutdown_timeout_secs must be positive")


def parse_roles(text: str) -> list[str]:
    names = [r.strip() for r in text.split(",") if r.strip()]
    if names == ["all"]:
        return list(ROLES)
    bad = [r for r in names if r not in ROLES]
    if bad or not names:
        raise ConfigError(f"unknown role {', '.join(bad) or repr(text)}: use metrics, log, trace, alert or all")
    return [r for r in ROLES if r in names]


def parse_address(text: str, *, where: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{where}: {text!r} is not HOST:PORT (e.g. 127.0.0.1:8001)")
    return host.strip("[]") or "0.0.0.0", int(port)


# -- environment -------------------------------------------------------------------------------

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def load_dotenv(path: Path, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Read KEY=VALUE lines; set the ones the environment does not have yet. Returns what it read."""
    env = os.environ if environ is None else environ
    found: dict[str, str] = {}
    if not path.is_file():
        return found
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        key, value = key.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            found[key] = value
            env.setdefault(key, value)
    return found


def substitute(value: Any, environ: dict[str, str] | os._Environ[str], *, where: str = "") -> Any:
    """Fill ${VAR} and ${VAR:-default} in every string inside value; ``$$`` is a literal ``$``."""
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name, default = m.group(1), m.group(2)
            got = environ.get(name)
            if got is None or (got == "" and m.group(0).find(":-") != -1):
                if default is not None:
                    return default
                raise ConfigError(f"{where}: environment variable {name} is not set (use ${{{name}:-default}})")
            return got

        return _VAR.sub(repl, value)
    if isinstance(value, dict):
        return {k: substitute(v, environ, where=f"{where}.{k}" if where else k) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, environ, where=f"{where}[{i}]") for i, v in enumerate(value)]
    return value


# -- --set overrides ---------------------------------------------------------------------------


def parse_set_value(text: str) -> Any:
    """``--set`` values are TOML values when they parse as one (1, true, "x", [1,2]), else strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_set(data: dict[str, Any], assignment: str) -> None:
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {assignment!r}: expected section.key=value")
    path = key.strip().split(".")
    value = parse_set_value(raw)
    _set_path(data, path, value, assignment)


def _set_path(node: Any, path: list[str], value: Any, assignment: str) -> None:
    head, rest = path[0], path[1:]
    if isinstance(node, list):
        # [[outputs.sqlite]] tables: a number picks one instance, otherwise every instance.
        if head.isdigit():
            if int(head) >= len(node):
                raise ConfigError(f"--set {assignment!r}: there is no instance {head}")
            targets, rest = [node[int(head)]], rest
            if not rest:
                raise ConfigError(f"--set {assignment!r}: name a key inside the instance")
        else:
            targets, rest = node, path
        for target in targets:
            _set_path(target, rest, value, assignment)
        return
    if not isinstance(node, dict):
        raise ConfigError(f"--set {assignment!r}: {head} is not a table")
    if not rest:
        node[head] = value
        return
    child = node.get(head)
    if child is None:
        child = node[head] = {}
    _set_path(child, rest, value, assignment)


# -- loading -----------------------------------------------------------------------------------


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (write one with `airisd config sample > {path}`)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def build_config(
    data: dict[str, Any],
    *,
    source: str,
    environ: dict[str, str] | os._Environ[str] | None = None,
    overrides: list[str] = (),  # type: ignore[assignment]
    role: str | None = None,
    data_dir: str | None = None,
) -> Config:
    env = os.environ if environ is None else environ
    data = substitute(data, env)
    for assignment in overrides:
        apply_set(data, assignment)
    if role:
        data.setdefault("agent", {})["role"] = role
    if data_dir:
        data.setdefault("agent", {})["data_dir"] = data_dir
    for section in PLUGIN_SECTIONS:
        tables = data.get(section) or {}
        if not isinstance(tables, dict):
            raise ConfigError(f"{source}: {section} must be a table of [[{section}.NAME]] sections")
        for name, instances in tables.items():
            if isinstance(instances, dict):  # [inputs.x] written instead of [[inputs.x]]: accept one
                data[section][name] = [instances]
            elif not isinstance(instances, list):
                raise ConfigError(f"{source}: [[{section}.{name}]] must be a table")
    try:
        config = msgspec.convert(data, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_explain(exc)}") from None
    config.source = source
    config.validate()
    return config


def _explain(exc: msgspec.ValidationError) -> str:
    text = str(exc)
    m = re.match(r"Object contains unknown field `(.+?)` - at `\$(.*)`", text)
    if m:
        where = m.group(2).lstrip(".")
        return f"unknown key {m.group(1)!r}" + (f" in [{where}]" if where else "")
    m = re.match(r"Object contains unknown field `(.+?)`", text)
    if m:
        return f"unknown key {m.group(1)!r}"
    m = re.match(r"(.*) - at `\$(.*)`", text)
    if m:
        return f"{m.group(2).lstrip('.')}: {m.group(1)}"
    return text


def load_config(
    path: str | Path | None,
    *,
    overrides: list[str] = (),  # type: ignore[assignment]
    role: str | None = None,
    data_dir: str | None = None,
    dotenv: Path | None = Path(".env"),
) -> Config:
    if dotenv is not None:
        load_dotenv(dotenv)
    if path is None:
        data: dict[str, Any] = {}
        source = "<defaults>"
    else:
        data = read_toml(Path(path))
        source = str(path)
    return build_config(data, source=source, overrides=list(overrides), role=role, data_dir=data_dir)
